// Package testenv holds the few helpers every lunboot test shares: where the
// repository and its build outputs are, and how a test that needs a binary,
// root or a build artefact skips — with a reason — or, under CI, fails.
package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/flock"
	"github.com/lunboot/lunboot/internal/sbin"
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
		p, err := sbin.Look(n)
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

// DefaultCache is the machine-wide cache `make deps` fills (the Makefile's
// CACHE): downloads and slow builds keyed by their inputs, shared by every
// checkout on the machine.
const DefaultCache = "/var/cache/lunboot"

// CacheDir is the machine cache: $LUNBOOT_CACHE, else DefaultCache.
func CacheDir() string {
	if d := os.Getenv("LUNBOOT_CACHE"); d != "" {
		return d
	}
	return DefaultCache
}

// KernelDir is the unpacked Debian kernel package (boot/vmlinuz-*, lib/modules/*).
func KernelDir() string { return filepath.Join(CacheDir(), "kernel", "current") }

// Full skips the test unless the slow variants were asked for
// (LUNBOOT_FULL=1, set by `make test-full`): end-to-end variants whose
// capability already has one case in `make test` sit behind it, so the cold
// `make test` stays within CI's budget.
func Full(t testing.TB) {
	t.Helper()
	if os.Getenv("LUNBOOT_FULL") != "1" {
		t.Skip("skipping: a slow variant, run by `make test-full` (LUNBOOT_FULL=1)")
	}
}

// GuestSlot waits for one of the machine's QEMU guest slots and holds it
// until t ends. go test runs the packages' test binaries side by side, and
// each TCG guest keeps a core busy: without a machine-wide bound, the
// end-to-end packages together would start more guests than the machine
// has cores, and every boot would crawl towards its deadline. The number
// of slots is $LUNBOOT_GUESTS, by default the number of CPUs.
func GuestSlot(t testing.TB) {
	t.Helper()
	guestSlot(t)
}

// GuestSlots takes two guest slots for a test that runs two guests at once
// (the LIO target VM and a client booting from it). Tests that take two
// first queue on one more lock, so that two of them can never each hold
// one slot while waiting for the other: the slots they wait for are held
// by single-guest tests, which always finish.
func GuestSlots(t testing.TB) {
	t.Helper()
	lock := filepath.Join(os.TempDir(), "lunboot-guest-slots", "pair")
	if err := os.MkdirAll(filepath.Dir(lock), 0o777); err != nil {
		t.Fatalf("guest slots: %v", err)
	}
	unlock, err := flock.Lock(t.Context(), lock, nil)
	if err != nil {
		t.Fatalf("waiting to take two QEMU guest slots: %v", err)
	}
	defer unlock() // once both are held the next pair-taker may queue
	if n := slotCount(); n < 2 {
		unlock()
		t.Skipf("skipping: two guests at once, but LUNBOOT_GUESTS=%d", n)
	}
	guestSlot(t)
	guestSlot(t)
}

// slotCount is the number of guest slots: $LUNBOOT_GUESTS, else the CPUs.
func slotCount() int {
	n := runtime.NumCPU()
	if v, err := strconv.Atoi(os.Getenv("LUNBOOT_GUESTS")); err == nil && v >= 1 {
		n = v
	}
	return n
}

func guestSlot(t testing.TB) {
	t.Helper()
	n := slotCount()
	dir := filepath.Join(os.TempDir(), "lunboot-guest-slots")
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, "slot"+strconv.Itoa(i))
	}
	start := time.Now()
	unlock, err := flock.LockAny(t.Context(), paths, nil)
	if err != nil {
		t.Fatalf("waiting for a QEMU guest slot: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("waited %v for one of %d QEMU guest slots (LUNBOOT_GUESTS)", d.Round(time.Second), n)
	}
	t.Cleanup(unlock)
}

// SyncBuffer is a bytes.Buffer that several goroutines may write at once:
// for output a command or library may still log from its own goroutines
// while the test reads what came so far.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
