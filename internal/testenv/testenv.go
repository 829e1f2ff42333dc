// Package testenv holds the few helpers every lunboot test shares: where the
// repository and its build outputs are, and how a test that needs a binary,
// root or a build artefact skips — with a reason — or, under CI, fails.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// prerequisite is a failure rather than a skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Missing skips the test with why, or fails it under CI: the suite must not
// go green in CI because a tool it needs was not installed.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI: %s", why)
	}
	t.Skipf("skipping: %s (run `make deps`; under CI=true this fails)", why)
}

// RequireBinaries returns the resolved paths of the named executables, or
// skips/fails through Missing when one is not on PATH (or in /usr/sbin,
// /sbin, which non-root PATHs often lack).
func RequireBinaries(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if c := filepath.Join(dir, n); isExec(c) {
					p, err = c, nil
					break
				}
			}
		}
		if err != nil {
			Missing(t, "binary "+n+" not found")
		}
		paths[i] = p
	}
	return paths
}

// RequireRoot skips/fails the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "test needs root (network namespaces, tgtd, QEMU taps)")
	}
}

// RequireFile returns path if it exists, else skips/fails with what builds it.
func RequireFile(t testing.TB, path, builtBy string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path+" not found (built by "+builtBy+")")
	}
	return path
}

// RepoRoot is the repository's top directory, found from this source file.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testenv: runtime.Caller failed")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// OutDir is where `make image` and `make fixtures` put build outputs:
// $LUNBOOT_OUT, else <repo>/out.
func OutDir() string {
	if d := os.Getenv("LUNBOOT_OUT"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "out")
}

// CacheDir is the git-ignored download cache `make deps` fills:
// $LUNBOOT_CACHE, else <repo>/.cache.
func CacheDir() string {
	if d := os.Getenv("LUNBOOT_CACHE"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".cache")
}

// KernelDir is the unpacked Debian kernel package (boot/vmlinuz-*, lib/modules/*).
func KernelDir() string { return filepath.Join(CacheDir(), "kernel", "current") }

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
