package handoff_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
)

// TestUEFIDebianLayout boots, under UEFI firmware (OVMF), the Debian disk
// laid out as Debian's UEFI installer leaves it: lunboot's kernel starts
// through its EFI stub, osfind follows the ESP's GRUB stub to the root's
// /boot/grub/grub.cfg, the hand-off is the default (both: the command line
// and the iBFT in front of the initrd, which the OS kernel installs under
// EFI as under BIOS), and the OS comes up after kexec with its EFI runtime
// services (efivarfs readable) and logs in to the LUN again.
func TestUEFIDebianLayout(t *testing.T) {
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	e := setup(t)
	sys := e.set.DebianUEFI
	if sys == nil {
		testenv.Missing(t, "the debian-uefi disk (make distro)")
	}
	m := e.startOn(t, qemuvm.UEFI, sys, poweroff, nil, "")
	b := boot(t, m, &yes)
	b.wantMode(t, "both")
	b.wantIBFT(t, nil)
	want := m.Want(&yes)
	want.EFI = true
	if err := b.os.Proof.Verify(want); err != nil {
		t.Errorf("%s under OVMF: %v", sys.Name, err)
	}
	t.Logf("OS EFI: %+v", b.os.Proof.EFI)
	s, _ := bootlog.Find(b.stages, "os")
	if !strings.Contains(s.Text, "GRUB entry") || !strings.Contains(s.Text, "via EFI/debian/grub.cfg on /dev/nbd0p1") {
		t.Errorf("lunboot's os stage = %q, want the GRUB entry reached through the ESP's stub", s.Text)
	}
	if !regexp.MustCompile(`efi: EFI v\d`).MatchString(m.Console()) {
		t.Errorf("the console shows no kernel starting from EFI (\"efi: EFI v…\")")
	}
	b.wantArgs(t, map[string]string{"root": "UUID=" + sys.RootUUID})
}
