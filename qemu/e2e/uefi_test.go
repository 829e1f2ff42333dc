package e2e

import (
	"context"
	"path/filepath"
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

// Kernel messages the lockdown tests read (security/lockdown/lockdown.c
// lock_kernel_down; arch/x86/kernel/setup.c; security/integrity's
// platform_certs/load_uefi.c and digsig.c).
var (
	lockedDown      = regexp.MustCompile(`Kernel is locked down from command line; see man kernel_lockdown\.7`)
	secureBootOn    = regexp.MustCompile(`secureboot: Secure boot enabled`)
	snakeoilInDB    = regexp.MustCompile(`integrity: Loaded X\.509 cert 'SnakeOil: [0-9a-f]+'`)
	lockdownRefusal = regexp.MustCompile(`Lockdown: [^\n]*: [^\n]*is restricted`)
)

// lockdownBoot starts lunboot under OVMF with Secure Boot on (Debian's
// snakeoil keys in PK, KEK and db) and lockdown=integrity on lunboot's
// command line and, through lunboot.append=, on the OS's, booting the
// fixture disk name. lunboot's own kernel is a copy of the image's kernel
// re-signed with the snakeoil key, since OVMF starts nothing else.
func lockdownBoot(t *testing.T, name string) (*machine, *lab.Export, *fixtures.Disk) {
	t.Helper()
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	testenv.RequireFile(t, qemuvm.OVMFVarsSnakeoil, "make deps (Debian package ovmf)")
	testenv.RequireBinaries(t, fixtures.SignTools...)
	s := setup(t)
	disk, err := s.fx.Disk(name)
	if err != nil {
		testenv.Missing(t, "the "+name+" fixture (make fixtures, with sbsigntool and openssl installed): "+err.Error())
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz.snakeoil")
	if err := fixtures.SignSnakeoil(context.Background(), s.kernel, kernel); err != nil {
		t.Fatal(err)
	}
	l := labtest.Start(t, lab.Options{Name: "e2e-" + strings.TrimPrefix(name, "gpt-bls-")})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})
	m := s.powerOnVM(t, l, lab.VMConfig{Firmware: qemuvm.UEFI, SecureBoot: true, Kernel: kernel},
		"lockdown=integrity lunboot.append=lockdown=integrity")
	return m, exp, disk
}

// checkLockdownChoice checks lunboot's side of a locked-down boot: it
// noticed its lockdown and chose the command-line hand-off, with the
// target and lockdown= on the OS command line and no iBFT.
func checkLockdownChoice(t *testing.T, m *machine, exp *lab.Export, evs []bootlog.Stage) {
	t.Helper()
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
}

// TestLockdownUEFI boots an OS under Secure Boot and kernel lockdown, on
// UEFI firmware (OVMF with Debian's snakeoil keys enrolled). lunboot's
// kernel is locked down (lockdown=integrity, and Secure Boot), so its
// kexec_file_load takes only a signed kernel: the gpt-bls-snakeoil disk's
// probe kernel is Debian's, re-signed with the snakeoil key, which the
// firmware kernel trusts through its platform keyring (the firmware's db,
// security/integrity/platform_certs/load_uefi.c; kexec_file_load tries the
// builtin and secondary keyrings, then the platform keyring,
// kexec_kernel_verify_pe_sig in kernel/kexec_file.c). lunboot must notice
// its own lockdown, say so, and choose the command-line hand-off without
// being told: a locked-down OS kernel ignores an iBFT from its initrd. The
// OS comes up locked down too (lunboot.append=lockdown=integrity), finds
// no iBFT, and logs in to its disk from the command line's netroot=.
func TestLockdownUEFI(t *testing.T) {
	m, exp, disk := lockdownBoot(t, fixtures.GPTSnakeoil)
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	checkLockdownChoice(t, m, exp, evs)
	checkProbe(t, r, disk, "bls-default")
	if r.Lockdown != "integrity" {
		t.Errorf("the OS's lockdown level = %q, want integrity (/sys/kernel/security/lockdown)", r.Lockdown)
	}
	if r.IBFT != nil {
		t.Errorf("the locked-down OS found an iBFT (%s from %s): lunboot must not deliver one", r.IBFT.Signature, r.IBFT.OEMID)
	}
	if len(r.Handoffs) != 1 || r.Handoffs[0].Source != "dracut" {
		t.Errorf("the OS's hand-offs = %+v, want only the command line's netroot= (dracut)", r.Handoffs)
	}
	checkLogin(t, r, "dracut", disk, lunbootInitiator(m.MAC()))
	con := m.Console()
	if n := len(lockedDown.FindAllString(con, -1)); n != 2 {
		t.Errorf("the console shows %d kernels locked down from the command line, want 2 (lunboot's and the OS's)", n)
	}
	if n := len(secureBootOn.FindAllString(con, -1)); n < 1 {
		t.Errorf("the console shows no %q: the firmware kernel did not start under Secure Boot", secureBootOn)
	}
	if !snakeoilInDB.MatchString(con) {
		t.Errorf("the console shows no %q: the snakeoil certificate never reached the platform keyring", snakeoilInDB)
	}
	for _, re := range []*regexp.Regexp{lockedDown, secureBootOn, snakeoilInDB, lockdownRefusal} {
		for _, l := range re.FindAllString(con, -1) {
			t.Logf("kernel: %s", l)
		}
	}
}

// TestLockdownUnsigned: the same locked-down boot with the probe kernel's
// signature stripped (sbattach --remove, the gpt-bls-unsigned disk). The
// firmware kernel's kexec_file_load refuses it (EPERM: no signature to
// check, and lockdown forbids unverified kexec images,
// kimage_validate_signature in kernel/kexec_file.c); lunboot stops at once
// saying the signature was refused and what to do. A make test-full case:
// TestLockdownUEFI covers lockdown, pkg/bootflow the refusal's handling.
func TestLockdownUnsigned(t *testing.T) {
	testenv.Full(t)
	m, exp, _ := lockdownBoot(t, fixtures.GPTUnsigned)
	f, evs := m.failure()
	checkLockdownChoice(t, m, exp, evs)
	if f.Stage != "kexec-load" {
		t.Fatalf("the boot failed in stage %s, want kexec-load (the signature refusal)", f.Stage)
	}
	contains(t, "failure", strings.Join(f.Error, " "), "the OS kernel's signature was refused")
	contains(t, "check", f.Check, "locked down (integrity", "Boot a signed kernel")
	if n := strings.Count(bootlog.Section(m.Console()), "fail kexec-load"); n > 1 {
		t.Errorf("kexec-load failed %d times, want no retry of a refused signature", n)
	}
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
