package handoff_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

// osIOError matches what the OS kernel logs when a block request fails
// for good (blk_update_request / blk_print_req_error, buffer_io_error) or
// ext4 gives up on its journal: what a link fault must not cause.
var osIOError = regexp.MustCompile(`(?i)I/O error|EXT4-fs error|Remounting filesystem read-only|Aborting journal`)

// TestOSLinkFault takes the boot NIC's link down for 5 s (QEMU set_link)
// after the hand-off, while Debian runs from the LUN through its own
// open-iscsi session (journald and ext4's commits write to it), and
// watches the OS console for 30 s after: open-iscsi may report the
// connection error and recover, but the OS kernel must log no I/O error.
// Slow (a whole Debian boot): make test-full. It does not force writes
// during the outage; the OS's own background writes are what it sees.
func TestOSLinkFault(t *testing.T) {
	testenv.Full(t)
	e := setup(t)
	m := e.start(t, e.set.Debian, "", nil, "")
	b := boot(t, m, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := len(m.Console())
	f, err := m.LinkDown(ctx, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// open-iscsi's NOP-Out timeout (5 s) and its recovery run in here.
	time.Sleep(30 * time.Second)
	after := m.Console()[before:]
	if loc := osIOError.FindStringIndex(after); loc != nil {
		line := after[max(0, loc[0]-200):min(len(after), loc[1]+200)]
		t.Errorf("the OS kernel logged an I/O error after the link fault:\n%s", line)
	}
	t.Logf("%s: link down at +%s, up at +%s (QEMU time); the OS's console in the 30 s after:\n%s",
		b.m.System.Name, f.Down.Round(time.Millisecond), f.Up.Round(time.Millisecond), strings.TrimSpace(after))
}
