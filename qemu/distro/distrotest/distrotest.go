// Package distrotest gives Go tests the lab's Debian systems (package
// qemu/distro): it checks what building them needs through
// internal/testenv (skip with a reason locally, fail under CI=true), builds
// them once per test binary or reuses the cached ones, and in -short mode
// only reuses what is already up to date.
//
//	set := distrotest.Systems(t)
//	vm := labtest.VM(t, l, lab.VMConfig{Memory: "2G", Kernel: set.Debian.Kernel, …})
package distrotest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/distro"
)

// Tools are the programs a build runs.
var Tools = []string{"debootstrap", "chroot", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "cp", "go", "dpkg-query"}

// BuildTimeout bounds a cold build (debootstrap, an apt install, three
// initrds, three disks: 5–10 minutes on the lab machines).
const BuildTimeout = 40 * time.Minute

var (
	once   sync.Once
	set    *distro.Set
	err    error
	logMu  sync.Mutex
	logOut io.Writer = io.Discard
)

// Systems returns the built systems, building them on first use. In -short
// mode it does not build: if the cache is stale it skips the test.
func Systems(t testing.TB) *distro.Set {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, Tools...)
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		w := &testLog{t: t}
		logMu.Lock()
		logOut = w
		logMu.Unlock()
		log := slog.New(slog.NewTextHandler(syncWriter{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		start := time.Now()
		set, err = distro.Build(ctx, distro.Options{Log: log, NoBuild: testing.Short()})
		logMu.Lock()
		logOut = io.Discard
		logMu.Unlock()
		if err == nil && len(set.Rebuilt) > 0 {
			t.Logf("distro: built %v in %s", set.Rebuilt, time.Since(start).Round(time.Second))
		}
	})
	if errors.Is(err, distro.ErrStale) && testing.Short() {
		t.Skipf("skipping in -short mode: %v", err)
	}
	if err != nil {
		t.Fatalf("distro.Build: %v", err)
	}
	return set
}

// testLog sends build progress to the test that started the build, or to
// stderr when LUNBOOT_CONSOLE=1 asks for live output.
type testLog struct{ t testing.TB }

func (l *testLog) Write(p []byte) (int, error) {
	if os.Getenv("LUNBOOT_CONSOLE") == "1" {
		return os.Stderr.Write(p)
	}
	l.t.Logf("%s", p)
	return len(p), nil
}

// syncWriter writes to whichever test owns the build, and nowhere once it
// is over.
type syncWriter struct{}

func (syncWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return logOut.Write(p)
}

var (
	tcliOnce sync.Once
	tcliRoot string
	tcliErr  error
)

// TargetcliRoot returns the Debian root with targetcli-fb
// (distro.TargetcliRoot), building it (about 1–2 minutes from the cached
// base root) on first use; in -short mode a missing tree skips the test.
func TargetcliRoot(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, Tools...)
	tcliOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		w := &testLog{t: t}
		logMu.Lock()
		logOut = w
		logMu.Unlock()
		log := slog.New(slog.NewTextHandler(syncWriter{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		tcliRoot, tcliErr = distro.TargetcliRoot(ctx, distro.Options{Log: log, NoBuild: testing.Short()})
		logMu.Lock()
		logOut = io.Discard
		logMu.Unlock()
	})
	if errors.Is(tcliErr, distro.ErrStale) && testing.Short() {
		t.Skipf("skipping in -short mode: %v", tcliErr)
	}
	if tcliErr != nil {
		t.Fatalf("distro.TargetcliRoot: %v", tcliErr)
	}
	return tcliRoot
}
