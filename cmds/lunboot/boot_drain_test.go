package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipeBacklog returns how many bytes wait in the pipe.
func pipeBacklog(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
	if err != nil {
		t.Fatalf("FIONREAD: %v", err)
	}
	return n
}

// TestDrainConsoleWaitsForPipe: the uinit's stdout is a pipe that u-root's
// init copies to the consoles; drainConsole must return only once the
// copier has taken everything, here a reader that starts late.
func TestDrainConsoleWaitsForPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := w.WriteString("[  16.59s] shutdown   unmounted, /dev/nbd0 detached, logged out, eth0 down (500ms)\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		buf := make([]byte, 4096)
		_, _ = r.Read(buf)
	}()
	// A sysfs without console/active: only the pipe is waited for.
	drainConsole([]*os.File{w}, t.TempDir(), t.TempDir(), time.Minute)
	if n := pipeBacklog(t, w); n != 0 {
		t.Errorf("drainConsole returned with %d bytes still in the pipe", n)
	}
}

// TestDrainConsoleBounded: nothing reads the pipe; drainConsole gives up
// at its deadline and leaves the data alone. Consoles it cannot open
// (here, no such devices) are skipped.
func TestDrainConsoleBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const line = "booting Debian after 16.6s\n"
	if _, err := w.WriteString(line); err != nil {
		t.Fatal(err)
	}
	sysfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sysfs, "class/tty/console"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sysfs, "class/tty/console/active"), []byte("ttyS1 ttyS0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tty, err := os.CreateTemp(t.TempDir(), "not-a-pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	drainConsole([]*os.File{tty, w}, sysfs, t.TempDir(), 50*time.Millisecond)
	if n := pipeBacklog(t, w); n != len(line) {
		t.Errorf("pipe backlog after drainConsole = %d, want %d (untouched)", n, len(line))
	}
}
