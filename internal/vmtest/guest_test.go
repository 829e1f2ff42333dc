package vmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuest boots a guest and checks, from inside, what the init promised:
// PID 1 is the init, the pseudo file systems are mounted, the module and its
// parameter are loaded, and Files arrived.
func TestGuest(t *testing.T) {
	host := filepath.Join(t.TempDir(), "payload.txt")
	if !InGuest() {
		if err := os.WriteFile(host, []byte("from the host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Run(t, Options{
		Modules:      []string{"nbd"},
		ModuleParams: map[string]string{"nbd": "nbds_max=3"},
		Files:        map[string]string{"/data/payload.txt": host},
		Env:          []string{"VMTEST_PROBE=42"},
	}, func(t *testing.T) {
		if os.Getppid() != 1 {
			t.Errorf("parent PID = %d, want 1 (the init)", os.Getppid())
		}
		for _, p := range []string{"/proc/self/stat", "/sys/kernel", "/dev/null", "/tmp"} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("Stat(%s) = %v", p, err)
			}
		}
		b, err := os.ReadFile("/sys/module/nbd/parameters/nbds_max")
		if err != nil || strings.TrimSpace(string(b)) != "3" {
			t.Errorf("nbd nbds_max = %q, %v, want 3", b, err)
		}
		if _, err := os.Stat("/dev/nbd2"); err != nil {
			t.Errorf("Stat(/dev/nbd2) = %v, want the device from nbds_max=3", err)
		}
		if _, err := os.Stat("/dev/nbd3"); err == nil {
			t.Errorf("/dev/nbd3 exists, want only three devices")
		}
		if b, err := os.ReadFile("/data/payload.txt"); err != nil || string(b) != "from the host\n" {
			t.Errorf("/data/payload.txt = %q, %v", b, err)
		}
		if os.Getenv("VMTEST_PROBE") != "42" {
			t.Errorf("VMTEST_PROBE = %q, want 42", os.Getenv("VMTEST_PROBE"))
		}
	})
}

// TestGuestReportsFailure runs a guest test that fails and checks the host
// sees its non-zero exit status.
func TestGuestReportsFailure(t *testing.T) {
	if InGuest() {
		t.Skip("host side only")
	}
	if testing.Short() {
		t.Skip("skipping QEMU guest run in -short mode")
	}
	res := runGuest(t, Options{}, "TestGuestHelperFails")
	if !res.haveStatus || res.status != 1 {
		t.Errorf("guest run of a failing test: status %d (reported=%v, timed out=%v), want 1", res.status, res.haveStatus, res.timedOut)
	}
}

// TestGuestHelperFails is the failing test TestGuestReportsFailure boots.
func TestGuestHelperFails(t *testing.T) {
	if !InGuest() {
		t.Skip("runs only in TestGuestReportsFailure's guest")
	}
	t.Fatal("deliberate failure inside the guest")
}

// TestGuestTimesOut runs a guest test that hangs past the host's bound and
// checks that QEMU is killed and the run reported as timed out.
func TestGuestTimesOut(t *testing.T) {
	if InGuest() {
		t.Skip("host side only")
	}
	if testing.Short() {
		t.Skip("skipping QEMU guest run in -short mode")
	}
	start := time.Now()
	// -test.timeout=0 (the last flag wins) keeps the guest's own timeout
	// out of the way, so only the host's bound can end the run.
	res := runGuest(t, Options{Timeout: 40 * time.Second, TestArgs: []string{"-test.timeout=0"}}, "TestGuestHelperHangs")
	if !res.timedOut || res.haveStatus {
		t.Errorf("guest run of a hanging test: timed out=%v, status reported=%v, want a timeout and no status", res.timedOut, res.haveStatus)
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("hanging guest took %v to be stopped, want about 40s", d)
	}
}

// TestGuestHelperHangs is the hanging test TestGuestTimesOut boots.
func TestGuestHelperHangs(t *testing.T) {
	if !InGuest() {
		t.Skip("runs only in TestGuestTimesOut's guest")
	}
	t.Log("hanging until the host kills the guest")
	time.Sleep(time.Hour)
}
