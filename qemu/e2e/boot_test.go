package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// TestBootDHCPOption17 is the boot an administrator gets by setting DHCP
// option 17 and nothing else: no parameters typed (but lunboot.force=1, for
// the probe's initrd), the initiator name derived from the MAC. The OS must
// get dracut's netroot=/rd.iscsi.initiator= and the iBFT, and log in with
// both.
func TestBootDHCPOption17(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-opt17"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOn(t, l, "")
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	initiator := lunbootInitiator(m.MAC())
	contains(t, "config stage", summary(evs, "config"), "target from DHCP", "no firmware iBFT")
	contains(t, "network stage", summary(evs, "network"), "DHCP from "+l.ServerIP().String(), "root-path from option 17")
	contains(t, "target stage", summary(evs, "target"), fmt.Sprintf("%s LUN 1 (Linux LUN 1) at %s as %s", exp.IQN, exp.Portal, initiator))
	contains(t, "login stage", summary(evs, "login"), exp.IQN+" at "+exp.Portal.String(), "no CHAP", "LUN 1: IET VIRTUAL-DISK, 128.0 MiB")
	contains(t, "nbd stage", summary(evs, "nbd"), "/dev/nbd0 (128.0 MiB, 2 partitions)")
	contains(t, "os stage", summary(evs, "os"), `BLS entry "lunboot probe OS`, "on /dev/nbd0p1")
	contains(t, "handoff stage", summary(evs, "handoff"), "hand-off both (iBFT")
	contains(t, "shutdown stage", summary(evs, "shutdown"), "unmounted, /dev/nbd0 detached, logged out, eth0 down", "MiB (VmHWM), tmpfs ", "MiB (OS kernel and initrd)")
	// The QEMU guest has one virtio NIC: its driver loads, the other
	// NICs' drivers do not (lunboot.modules=hardware, the default).
	contains(t, "modules stage", summary(evs, "modules"), "not needed (no matching device")
	sec := bootlog.Section(m.Console())
	s.checkStartLine(t, sec)
	contains(t, "lunboot console", sec, "(from DHCP option 17)", "(derived from MAC "+m.MAC().String()+")",
		"network: DHCP, waiting up to 30s for a lease (carrier up to 10s of it)", "login: connecting to "+exp.Portal.String()+", up to 10s")

	checkProbe(t, r, disk, "bls-default")
	if got, _ := param(r.Cmdline, "netroot"); got != exp.RootPath() {
		t.Errorf("OS netroot= %q, want %q", got, exp.RootPath())
	}
	if got, _ := param(r.Cmdline, "rd.iscsi.initiator"); got != initiator {
		t.Errorf("OS rd.iscsi.initiator= %q, want %q", got, initiator)
	}
	checkTakeover(t, r, exp, disk, initiator)
}

// TestBootMBRSyslinux boots the syslinux entry of the MBR disk, with the
// initiator name from DHCP option 203.
func TestBootMBRSyslinux(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.MBR)
	l := labtest.Start(t, lab.Options{Name: "e2e-mbr"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	const initiator = "iqn.2026-11.org.lunboot.e2e:mbr-node"
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath(), InitiatorName: initiator})

	m := s.powerOn(t, l, "lunboot.entry=syslinux")
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "target stage", summary(evs, "target"), " as "+initiator)
	contains(t, "os stage", summary(evs, "os"), `syslinux entry "lunboot probe OS (syslinux)" on /dev/nbd0p1`)
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "initiator "+initiator+" (from DHCP option 203)")

	checkProbe(t, r, disk, "syslinux")
	checkTakeover(t, r, exp, disk, initiator)
}

// TestBootGRUB boots the Debian-like disk, whose only configuration is
// /boot/grub/grub.cfg on an ext4 partition.
func TestBootGRUB(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GRUBExt4)
	l := labtest.Start(t, lab.Options{Name: "e2e-grub"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOn(t, l, "")
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "nbd stage", summary(evs, "nbd"), "1 partition)")
	contains(t, "os stage", summary(evs, "os"), `GRUB entry "lunboot probe OS, with Linux `, "on /dev/nbd0p1")

	initiator := lunbootInitiator(m.MAC())
	checkProbe(t, r, disk, "grub")
	checkTakeover(t, r, exp, disk, initiator)
}

