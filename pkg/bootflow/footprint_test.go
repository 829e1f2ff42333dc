package bootflow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tlunboot\nVmPeak:\t  812345 kB\nVmHWM:\t   14336 kB\nVmRSS:\t   12000 kB\n"
	got, err := parseVmHWM(strings.NewReader(status))
	if err != nil || got != 14336<<10 {
		t.Errorf("parseVmHWM() = %d, %v; want %d", got, err, 14336<<10)
	}
	for _, bad := range []string{"VmRSS: 1 kB\n", "VmHWM: 12 MB\n", "VmHWM: x kB\n"} {
		if _, err := parseVmHWM(strings.NewReader(bad)); err == nil {
			t.Errorf("parseVmHWM(%q) = nil error, want one", bad)
		}
	}
	if n, err := peakRSS(); err != nil || n <= 0 {
		t.Errorf("peakRSS() = %d, %v; want this process's VmHWM", n, err)
	}
}

func TestFileBytes(t *testing.T) {
	f := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(f, make([]byte, 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := fileBytes(f, "", filepath.Join(t.TempDir(), "gone")); got < 100000 {
		t.Errorf("fileBytes() = %d, want at least the file's 100000 bytes", got)
	}
}
