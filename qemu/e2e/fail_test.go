package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// failCase is a boot that must fail in the login stage with a message that
// says what is wrong, then start the rescue shell.
type failCase struct {
	// spec is the export; rootPath the DHCP option 17 to send, built from it.
	spec     lab.ExportSpec
	rootPath func(l *lab.Lab, exp *lab.Export) string
	args     string
	// attempts is how many login attempts the console must show (1 for a
	// permanent failure: no retry).
	attempts int
	// errorHas and checkHas must appear in the error and check lines.
	errorHas, checkHas []string
	secrets            []string
}

// loginAnnounce is the line the login stage prints before each attempt.
var loginAnnounce = regexp.MustCompile(`(?m)^ +login: connecting to \S+:\d+, up to 10s$`)

// TestBootFails covers the mistakes an administrator makes: each must end
// the boot in the login stage with its own message and advice, retry only
// what a retry can fix, and leave a working rescue shell.
func TestBootFails(t *testing.T) {
	const iqn = "iqn.2026-11.org.lunboot.e2e:fail"
	chap := lab.CHAP{Username: "e2e-node", Secret: "the-Right-S3cret-e2e"}
	for name, c := range map[string]failCase{
		// A wrong CHAP secret is permanent: no retry.
		"wrong-chap-secret": {
			spec:     lab.ExportSpec{IQN: iqn, CHAP: &chap},
			rootPath: func(_ *lab.Lab, exp *lab.Export) string { return exp.RootPath() },
			args:     "rd.iscsi.username=e2e-node rd.iscsi.password=a-Wrong-S3cret-e2e",
			attempts: 1,
			errorHas: []string{"status 02/01", "authentication failed"},
			checkHas: []string{"CHAP user name and secret", "rd.iscsi.username"},
			secrets:  []string{"a-Wrong-S3cret-e2e", chap.Secret},
		},
		// A target name the portal does not know: permanent.
		"wrong-target-name": {
			spec: lab.ExportSpec{IQN: iqn},
			rootPath: func(_ *lab.Lab, exp *lab.Export) string {
				return strings.Replace(exp.RootPath(), iqn, iqn+"-typo", 1)
			},
			attempts: 1,
			errorHas: []string{"status 02/03", "not found", iqn + "-typo"},
			checkHas: []string{"check the target name", "lunboot discover"},
		},
		// LUN 5 on a target with one LUN: the message lists the LUNs
		// there are.
		"wrong-lun": {
			spec: lab.ExportSpec{IQN: iqn},
			rootPath: func(_ *lab.Lab, exp *lab.Export) string {
				return strings.Replace(exp.RootPath(), ":1:"+iqn, ":5:"+iqn, 1)
			},
			attempts: 1,
			errorHas: []string{"LUN 5 (Linux LUN 5) does not exist on " + iqn, "the target has LUNs 0 (Linux 0), 1 (Linux 1)"},
			checkHas: []string{"hexadecimal"},
		},
		// An address in the lab's subnet where no machine answers: the
		// connection attempt fails (no ARP reply), is retried once
		// (lunboot.retries=1), then the portal is reported unreachable.
		"unreachable-portal": {
			spec: lab.ExportSpec{IQN: iqn},
			rootPath: func(l *lab.Lab, exp *lab.Export) string {
				return fmt.Sprintf("iscsi:%s::3260:1:%s", nobody(l), iqn)
			},
			args:     "lunboot.retries=1",
			attempts: 2,
			errorHas: []string{":3260"},
			checkHas: []string{"unreachable"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := setup(t)
			disk := s.disk(t, fixtures.GPTBLS)
			l := labtest.Start(t, lab.Options{Name: "e2e-fail"})
			_, exp := export(t, l, disk, c.spec)
			labtest.DHCP(t, l, lab.DHCPConfig{RootPath: c.rootPath(l, exp)})

			m := s.powerOn(t, l, c.args)
			f, evs := m.failure()
			if f.Stage != "login" || f.Then != "rescue" {
				t.Errorf("boot failed in stage %q, then %s; want stage login, then the rescue shell", f.Stage, f.Then)
			}
			if got := bootlog.Finished(evs); strings.Join(got, " ") != strings.Join(bootlog.Stages[:4], " ") {
				t.Errorf("finished stages = %v, want %v", got, bootlog.Stages[:4])
			}
			failed, retries := bootlog.Failures(evs, "login")
			if len(failed) != c.attempts || retries != c.attempts-1 {
				t.Errorf("login: %d failed attempts, %d retries; want %d and %d", len(failed), retries, c.attempts, c.attempts-1)
			}
			// A permanent failure ends the retries early, and says so.
			if c.attempts == 1 && len(failed) == 1 && !strings.Contains(failed[0].Text, "(attempt 1/4, not retried)") {
				t.Errorf("failed login line %q, want \"(attempt 1/4, not retried)\"", failed[0].Line)
			}
			contains(t, "error", f.ErrorText(), c.errorHas...)
			contains(t, "check", f.Check, c.checkHas...)
			// Every attempt says where it connects and for how long
			// before it waits (the default login bound is 10 s).
			if n := len(loginAnnounce.FindAllString(bootlog.Section(m.Console()), -1)); n != c.attempts {
				t.Errorf("%d %q lines, want one per attempt (%d)", n, loginAnnounce, c.attempts)
			}
			if len(c.secrets) > 0 {
				m.checkNoSecrets("", c.secrets...)
			}
			m.rescueShell()
		})
	}
}

// TestBootFailsThenReboots: with lunboot.rescue=0 a failed boot reboots
// instead of starting the shell (QEMU runs with -no-reboot, so the guest
// ends). The portal is the lab's server on a port where nothing listens.
func TestBootFailsThenReboots(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-reboot"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	closed := netip.AddrPortFrom(exp.Portal.Addr(), 3261)
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: fmt.Sprintf("iscsi:%s::%d:1:%s", closed.Addr(), closed.Port(), exp.IQN)})

	m := s.powerOn(t, l, "lunboot.rescue=0 lunboot.retries=0")
	f, evs := m.failure()
	if f.Stage != "login" || f.Then != "reboot" {
		t.Errorf("boot failed in stage %q, then %s; want stage login, then a reboot", f.Stage, f.Then)
	}
	if failed, retries := bootlog.Failures(evs, "login"); len(failed) != 1 || retries != 0 {
		t.Errorf("login: %d failed attempts, %d retries; want 1 and 0 (lunboot.retries=0)", len(failed), retries)
	}
	contains(t, "error", f.ErrorText(), "connection refused")
	contains(t, "check", f.Check, "nothing listens on "+closed.String())
	ctx, cancel := context.WithTimeout(context.Background(), rescueTimeout)
	defer cancel()
	if err := m.Wait(ctx); err != nil && !m.Exited() {
		t.Fatalf("the guest did not reboot: %v", err)
	}
	if strings.Contains(m.Console(), bootlog.RescueLine) {
		t.Errorf("the console shows %q after lunboot.rescue=0", bootlog.RescueLine)
	}
}

// nobody returns an address of the lab's subnet that no machine has: the
// top of the range, outside dnsmasq's leases.
func nobody(l *lab.Lab) netip.Addr {
	p := l.Prefix().Masked()
	a := p.Addr().As4()
	a[3] = 250
	return netip.AddrFrom4(a)
}
