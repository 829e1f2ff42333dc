package handoff

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Lockdown levels (security/lockdown/lockdown.c, and the lockdown=
// parameter of Documentation/admin-guide/kernel-parameters.txt).
const (
	LockdownNone            = "none"
	LockdownIntegrity       = "integrity"
	LockdownConfidentiality = "confidentiality"
)

// LockedDown reports whether a lockdown level restricts the kernel: both
// integrity and confidentiality make it refuse unsigned kexec images and
// ACPI tables from the initrd (LOCKDOWN_KEXEC, LOCKDOWN_ACPI_TABLES sit
// below LOCKDOWN_INTEGRITY_MAX).
func LockedDown(level string) bool {
	return level == LockdownIntegrity || level == LockdownConfidentiality
}

// ReadLockdown returns the running kernel's lockdown level from
// <sysfs>/kernel/security/lockdown (securityfs, which u-root's init
// mounts): the file lists the levels with the current one in brackets,
// "none [integrity] confidentiality". A kernel without the lockdown LSM
// has no such file: the level is then "" and the error nil.
func ReadLockdown(sysfs string) (string, error) {
	p := filepath.Join(sysfs, "kernel", "security", "lockdown")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("handoff: read %s: %w", p, err)
	}
	return ParseLockdown(string(b))
}

// ParseLockdown reads the current level out of the lockdown file's text.
func ParseLockdown(s string) (string, error) {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]"), nil
		}
	}
	return "", fmt.Errorf("handoff: lockdown file %q names no current level in brackets", strings.TrimSpace(s))
}

// cmdlineLockdown returns the lockdown= level an OS command line asks for
// ("" without one).
func cmdlineLockdown(cmdline string) string {
	v, _ := Get(ParseCmdline(cmdline), "lockdown")
	return v
}

// ErrLockdownSecrets is matched by errors.Is when Decide refuses because
// the OS kernel runs locked down, so it ignores an iBFT, and the session's
// CHAP secrets would have to go on the command line.
var ErrLockdownSecrets = errors.New("handoff: the OS kernel runs locked down and ignores an iBFT from the initrd, and the only other hand-off, the command line, would show the CHAP secrets in /proc/cmdline")
