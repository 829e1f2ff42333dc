package e2e

import (
	"regexp"
	"strings"
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
// and choose the command-line hand-off without being told (a locked-down OS
// kernel ignores an iBFT from its initrd): the OS command line it prepares
// names the target, and no table is delivered.
//
// The OS kernel is Debian's, signed by Debian's key, which a kernel booted
// without shim does not trust (its platform keyring holds the firmware's
// db, empty in OVMF's plain variable store): the locked-down
// kexec_file_load refuses it (EPERM, kernel/kexec_file.c
// kimage_validate_signature), and lunboot must stop there saying the
// signature was refused and what to do. That is the refusal of a kernel
// the firmware kernel cannot verify, the case a stripped signature
// (sbattach --remove) gives too.
func TestLockdownUEFI(t *testing.T) {
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-lockdown"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOnWith(t, l, qemuvm.UEFI, "lockdown=integrity lunboot.append=lockdown=integrity")
	f, evs := m.failure()
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "kernel lockdown: integrity (Secure Boot)")
	hand := summary(evs, "handoff")
	contains(t, "handoff stage", hand, "hand-off cmdline")
	if strings.Contains(hand, "iBFT") {
		t.Errorf("handoff stage %q delivers an iBFT to a locked-down OS", hand)
	}
	osCmdline := regexp.MustCompile(`(?m)^ +OS command line: (.*)$`).FindStringSubmatch(sec)
	if osCmdline == nil {
		t.Fatalf("lunboot printed no OS command line")
	}
	if got, _ := param(osCmdline[1], "netroot"); got != exp.RootPath() {
		t.Errorf("OS netroot= %q, want %q: the target must go on the command line", got, exp.RootPath())
	}
	if got, _ := param(osCmdline[1], "lockdown"); got != "integrity" {
		t.Errorf("OS lockdown= %q, want integrity (from lunboot.append=)", got)
	}
	if n := len(lockedDown.FindAllString(m.Console(), -1)); n != 1 {
		t.Errorf("the console shows %d kernels locked down from the command line, want lunboot's", n)
	}
	if f.Stage != "kexec-load" {
		t.Fatalf("the boot failed in stage %s, want kexec-load (the signature refusal)", f.Stage)
	}
	contains(t, "failure", strings.Join(f.Error, " "), "the OS kernel's signature was refused")
	contains(t, "check", f.Check, "locked down (integrity", "Boot a signed kernel")
}

// TestBootUKI boots the disk whose only entry is a Type #2 unified kernel
// image (EFI/Linux/lunboot-probe.efi on the ESP): osfind reads its .linux,
// .initrd and .cmdline sections, and the probe OS comes up with that
// command line and the hand-off. A make test-full case: the format reader
// is covered by pkg/osfind's tests, the boot path by every other boot.
func TestBootUKI(t *testing.T) {
	testenv.Full(t)
	s := setup(t)
	disk, err := s.fx.Disk(fixtures.GPTUKI)
	if err != nil {
		testenv.Missing(t, "the gpt-uki fixture (make fixtures, with systemd-boot-efi installed): "+err.Error())
	}
	l := labtest.Start(t, lab.Options{Name: "e2e-uki"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOn(t, l, "")
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "os stage", summary(evs, "os"), `UKI entry "lunboot probe OS (UKI) (1)"`, "on /dev/nbd0p1")
	checkProbe(t, r, disk, "uki")
	checkTakeover(t, r, exp, disk, lunbootInitiator(m.MAC()))
}
