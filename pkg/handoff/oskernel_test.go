package handoff

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lunboot/lunboot/internal/testenv"
)

// bzImageHeader returns the first bytes of an x86 bzImage whose setup
// header points at version (Documentation/arch/x86/boot.rst: boot_flag
// 0xAA55 at 0x1FE, "HdrS" at 0x202, kernel_version at 0x20E relative to
// 0x200).
func bzImageHeader(version string) []byte {
	b := make([]byte, 0x400)
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x100)
	copy(b[0x300:], version+"\x00")
	return append(b, make([]byte, 2048)...)
}

func TestKernelRelease(t *testing.T) {
	got, err := KernelRelease(bytes.NewReader(bzImageHeader("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1")))
	if got != "6.1.0-56-amd64" || err != nil {
		t.Errorf("KernelRelease(synthetic) = %q, %v; want 6.1.0-56-amd64", got, err)
	}
	for name, b := range map[string][]byte{
		"junk":    []byte(strings.Repeat("not a kernel", 100)),
		"no HdrS": bytes.ReplaceAll(bzImageHeader("6.1.0"), []byte("HdrS"), []byte("HdrX")),
		"short":   []byte("MZ"),
	} {
		if got, err := KernelRelease(bytes.NewReader(b)); err == nil {
			t.Errorf("KernelRelease(%s) = %q, want an error", name, got)
		}
	}

	matches, _ := filepath.Glob(filepath.Join(testenv.KernelDir(), "boot", "vmlinuz-*"))
	if len(matches) == 0 {
		testenv.Missing(t, "no Debian kernel in "+testenv.KernelDir())
	}
	f, err := os.Open(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := strings.TrimPrefix(filepath.Base(matches[0]), "vmlinuz-")
	if got, err := KernelRelease(f); got != want || err != nil {
		t.Errorf("KernelRelease(%s) = %q, %v; want %q", matches[0], got, err, want)
	}
}

func TestReadKernelFacts(t *testing.T) {
	const rel = "6.1.0-56-amd64"
	boot := fstest.MapFS{
		"config-" + rel:        {Data: []byte("CONFIG_ACPI_TABLE_UPGRADE=y\nCONFIG_ISCSI_IBFT=m\n")},
		"config-6.1.0-1-amd64": {Data: []byte("CONFIG_ISCSI_IBFT=n\n")},
	}
	root := fstest.MapFS{
		"usr/lib/modules/" + rel + "/modules.builtin": {Data: []byte("kernel/drivers/net/e1000e/e1000e.ko\nkernel/lib/crc32c.ko\n")},
		"boot/config-" + rel:                          {Data: []byte("CONFIG_ACPI_TABLE_UPGRADE=y\nCONFIG_ISCSI_IBFT=y\nCONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT=y\n")},
	}
	ks, builtin := ReadKernelFacts([]fs.FS{boot, root}, rel)
	// The last config read wins (the root's boot/, after the boot partition).
	if want := (KernelSupport{TableUpgrade: Yes, IBFTDriver: Yes, ForcedLockdown: No, LockdownInSecureBoot: Yes}); ks != want {
		t.Errorf("ReadKernelFacts() kernel = %+v, want %+v", ks, want)
	}
	if want := []string{"e1000e", "crc32c"}; !slices.Equal(builtin, want) {
		t.Errorf("ReadKernelFacts() builtin = %q, want %q", builtin, want)
	}
	if ks, builtin := ReadKernelFacts([]fs.FS{boot}, "5.10.0-9-amd64"); ks != (KernelSupport{}) || builtin != nil {
		t.Errorf("ReadKernelFacts(other release) = %+v, %q; want unknown, nothing", ks, builtin)
	}
}