// TestBootRootPathOnCmdline takes the target from netroot= on the command
// line; DHCP gives only an address (no option 17).
func TestBootRootPathOnCmdline(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-netroot"})
	_, exp := export(t, l, disk, lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.e2e:netroot"})
	labtest.DHCP(t, l, lab.DHCPConfig{})
	const initiator = "iqn.2026-11.org.lunboot.e2e:typed"

	// The port left empty: RFC 4173's default, 3260.
	m := s.powerOn(t, l, fmt.Sprintf("netroot=iscsi:%s:::1:%s rd.iscsi.initiator=%s", exp.Portal.Addr(), exp.IQN, initiator))
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "config stage", summary(evs, "config"), "target from the command line")
	if n := summary(evs, "network"); strings.Contains(n, "root-path") {
		t.Errorf("network stage = %q, want no root-path from DHCP", n)
	}
	contains(t, "target stage", summary(evs, "target"), fmt.Sprintf("%s LUN 1 (Linux LUN 1) at %s as %s", exp.IQN, exp.Portal, initiator))
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "(from kernel cmdline netroot", "(from kernel cmdline rd.iscsi.initiator")

	checkProbe(t, r, disk, "bls-default")
	if h, ok := handoff(r, "dracut"); !ok || h.Portal != exp.Portal.String() || h.Target != exp.IQN || h.LUN != "1" || h.Initiator != initiator {
		t.Errorf("OS dracut hand-off = %+v, want portal %s target %s LUN 1 initiator %s", h, exp.Portal, exp.IQN, initiator)
	}
	checkTakeover(t, r, exp, disk, initiator)
}

// chapCase is a boot with CHAP credentials typed on the command line.
type chapCase struct {
	chap lab.CHAP
	// args builds the command line from the export.
	args func(exp *lab.Export, c lab.CHAP) string
	// optionRootPath sends the target in DHCP option 17.
	optionRootPath bool
	mode           string // "one-way" or "mutual"
}

