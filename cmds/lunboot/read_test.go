package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestReadInterop(t *testing.T) {
	l := newLab(t, false, 6<<20+512)
	want := make([]byte, 6<<20+512)
	rand.Read(want)
	if err := os.WriteFile(l.LUNs[0], want, 0o644); err != nil {
		t.Fatal(err)
	}

	out, _, err := runCmd(t, "read", l.rootPath(1))
	if err != nil {
		t.Fatalf("lunboot read = %v", err)
	}
	if !bytes.Equal([]byte(out), want) {
		t.Errorf("lunboot read returned %d bytes that differ from the LUN's %d", len(out), len(want))
	}

	for _, r := range []struct{ off, n int64 }{{0, 1}, {1000, 3000005}, {1 << 20, 1 << 20}, {6<<20 + 500, 12}, {6<<20 + 512, 0}} {
		file := filepath.Join(t.TempDir(), "out")
		_, errOut, err := runCmd(t, "read", "-v", "--request", "64K", "--inflight", "3", "--offset", strconv.FormatInt(r.off, 10),
			"--length", strconv.FormatInt(r.n, 10), "-o", file, l.rootPath(1))
		if err != nil {
			t.Fatalf("lunboot read --offset %d --length %d = %v", r.off, r.n, err)
		}
		got, _ := os.ReadFile(file)
		if !bytes.Equal(got, want[r.off:r.off+r.n]) {
			t.Errorf("lunboot read --offset %d --length %d: %d bytes that differ from the LUN's", r.off, r.n, len(got))
		}
		if !strings.Contains(errOut, "lunboot: read ") {
			t.Errorf("lunboot read -v wrote %q to stderr, want progress", errOut)
		}
	}

	// -o /dev/null (copy speed alone, as make bench measures it): a
	// device that cannot be synced is not an error.
	if _, errOut, err := runCmd(t, "read", "-v", "-o", os.DevNull, l.rootPath(1)); err != nil || !strings.Contains(errOut, "MB/s in ") {
		t.Errorf("lunboot read -v -o %s = %v, stderr %q; want success and the throughput", os.DevNull, err, errOut)
	}

	_, _, err = runCmd(t, "read", "--offset", "6M", "--length", "1M", "-o", filepath.Join(t.TempDir(), "x"), l.rootPath(1))
	if err == nil || !strings.Contains(err.Error(), "past the end") {
		t.Errorf("lunboot read past the end = %v, want an error naming it", err)
	}
}
