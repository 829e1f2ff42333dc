package bootflow

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// TestLoginStageConsole runs the login stage against an in-process target
// for each mistake an administrator makes and reads what the boot console
// gets: every attempt's FAILED line, then the final error and its "check:"
// line (cmds/lunboot prints exactly these). The advice must appear once —
// in the check line, not also in the error text — name the settings of the
// kernel command line, and never show a secret.
func TestLoginStageConsole(t *testing.T) {
	const (
		secret       = "the-Right-S3cret-bf"
		wrongSecret  = "a-Wrong-S3cret-bf"
		targetSecret = "target-S3cret-bf"
	)
	oneWay := &iscsitest.CHAP{Username: "node", Secret: secret}
	mutual := &iscsitest.CHAP{Username: "node", Secret: secret, TargetUsername: "san", TargetSecret: targetSecret}
	for _, tc := range []struct {
		name   string
		target iscsitest.Options
		setup  func(c *bootcfg.Config)
		// advice must each appear exactly once in the console text: in
		// the check line; facts in the error; absent nowhere.
		advice, facts, absent []string
	}{
		{
			name:   "wrong CHAP secret",
			target: iscsitest.Options{CHAP: oneWay},
			setup:  func(c *bootcfg.Config) { c.CHAP = iscsi.CHAP{Username: "node", Secret: wrongSecret} },
			advice: []string{"check the CHAP user name and secret", "rd.iscsi.username", `for user "node"`},
			facts:  []string{"status 02/01: authentication failed"},
			absent: []string{"rd.iscsi.in."},
		},
		{
			name:   "target requires CHAP",
			target: iscsitest.Options{CHAP: oneWay},
			advice: []string{"the target requires CHAP", "rd.iscsi.username="},
			facts:  []string{"status 02/01"},
		},
		{
			name:   "mutual CHAP: the target's secret differs",
			target: iscsitest.Options{CHAP: mutual},
			setup: func(c *bootcfg.Config) {
				c.CHAP = iscsi.CHAP{Username: "node", Secret: secret, TargetUsername: "san", TargetSecret: "not-the-target-S3cret"}
			},
			advice: []string{"the target failed to prove itself", "rd.iscsi.in.username and rd.iscsi.in.password", `for user "san"`},
			facts:  []string{"the target's response to our challenge is wrong"},
			absent: []string{"rd.iscsi.username", "not-the-target-S3cret"},
		},
		{
			name:   "initiator not in the ACL",
			target: iscsitest.Options{Hooks: iscsitest.Hooks{LoginStatus: func(int) (uint8, uint8) { return 2, 2 }}},
			advice: []string{"allow that initiator name in the target's ACL", "lunboot.initiator="},
			facts:  []string{"status 02/02: initiator iqn.2026-11.org.lunboot:525400123456 not authorized"},
		},
		{
			name:   "wrong target name",
			target: iscsitest.Options{},
			setup:  func(c *bootcfg.Config) { c.Target.Target += "-typo" },
			advice: []string{"check the target name", "`lunboot discover 127.0.0.1:"},
			facts:  []string{"-typo", "status 02/03"},
		},
		{
			name:   "CRC32C required, target refuses",
			target: iscsitest.Options{Digests: "None"},
			setup:  func(c *bootcfg.Config) { c.HeaderDigest = bootcfg.DigestCRC32C },
			advice: []string{"lunboot.header_digest=prefer", "enable CRC32C digests on the target"},
			facts:  []string{"HeaderDigest=Reject", "CRC32C is required"},
		},
		{
			name:   "LUN written in decimal",
			target: iscsitest.Options{LUNs: []iscsitest.LUNOptions{{Size: 1 << 20}, {ID: 10, Size: 1 << 20}}},
			setup:  func(c *bootcfg.Config) { c.Target.LUN = scsi.LUN{0, 0x10} },
			advice: []string{"hexadecimal", `LUN 10 is written "a"`},
			facts:  []string{"the target has LUNs 0 (Linux 0), a (Linux 10)", "LUN 10 (Linux LUN 16) does not exist"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := iscsitest.NewTarget(tc.target)
			addr, err := tg.Listen()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tg.Close() })
			ap := netip.MustParseAddrPort(addr)
			rp, err := rootpath.New(ap.Addr().String(), ap.Port(), scsi.LUN{}, tg.Name())
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			b := &boot{o: Options{Console: rec}, log: slog.New(slog.DiscardHandler), cfg: bootcfg.Config{
				Target: rp, Initiator: "iqn.2026-11.org.lunboot:525400123456",
				HeaderDigest: bootcfg.DigestNone, DataDigest: bootcfg.DigestNone,
			}}
			if tc.setup != nil {
				tc.setup(&b.cfg)
			}
			t.Cleanup(func() {
				if b.session != nil {
					b.session.Close()
				}
			})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			err = run(ctx, rec, "login", RetryPolicy{Attempts: 3, Backoff: time.Millisecond}, true, b.login)
			var se *StageError
			if !errors.As(err, &se) {
				t.Fatalf("login stage = %v, want a *StageError", err)
			}
			if n := strings.Count(strings.Join(rec.lines, "\n"), "fail login"); n != 1 {
				t.Errorf("%d failed attempts, want 1 (the failure is permanent): %q", n, rec.lines)
			}
			console := strings.Join(rec.lines, "\n") + "\n" + se.Err.Error() + "\ncheck: " + se.Check
			t.Logf("console:\n%s", console)
			for _, w := range tc.advice {
				if n := strings.Count(console, w); n != 1 || !strings.Contains(se.Check, w) {
					t.Errorf("console shows %q %d times, want once, in the check line:\n%s", w, n, console)
				}
			}
			for _, w := range tc.facts {
				if !strings.Contains(se.Err.Error(), w) {
					t.Errorf("error %q does not state %q", se.Err, w)
				}
			}
			for _, w := range append(tc.absent, secret, wrongSecret, targetSecret) {
				if strings.Contains(console, w) {
					t.Errorf("console shows %q:\n%s", w, console)
				}
			}
			if strings.Contains(se.Err.Error(), "check") {
				t.Errorf("the error itself gives advice, which the check line gives: %q", se.Err)
			}
		})
	}
}
