package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("lunboot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "lunboot" {
		t.Errorf("dst = %q, want %q", b, "lunboot")
	}
	if _, err := os.Stat(dst + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind: %v", err)
	}
	if Size(dst) != 7 || Size(filepath.Join(dir, "missing")) != 0 {
		t.Errorf("Size = %d, %d; want 7, 0", Size(dst), Size(filepath.Join(dir, "missing")))
	}
	if err := CopyFile(filepath.Join(dir, "missing"), dst); err == nil {
		t.Error("CopyFile of a missing file succeeded")
	}
}
