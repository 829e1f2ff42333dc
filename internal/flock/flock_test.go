package flock

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Locks taken through separate descriptors exclude each other even within
// one process (flock locks belong to the open file description), which lets
// the test stand in for two processes.
func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "lock")
	unlock, err := Lock(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := Lock(ctx, p, func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock while held = %v, want the context's deadline", err)
	}
	if !waited {
		t.Error("waiting was not called while the lock was held")
	}
	unlock()
	unlock2, err := Lock(t.Context(), p, nil)
	if err != nil {
		t.Fatalf("Lock after unlock = %v", err)
	}
	unlock2()
}

func TestLockAnySlots(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "0"), filepath.Join(dir, "1")}
	u1, err := LockAny(t.Context(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := LockAny(t.Context(), paths, nil)
	if err != nil {
		t.Fatalf("second slot: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	if _, err := LockAny(ctx, paths, nil); err == nil {
		t.Fatal("a third holder got one of two slots")
	}
	u1()
	u3, err := LockAny(t.Context(), paths, nil)
	if err != nil {
		t.Fatalf("slot after release: %v", err)
	}
	u2()
	u3()
	if _, err := LockAny(t.Context(), nil, nil); err == nil {
		t.Error("LockAny with no paths succeeded")
	}
}
