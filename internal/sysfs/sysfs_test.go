package sysfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadAttr(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"52:54:00:12:34:56\n", "52:54:00:12:34:56"},
		{"iqn.x\x00\x00\x00", "iqn.x"},
		{"", ""},
		{strings.Repeat("a", 3*MaxAttr), strings.Repeat("a", MaxAttr)},
	} {
		p := filepath.Join(dir, "attr")
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadAttr(p); err != nil || got != tc.want {
			t.Errorf("ReadAttr(%.20q) = %.20q, %v; want %.20q", tc.content, got, err, tc.want)
		}
	}
	if _, err := ReadAttr(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("ReadAttr(missing) = %v, want not-exist", err)
	}
}
