// Package flock holds advisory file locks (flock(2)) that processes of the
// project share: a build cache written by one test binary while another
// waits, and the machine-wide slots that bound how many QEMU guests the
// test packages, which go test runs in parallel, start at once.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// poll is how often a held lock is tried again. flock(2) has no timed wait,
// and a blocking one could not end with ctx.
const poll = 250 * time.Millisecond

// Lock takes an exclusive lock on the file at path, creating it, and waits
// until it is free or ctx ends. waiting, if not nil, is called once when
// the lock is held by another process. The lock ends with the returned
// unlock, or with the process.
func Lock(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	return LockAny(ctx, []string{path}, waiting)
}

// LockAny takes an exclusive lock on the first of paths that is free,
// waiting as Lock does while all are held: len(paths) slots shared by every
// process that uses the same files.
func LockAny(ctx context.Context, paths []string, waiting func()) (unlock func(), err error) {
	if len(paths) == 0 {
		return nil, errors.New("flock: no lock files")
	}
	files := make([]*os.File, len(paths))
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("flock: %w", err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("flock: %w", err)
		}
		files[i] = f
	}
	for told := false; ; {
		for i, f := range files {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				files[i] = nil // kept open: closing it would drop the lock
				return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
			}
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("flock: lock %s: %w", f.Name(), err)
			}
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("flock: waiting for %s: %w", lockNames(paths), ctx.Err())
		case <-time.After(poll):
		}
	}
}

func lockNames(paths []string) string {
	if len(paths) == 1 {
		return paths[0]
	}
	return fmt.Sprintf("one of %d locks in %s", len(paths), filepath.Dir(paths[0]))
}
