package handoff_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/distro/distrotest"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// goldenSetup is setup for two guests at once (two guest slots).
func goldenSetup(t *testing.T, taps int) (*env, *lab.Lab) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots Debian through lunboot under TCG, two clients at once; skipped with -short")
	}
	labtest.Require(t)
	e := &env{set: distrotest.Systems(t)}
	e.kernel, e.image = labtest.Image(t)
	t.Parallel()
	if taps > 1 {
		testenv.GuestSlots(t)
	} else {
		testenv.GuestSlot(t)
	}
	return e, labtest.Start(t, lab.Options{Name: "golden", Taps: taps})
}

// TestGoldenRAM: two clients boot at the same time from one golden LUN,
// read-only on the target, with lunboot.overlay=ram: the Debian disk
// whose initrd could log in itself, so the overlay alone makes the
// hand-off carry-in. Each OS runs from nbd0 served by its carried daemon
// over the read-only golden LUN; its own open-iscsi is masked, holds no
// session and no sd disk appears. Each writes its own marker and does not
// see the other's; the second client's smaller overlay (64M) passes the
// 75 % warning, which reaches the OS's kernel log. The first client
// powers off and on again: its marker is gone. The golden LUN's backing
// file is unchanged at the end.
func TestGoldenRAM(t *testing.T) {
	e, l := goldenSetup(t, 2)
	ctx := context.Background()
	consoles := []func(string){labtest.Console(t, "client0"), labtest.Console(t, "client1")}
	g, err := handoff.StartGolden(ctx, l, handoff.GoldenConfig{Kernel: e.kernel, Image: e.image, System: e.set.Debian,
		OnConsole: func(i int, line string) {
			if f := consoles[i]; f != nil {
				f(line)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := g.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	args := []string{"lunboot.overlay=ram", "lunboot.overlay=ram lunboot.overlay_size=64M"}
	var ms []*handoff.Machine
	for i, a := range args {
		m, err := g.Client(ctx, i, a, "")
		if err != nil {
			t.Fatal(err)
		}
		labtest.KillAtEnd(t, l, m.VM)
		ms = append(ms, m)
	}
	var shells []*shell
	for i, m := range ms {
		goldenBoot(t, m, "writes in this client's RAM")
		shells = append(shells, login(t, m))
		t.Logf("client %d at its shell after %s", i, time.Since(start).Round(time.Second))
	}
	wantSessionsN(t, g, 2, "with both clients up")

	for i, sh := range shells {
		out := sh.run(t, `cat /sys/block/nbd0/backend; grep ' / ' /proc/mounts; lsblk -dno NAME,RO,SIZE; systemctl is-enabled iscsid.service iscsid.socket open-iscsi.service 2>&1; systemctl is-active iscsid.service open-iscsi.service 2>&1; iscsiadm -m session 2>&1; echo iscsi_sessions=$(ls /sys/class/iscsi_session 2>/dev/null | wc -w); dmesg | grep -E 'golden image' | cut -c1-220`, time.Minute)
		t.Logf("client %d, the OS on its root and its iSCSI units:\n%s", i, out)
		for _, want := range []string{"lunboot:" + g.Export.IQN, "/dev/nbd0p", "masked", "golden image: RAM overlay", "iSCSI units are masked"} {
			if !strings.Contains(out, want) {
				t.Errorf("client %d: the OS's account lacks %q", i, want)
			}
		}
		if regexp.MustCompile(`(?m)^sd[a-z]`).MatchString(out) {
			t.Errorf("client %d: a SCSI disk appeared in the OS (the golden LUN through the OS's own initiator?):\n%s", i, out)
		}
		if !strings.Contains(out, "iscsi_sessions=0") {
			t.Errorf("client %d: the OS's kernel has an iSCSI session:\n%s", i, out)
		}
		if strings.Contains(out, "\nactive") {
			t.Errorf("client %d: an OS iSCSI unit is active:\n%s", i, out)
		}
	}
	// Each its own marker, then each looks for both.
	for i, sh := range shells {
		n := string(rune('a' + i))
		sh.run(t, `echo golden-marker-`+n+` > /root/marker-`+n+` && sync`, time.Minute)
	}
	for i, sh := range shells {
		out := sh.run(t, `for f in a b; do if [ -e /root/marker-$f ]; then echo HAS-$f $(cat /root/marker-$f); else echo NO-$f; fi; done`, time.Minute)
		own, other := string(rune('a'+i)), string(rune('b'-i))
		if !strings.Contains(out, "HAS-"+own+" golden-marker-"+own) || !strings.Contains(out, "NO-"+other) {
			t.Errorf("client %d sees:\n%s\nwant its own marker %s and not %s", i, out, own, other)
		} else {
			t.Logf("client %d: %s", i, strings.Join(strings.Fields(out), " "))
		}
	}
	// The second client's 64 MiB overlay past 75 %: 4 MiB at a time
	// until the warning is in the kernel log (what the boot wrote counts
	// too), each write fsynced without an error.
	out := shells[1].run(t, `for i in $(seq 1 16); do dd if=/dev/urandom of=/root/fill$i bs=1M count=4 conv=fsync status=none || { echo DDFAIL; break; }; if dmesg | grep -q 'overlay 75% full'; then echo WARNED-AFTER-$((i*4))M; break; fi; done; journalctl -k -b --no-pager | grep -m1 'overlay 75% full' | cut -c1-260`, 4*time.Minute)
	t.Logf("client 1 filling its 64 MiB overlay past 75 %%:\n%s", out)
	if strings.Contains(out, "DDFAIL") || !strings.Contains(out, "WARNED-AFTER-") || !strings.Contains(out, "lunboot-carry") {
		t.Errorf("client 1: no 75 %% warning in the OS's journal before the 64 MiB overlay filled:\n%s", out)
	}

	// The first client powers off and on again: a clean system.
	if err := ms[0].Send("poweroff\n"); err != nil {
		t.Fatal(err)
	}
	waitOff(t, ms[0])
	wantSessionsN(t, g, 1, "after client 0 powered off")
	m2, err := g.Client(ctx, 0, args[0], "-2")
	if err != nil {
		t.Fatal(err)
	}
	labtest.KillAtEnd(t, l, m2.VM)
	goldenBoot(t, m2, "writes in this client's RAM")
	sh2 := login(t, m2)
	out = sh2.run(t, `ls /root; cat /root/marker-a 2>&1`, time.Minute)
	t.Logf("client 0 after its power cycle:\n%s", out)
	if strings.Contains(out, "golden-marker-a") {
		t.Errorf("client 0's marker survived its power cycle with a RAM overlay:\n%s", out)
	}
	for _, m := range []*handoff.Machine{m2, ms[1]} {
		if err := m.Send("poweroff\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitOff(t, m2)
	waitOff(t, ms[1])
	wantSessionsN(t, g, 0, "after both clients powered off")
	after, err := g.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the golden LUN changed: SHA-256 %s before, %s after", before, after)
	} else {
		t.Logf("golden LUN SHA-256 unchanged: %s", after)
	}
	t.Logf("three boots of two clients took %s", time.Since(start).Round(time.Second))
}

// TestGoldenLUN (make test-full: two more boots): a client with
// lunboot.overlay=lun:2 formats the blank LUN 2, writes a marker, powers
// off, and finds it again at the next power-on; the golden LUN is
// unchanged.
func TestGoldenLUN(t *testing.T) {
	testenv.Full(t)
	e, l := goldenSetup(t, 1)
	ctx := context.Background()
	console := labtest.Console(t, "client0")
	g, err := handoff.StartGolden(ctx, l, handoff.GoldenConfig{Kernel: e.kernel, Image: e.image, System: e.set.Debian, OverlayLUNs: 1,
		OnConsole: func(_ int, line string) {
			if console != nil {
				console(line)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := g.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	for boot, suffix := range []string{"", "-2"} {
		m, err := g.Client(ctx, 0, "lunboot.overlay=lun:2", suffix)
		if err != nil {
			t.Fatal(err)
		}
		labtest.KillAtEnd(t, l, m.VM)
		goldenBoot(t, m, "writes on LUN 2 of the target, kept across boots")
		sh := login(t, m)
		out := sh.run(t, `cat /root/lun-marker 2>&1; dmesg | grep -E 'golden image: overlay LUN' | cut -c1-260`, time.Minute)
		t.Logf("boot %d:\n%s", boot+1, out)
		if boot == 0 {
			if !strings.Contains(out, "formatted=true") {
				t.Errorf("the first boot did not format the blank overlay LUN:\n%s", out)
			}
			sh.run(t, `echo lun-marker-$((6*7)) > /root/lun-marker && sync`, time.Minute)
		} else if !strings.Contains(out, "lun-marker-42") || !strings.Contains(out, "formatted=false") {
			t.Errorf("the marker written at the first boot is not on the overlay LUN:\n%s", out)
		}
		if err := m.Send("poweroff\n"); err != nil {
			t.Fatal(err)
		}
		waitOff(t, m)
	}
	if after, _ := g.Checksum(); after != before {
		t.Errorf("the golden LUN changed: SHA-256 %s before, %s after", before, after)
	}
}

// goldenBoot is carryBoot for a golden client: lunboot chose carry-in for
// the overlay and said so, the carried daemon set the overlay up.
func goldenBoot(t *testing.T, m *handoff.Machine, what string) {
	t.Helper()
	carryBoot(t, m, false)
	con := m.Console()
	if l := handoff.GoldenFirmwareLine.FindString(con); !strings.Contains(l, what) {
		t.Errorf("lunboot's console lacks the golden image line with %q (have %q)", what, l)
	}
	for _, re := range []*regexp.Regexp{handoff.GoldenDaemonLine, handoff.GoldenMaskedLine} {
		if l := re.FindString(con); l == "" {
			t.Errorf("the OS console lacks %s", re)
		} else {
			t.Logf("daemon: %s", l)
		}
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "warning: golden image") {
			t.Logf("lunboot: %s", strings.TrimSpace(l))
		}
	}
}

// waitOff waits for the guest to power off after the OS's own shutdown,
// through the carried daemon's logout.
func waitOff(t *testing.T, m *handoff.Machine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := m.Wait(ctx); err != nil && !m.Exited() {
		t.Fatalf("the OS did not power off: %v", err)
	}
	if !shutdownDone.MatchString(m.Console()) {
		t.Errorf("the console lacks the daemon's logout at shutdown")
	}
}

// wantSessionsN waits up to 30 s for the golden target to hold n sessions.
func wantSessionsN(t *testing.T, g *handoff.Golden, n int, when string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := g.Target.Sessions(g.Export.TID)
		if err == nil && got == n {
			t.Logf("target sessions %s: %d", when, got)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("target sessions %s = %d, %v; want %d", when, got, err, n)
			return
		}
		time.Sleep(time.Second)
	}
}