// TestBootCHAP boots from targets that require CHAP and mutual CHAP, the
// credentials typed on the command line: in dracut's rd.iscsi.* options,
// and inside lunboot.target=. With CHAP, lunboot hands the OS its
// credentials only through the iBFT (the automatic hand-off mode), and no
// secret may show on the console beyond the kernel's print of what was
// typed.
func TestBootCHAP(t *testing.T) {
	for name, c := range map[string]chapCase{
		"one-way-rd.iscsi": {
			chap:           lab.CHAP{Username: "e2e-node", Secret: "one-way-S3cret-e2e"},
			optionRootPath: true,
			mode:           "one-way",
			args: func(_ *lab.Export, c lab.CHAP) string {
				return fmt.Sprintf("rd.iscsi.username=%s rd.iscsi.password=%s", c.Username, c.Secret)
			},
		},
		"mutual-lunboot.target": {
			chap: lab.CHAP{Username: "e2e-node", Secret: "mutual-S3cret-init",
				TargetUsername: "e2e-target", TargetSecret: "mutual-S3cret-tgt9"},
			mode: "mutual",
			args: func(exp *lab.Export, c lab.CHAP) string {
				return fmt.Sprintf("lunboot.target=iscsi:%s:%s:%s:%s@%s::%d:1:%s", c.Username, c.Secret,
					c.TargetUsername, c.TargetSecret, exp.Portal.Addr(), exp.Portal.Port(), exp.IQN)
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := setup(t)
			disk := s.disk(t, fixtures.GPTBLS)
			l := labtest.Start(t, lab.Options{Name: "e2e-chap"})
			chap := c.chap
			_, exp := export(t, l, disk, lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.e2e:chap", CHAP: &chap})
			dhcp := lab.DHCPConfig{}
			if c.optionRootPath {
				dhcp.RootPath = exp.RootPath()
			}
			labtest.DHCP(t, l, dhcp)

			m := s.powerOn(t, l, c.args(exp, chap))
			r, line := m.probeResult()
			evs := m.stages()
			bootsOS(t, evs)
			contains(t, "login stage", summary(evs, "login"), c.mode+" CHAP")
			contains(t, "handoff stage", summary(evs, "handoff"), "hand-off ibft (iBFT")
			sec := bootlog.Section(m.Console())
			contains(t, "lunboot console", sec, fmt.Sprintf("chap %s user %q", c.mode, chap.Username))
			m.checkNoSecrets(line, chap.Secret, chap.TargetSecret)

			checkProbe(t, r, disk, "bls-default")
			initiator := lunbootInitiator(m.MAC())
			// Firmware mode only: the credentials are not on the OS
			// command line, so no command-line hand-off is made.
			if len(r.Firmware) == 0 {
				t.Errorf("OS command line %q asks for no firmware (iBFT) boot", r.Cmdline)
			}
			for _, h := range r.Handoffs {
				if h.Source != "ibft" {
					t.Errorf("OS got a %s hand-off on its command line (%+v); with CHAP only the iBFT may carry the target", h.Source, h)
				}
			}
			if strings.Contains(r.Cmdline, "password") {
				t.Errorf("OS command line %q names a password", r.Cmdline)
			}
			a := checkIBFT(t, r, exp, "01000000", initiator)
			if a["chap-name"] != chap.Username || a["rev-chap-name"] != chap.TargetUsername {
				t.Errorf("iBFT chap-name %q rev-chap-name %q, want %q and %q", a["chap-name"], a["rev-chap-name"], chap.Username, chap.TargetUsername)
			}
			// The probe shows a secret attribute that is there as "***".
			wantType, wantRev := "1", ""
			if c.mode == "mutual" {
				wantType, wantRev = "2", "***"
			}
			if a["chap-type"] != wantType || a["chap-secret"] != "***" || a["rev-chap-name-secret"] != wantRev {
				t.Errorf("iBFT chap-type %q, chap-secret %q, rev-chap-name-secret %q; want %s, ***, %q",
					a["chap-type"], a["chap-secret"], a["rev-chap-name-secret"], wantType, wantRev)
			}
			if l := checkLogin(t, r, "ibft", disk, initiator); l.OK && l.CHAP != c.mode {
				t.Errorf("probe login with the iBFT used CHAP %q, want %q", l.CHAP, c.mode)
			}
		})
	}
}

// TestBootLateTarget powers on with a target that appears 2 s after the
// guest's network is up: the login fails (connection refused), is retried
// and succeeds, and the boot goes on.
func TestBootLateTarget(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-late"})
	const iqn = "iqn.2026-11.org.lunboot.e2e:late"
	// The root-path of the export to come (lab.Export.RootPath's form).
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: fmt.Sprintf("iscsi:%s::3260:1:%s", l.ServerIP(), iqn)})

	m := s.powerOn(t, l, "")
	// The login follows the network stage within milliseconds: the
	// target starts 2 s after it.
	m.expect(failTimeout, `\] network +eth0`)
	late, err := l.StartTargetAfter(2*time.Second, lab.TargetOptions{}, func(tg *lab.Target) error {
		_, err := tg.Export(lab.ExportSpec{IQN: iqn, Images: []string{disk.Path}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := late.Wait(ctx)
	if err != nil {
		t.Fatalf("late target: %v", err)
	}
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	failed, retries := bootlog.Failures(evs, "login")
	if len(failed) == 0 || retries != len(failed) {
		t.Errorf("login: %d failed attempts and %d retries before the target came up, want at least one failure, each retried", len(failed), retries)
	}
	for _, f := range failed {
		if !regexp.MustCompile(`FAILED \(attempt \d/4\) after .*connection refused`).MatchString(f.Text) {
			t.Errorf("failed login line %q, want the attempt count and \"connection refused\"", f.Line)
		}
	}
	checkProbe(t, r, disk, "bls-default")
	exp := tg.Exports()[0]
	initiator := lunbootInitiator(m.MAC())
	checkTakeover(t, r, exp, disk, initiator)
}
