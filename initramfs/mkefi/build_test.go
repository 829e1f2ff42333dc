package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

// TestLayout: the added sections start after the stub's, page-aligned, in
// order, without overlapping, at absolute addresses (image base included).
func TestLayout(t *testing.T) {
	secs := []section{{name: ".osrel", size: 0x14e}, {name: ".linux", size: 0x7dd7c0}, {name: ".initrd", size: 1}}
	layout(secs, 0x10000000, 0x19134)
	want := []uint64{0x1001a000, 0x1001b000, 0x107f9000}
	for i, s := range secs {
		if s.vma != want[i] {
			t.Errorf("layout: %s at %#x, want %#x", s.name, s.vma, want[i])
		}
	}
}

// TestBuildRefusesNonKernel: a file that is not an EFI-stub bzImage is
// refused by name before objcopy makes an executable that would fail
// silently at boot.
func TestBuildRefusesNonKernel(t *testing.T) {
	if _, err := os.Stat(DefaultStub); err != nil {
		testenv.Missing(t, "the EFI stub "+DefaultStub+" (Debian package systemd-boot-efi, make deps)")
	}
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(k, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	err := build(t.Context(), config{out: dir, kernel: k, initrd: "", cmdline: DefaultCmdline, stub: DefaultStub}, os.Stdout)
	if err == nil || !strings.Contains(err.Error(), "not an x86 bzImage") {
		t.Errorf("build(zeros as kernel) = %v, want an error saying it is not a bzImage", err)
	}
}
