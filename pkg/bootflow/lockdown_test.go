package bootflow

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
)

// lockedSysfs is a sysfs whose securityfs says the kernel runs locked down.
func lockedSysfs(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "kernel", "security", "lockdown")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("none [integrity] confidentiality\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBootLockdown: lunboot on a locked-down kernel says so and hands off
// by the command line alone (the OS kernel will ignore an iBFT), without
// being told.
func TestBootLockdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.sysfs = lockedSysfs(t)
		con, _, err := l.boot("", true)
		if err != nil {
			t.Fatalf("Boot() = %v; console:\n%s", err, con.text())
		}
		for _, line := range []string{
			"kernel lockdown: integrity (Secure Boot)",
			"ok handoff: initramfs-tools (klibc ipconfig) initrd; hand-off cmdline",
		} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		if !bytes.Equal(l.loaded.initrd, l.initrd) {
			t.Errorf("kexec got an initrd of %d bytes, want the OS's own %d (no iBFT in front)", len(l.loaded.initrd), len(l.initrd))
		}
		if c := l.loaded.cmdline; !strings.Contains(c, "iscsi_target_name="+testTarget) || strings.Contains(c, "iscsi_auto") {
			t.Errorf("kexec command line = %q, want the explicit target and no firmware mode", c)
		}
	})
}

// TestBootLockdownUnsigned: the locked-down kernel refuses an unsigned OS
// kernel (kexec_file_load fails with EPERM, kernel/kexec_file.c): lunboot
// says the signature was refused and what to do, without retrying.
func TestBootLockdownUnsigned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.sysfs = lockedSysfs(t)
		l.failures["kexec-load"] = fmt.Errorf("kexec: %w", syscall.EPERM)
		con, _, err := l.boot("", false)
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "kexec-load" {
			t.Fatalf("Boot() = %v, want a failure in stage kexec-load; console:\n%s", err, con.text())
		}
		msg := err.Error() + "\n" + se.Check
		for _, want := range []string{"signature was refused", "locked down (integrity", "signed"} {
			if !strings.Contains(msg, want) {
				t.Errorf("failure %q (check %q) does not say %q", err, se.Check, want)
			}
		}
		if n := strings.Count(con.text(), "fail kexec-load"); n > 1 {
			t.Errorf("kexec-load failed %d times, want no retry of a refused signature", n)
		}
	})
}
