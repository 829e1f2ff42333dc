package handoff_test

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/lab"
)

// osIOError matches what the OS kernel logs when a block request fails
// for good (blk_update_request / blk_print_req_error, buffer_io_error),
// when the iSCSI layer gives up on a session's commands (scsi_lib's
// "rejecting I/O to offline device", libiscsi's replacement timeout) or
// when ext4 gives up on its journal: what a link fault must not cause.
var osIOError = regexp.MustCompile(`(?i)I/O error|rejecting I/O|EXT4-fs error|Remounting filesystem read-only|Aborting journal|session recovery timed out`)

// The OS's write loop on the console: one tick per fsynced write.
var (
	writeTick  = regexp.MustCompile(`WT-(\d+)\r?\n`)
	writeStart = regexp.MustCompile(`WLOOP-START\r?\n`)
	writeDone  = regexp.MustCompile(`WLOOP-DONE-(\d+)-FAIL-(\d+)\r?\n`)
)

const (
	// linkOutage is how long the guest's link is down (the 5 s).
	linkOutage = 5 * time.Second
	// resumeBound is how soon after the link is back the OS's next write
	// must have completed. open-iscsi would wait up to its replacement
	// timeout (node.session.timeo.replacement_timeout, 120 s) before
	// failing I/O, so a bound below it is what makes a slow or stuck
	// recovery fail the test instead of passing it by not looking: TCP's
	// retransmission (its backoff after a 5 s gap is a few seconds) or
	// iscsid's reconnect (NOP-Out timeout 5 s, then a new login) both fit.
	resumeBound = 30 * time.Second
	// loopLength is how long the OS's write loop runs: the outage starts
	// a few writes in, and resumeBound plus some writes after it fit.
	loopLength = 90
)

