package e2e

import (
	"regexp"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// lockedDown is the kernel's message for lockdown= on its command line
// (security/lockdown/lockdown.c, lock_kernel_down).
var lockedDown = regexp.MustCompile(`Kernel is locked down from command line; see man kernel_lockdown\.7`)

// TestLockdownUEFI stands Secure Boot in with kernel lockdown, on UEFI
// firmware (OVMF): lunboot's kernel gets lockdown=integrity, the OS's too
// (through lunboot.append=). lunboot must notice its own lockdown, say so,
// and hand off by the command line without being told (a locked-down OS
// kernel ignores an iBFT from its initrd); the locked-down kexec must take
// the signed Debian kernel the probe OS runs, and the OS must log in with
// the target its command line names.
func TestLockdownUEFI(t *testing.T) {
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-lockdown"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOnWith(t, l, qemuvm.UEFI, "lockdown=integrity lunboot.append=lockdown=integrity")
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "kernel lockdown: integrity (Secure Boot)")
	contains(t, "handoff stage", summary(evs, "handoff"), "hand-off cmdline")
	if n := len(lockedDown.FindAllString(m.Console(), -1)); n != 2 {
		t.Errorf("the console shows %d kernels locked down from the command line, want 2 (lunboot's and the OS's)", n)
	}
	checkProbe(t, r, disk, "bls-default")
	initiator := lunbootInitiator(m.MAC())
	checkLogin(t, r, "dracut", disk, initiator)
	if got, _ := param(r.Cmdline, "netroot"); got != exp.RootPath() {
		t.Errorf("OS netroot= %q, want %q: the target must come from the command line", got, exp.RootPath())
	}
	if got, _ := param(r.Cmdline, "lockdown"); got != "integrity" {
		t.Errorf("OS lockdown= %q, want integrity (from lunboot.append=)", got)
	}
	if r.IBFT != nil {
		t.Errorf("the OS has an iBFT (%+v); a locked-down hand-off delivers none", r.IBFT)
	}
}
