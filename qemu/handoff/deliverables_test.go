package handoff_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// The one-file deliverables: each boots the Debian disk from the lab's
// target through lunboot, entered as a user would enter it.

// TestLinuxBootPayload boots out/linuxboot.bzImage (make linuxboot) with
// -kernel and no -initrd, as coreboot's Linux payload or a LinuxBoot DXE
// enters the kernel: lunboot's image comes from inside the kernel, the
// drivers are built in (no modules to load), and lunboot finds, hands off
// to and kexecs Debian, which logs in to its root LUN again.
func TestLinuxBootPayload(t *testing.T) {
	bz := testenv.RequireFile(t, filepath.Join(testenv.OutDir(), "linuxboot.bzImage"), "make linuxboot")
	e := setup(t)
	sys := e.set.Debian
	m := e.startWith(t, handoff.Config{Kernel: bz, System: sys, Args: poweroff})
	// In mode both nothing in Debian's initrd loads iscsi_ibft, so the
	// OS's /sys/firmware/ibft is not checked (TestDefaultMode).
	b := boot(t, m, nil)
	b.wantMode(t, "both")
	checkVersion(t, m)
	// The firmware kernel is the one make linuxboot built, not Debian's.
	if !regexp.MustCompile(`Linux version 6\.1\.\d+-lunboot .*mklinuxboot`).MatchString(m.Console()) {
		t.Errorf("the console shows no kernel from make linuxboot (\"Linux version 6.1.x-lunboot … @mklinuxboot\")")
	}
	// The image inside carries no modules: the stage says so and the
	// boot goes on with the built-in drivers.
	if s, ok := bootlog.Find(b.stages, "modules"); !ok || !strings.Contains(s.Line, "carries no modules") {
		t.Errorf("modules stage: %q, want it to say the image carries no modules", s.Line)
	} else {
		t.Logf("modules stage: %s", s.Line)
	}
}

// TestEFIExecutable boots out/lunboot.efi (make efi) under OVMF with no
// -kernel: the firmware finds it on a disk's ESP as \EFI\BOOT\BOOTX64.EFI
// (the removable-media path, as on a USB stick), systemd's stub starts the
// kernel inside it with the image and command line inside it, and lunboot
// boots the Debian disk from the lab's target. The console names the
// version lunboot was built from.
func TestEFIExecutable(t *testing.T) {
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	efi := testenv.RequireFile(t, filepath.Join(testenv.OutDir(), "lunboot.efi"), "make efi")
	e := setup(t)
	sys := e.set.DebianUEFI
	if sys == nil {
		testenv.Missing(t, "the debian-uefi disk (make distro)")
	}
	m := e.startWith(t, handoff.Config{EFI: efi, Firmware: qemuvm.UEFI, System: sys})
	// The iBFT in the OS under UEFI is TestUEFIDebianLayout's to assert:
	// here the OS kernel installed lunboot's table ("ACPI: Table
	// Upgrade: install [IBFT"), logged in by the command line, and still
	// showed no /sys/firmware/ibft (seen 2026-12-06), the same path as
	// with -kernel under OVMF. This test is about the EFI executable.
	b := boot(t, m, nil)
	b.wantMode(t, "both")
	checkVersion(t, m)
	con := m.Console()
	for _, re := range []string{
		`BdsDxe: starting Boot\w+ .*`, // OVMF started a boot option from the disk
		`efi: EFI v\d`,                // the kernel came up from UEFI
	} {
		if mt := regexp.MustCompile(re).FindString(con); mt == "" {
			t.Errorf("the console shows no %q", re)
		} else {
			t.Logf("console: %s", strings.TrimSpace(mt))
		}
	}
	want := m.Want(nil)
	want.EFI = true
	if err := b.os.Proof.Verify(want); err != nil {
		t.Errorf("%s from lunboot.efi: %v", sys.Name, err)
	}
}

// startWith boots cfg's system with the suite's console and cleanup.
func (e *env) startWith(t *testing.T, cfg handoff.Config) *handoff.Machine {
	t.Helper()
	l := labtest.Start(t, lab.Options{Name: "handoff-" + cfg.System.Name})
	cfg.OnConsole = labtest.Console(t, strings.TrimPrefix(t.Name(), "Test"))
	m, err := handoff.Start(context.Background(), l, cfg)
	if err != nil {
		t.Fatal(err)
	}
	labtest.KillAtEnd(t, l, m.VM)
	t.Logf("lunboot command line: %q; DHCP option 17 %q", m.Cmdline, m.Export.RootPath())
	return m
}

// checkVersion checks lunboot's first line names the version make image
// stamped (out/lunboot.version): what went into the deliverable is the
// checkout's, not an older build's.
func checkVersion(t *testing.T, m *handoff.Machine) {
	t.Helper()
	b, err := os.ReadFile(testenv.RequireFile(t, filepath.Join(testenv.OutDir(), "lunboot.version"), "make image"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(bootlog.Section(m.Console()), "\n")
	if want := bootlog.StartLine + ", version " + strings.TrimSpace(string(b)); strings.TrimRight(first, "\r") != want {
		t.Errorf("lunboot's first line = %q, want %q", first, want)
	}
}