// TestOSLinkFault takes the boot NIC's link down for 5 s (QEMU set_link,
// as the guest sees a pulled cable) after the hand-off, while Debian runs
// from the LUN through its own open-iscsi session and writes and fsyncs a
// file on its root file system in a loop. The test requires that a write
// was held up by the outage (no write completed while the link was down:
// the loop really wrote through it), that writes resumed and completed
// within resumeBound after the link came back, that the loop went on
// past the outage without a failed write, and that neither the console
// nor dmesg shows an I/O error or rejected I/O. Slow (a whole Debian
// boot): make test-full; make test has the firmware-phase link fault
// (qemu/e2e TestBootLinkFault).
func TestOSLinkFault(t *testing.T) {
	testenv.Full(t)
	e := setup(t)
	m := e.start(t, e.set.Debian, "", nil, "")
	b := boot(t, m, nil)
	t.Logf("hand-off %q; the OS's command line: %s", b.mode, b.os.Proof.Cmdline)
	sh := login(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Logf("the OS's iSCSI session before the fault:\n%s", sh.run(t, `iscsiadm -m session -P 1 2>&1 | grep -E 'Target:|Current Portal|Iface Netdev|iSCSI Connection State|iSCSI Session State'; grep ' / ' /proc/mounts; cat /sys/class/iscsi_session/session*/recovery_tmo`, time.Minute))

	loop := `rm -f /root/werr; end=$(($(date +%s)+` + strconv.Itoa(loopLength) + `)); n=0; f=0; echo WLOOP-START; ` +
		`while [ $(date +%s) -lt $end ]; do dd if=/dev/urandom of=/root/linkfault-w bs=64k count=4 conv=fsync status=none 2>>/root/werr || f=$((f+1)); n=$((n+1)); echo WT-$n; done; ` +
		`echo WLOOP-DONE-$n-FAIL-$f` + "\n"
	if err := m.Send(loop); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ExpectWithin(ctx, 30*time.Second, writeStart); err != nil {
		t.Fatal(err)
	}
	var ticks []tick
	for len(ticks) < 3 {
		mt, err := m.ExpectWithin(ctx, 30*time.Second, writeTick)
		if err != nil {
			t.Fatalf("the OS's write loop made no progress before the fault: %v", err)
		}
		ticks = append(ticks, parseTick(mt))
	}
	before := len(m.Console())
	f, err := m.LinkDown(ctx, 0, linkOutage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("link down at +%s, up at +%s (QEMU time); %d writes before", f.Down.Round(time.Millisecond), f.Up.Round(time.Millisecond), ticks[len(ticks)-1].n)

	// Every tick up to the first one after the link came back.
	var resumed *tick
	for resumed == nil {
		mt, err := m.ExpectWithin(ctx, resumeBound+linkOutage, writeTick)
		if err != nil {
			t.Fatalf("the OS's writes did not resume after the link came back at +%s: %v", f.Up.Round(time.Millisecond), err)
		}
		tk := parseTick(mt)
		ticks = append(ticks, tk)
		if tk.at > f.Up {
			resumed = &ticks[len(ticks)-1]
		}
	}
	last := ticks[len(ticks)-2] // the last write completed before the link came back
	// A write that completes needs the target's answer: with the link down
	// (and some slack for what was already on the wire and the serial
	// console's delay) none can.
	const slack = time.Second
	for _, tk := range ticks {
		if tk.at > f.Down+slack && tk.at <= f.Up {
			t.Errorf("write %d completed at +%s while the link was down (+%s to +%s): the writes did not go to the LUN", tk.n, tk.at.Round(time.Millisecond), f.Down.Round(time.Millisecond), f.Up.Round(time.Millisecond))
		}
	}
	wait := resumed.at - f.Up
	t.Logf("write %d completed at +%s before the outage; write %d at +%s, %s after the link came back (bound %s)",
		last.n, last.at.Round(time.Millisecond), resumed.n, resumed.at.Round(time.Millisecond), wait.Round(time.Millisecond), resumeBound)
	if wait > resumeBound {
		t.Errorf("the first write after the outage completed %s after the link came back, want within %s", wait.Round(time.Millisecond), resumeBound)
	}
	if last.at < f.Down-5*time.Second {
		t.Errorf("no write completed in the 5 s before the outage (the last at +%s, link down at +%s): the loop was not writing when the link went down", last.at.Round(time.Millisecond), f.Down.Round(time.Millisecond))
	}

	mt, err := m.ExpectWithin(ctx, time.Duration(loopLength)*time.Second+resumeBound, writeDone)
	if err != nil {
		t.Fatalf("the write loop did not finish: %v", err)
	}
	if _, err := m.ExpectWithin(ctx, 10*time.Second, shellPrompt); err != nil {
		t.Fatal(err)
	}
	total, _ := strconv.Atoi(mt.Groups[1])
	t.Logf("the write loop finished at +%s: %s fsynced writes, %s failed", mt.At.Round(time.Second), mt.Groups[1], mt.Groups[2])
	if mt.Groups[2] != "0" {
		t.Errorf("%s writes failed across the link fault", mt.Groups[2])
	}
	if total < resumed.n+3 {
		t.Errorf("the loop wrote %d times, only %d after the outage: want it to go on writing", total, total-resumed.n)
	}

	after := m.Console()[before:]
	if loc := osIOError.FindStringIndex(after); loc != nil {
		t.Errorf("the OS's console shows an I/O error after the link fault:\n%s", after[max(0, loc[0]-300):min(len(after), loc[1]+300)])
	}
	out := sh.run(t, `echo werr=$(wc -c < /root/werr); echo ioerrors=$(dmesg | grep -ciE 'I/O error|rejecting I/O|blk_update_request|Buffer I/O|EXT4-fs error|session recovery timed out'); dmesg | grep -iE 'iscsi|connection[0-9]|link (is )?(up|down)|virtio_net|rejecting|I/O error' | tail -n 15; iscsiadm -m session -P 1 2>&1 | grep -E 'Current Portal|iSCSI Connection State|iSCSI Session State'`, time.Minute)
	t.Logf("the OS after the link fault:\n%s", out)
	if !strings.Contains(out, "werr=0\n") {
		t.Errorf("dd reported errors during the link fault:\n%s", out)
	}
	if !strings.Contains(out, "ioerrors=0\n") {
		t.Errorf("the OS's kernel log has I/O errors after the link fault:\n%s", out)
	}
}

// tick is one completed write of the OS's loop and when its line arrived.
type tick struct {
	n  int
	at time.Duration
}

func parseTick(mt *lab.Match) tick {
	n, _ := strconv.Atoi(mt.Groups[1])
	return tick{n: n, at: mt.At}
}
