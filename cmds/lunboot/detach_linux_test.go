package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/vmtest"
	"github.com/lunboot/lunboot/pkg/nbd"
)

// memDisk is the smallest blockdev.Device: a byte slice.
type memDisk struct {
	mu   sync.Mutex
	data []byte
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.data[off:], p), nil
}

func (m *memDisk) Flush() error   { return nil }
func (m *memDisk) Size() int64    { return int64(len(m.data)) }
func (m *memDisk) BlockSize() int { return 512 }

// TestNBDKernel runs `lunboot attach` and `lunboot detach` in one QEMU
// guest with the nbd driver (one boot for both: each costs half a minute
// under TCG).
func TestNBDKernel(t *testing.T) {
	vmtest.Run(t, vmtest.Options{Modules: []string{"nbd"}, CPUs: 2}, func(t *testing.T) {
		t.Run("Detach", testDetachKernel)
		t.Run("Attach", testAttachKernel)
	})
}

// testDetachKernel runs `lunboot detach` against a device this process
// serves.
func testDetachKernel(t *testing.T) {
	{
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// A stall here once took the kernel's 30-second timeout to
		// show; the watchdog logs the guest's state well before that.
		defer vmtest.Watchdog(t, 15*time.Second, "nbd3")()
		// Warnings (a reconnect during Attach) go to the console.
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		d, err := nbd.Attach(ctx, &memDisk{data: make([]byte, 4<<20)}, nbd.AttachOptions{Index: 3, Logger: logger})
		if err != nil {
			t.Fatalf("Attach = %v", err)
		}
		defer d.Detach(ctx)
		out, _, err := runCmd(t, "detach", "nbd3")
		if err != nil || !strings.Contains(out, "/dev/nbd3 disconnected") {
			t.Fatalf("lunboot detach nbd3 = %q, %v", out, err)
		}
		if err := d.Wait(ctx); err != nil {
			t.Errorf("served device after lunboot detach: Wait = %v, want a clean disconnect", err)
		}
		out, _, err = runCmd(t, "detach", "/dev/nbd3")
		if err != nil || !strings.Contains(out, "/dev/nbd3 is not connected") {
			t.Errorf("second lunboot detach = %q, %v, want \"not connected\"", out, err)
		}
		if _, _, err := runCmd(t, "detach", "/dev/nbd900"); err == nil || !strings.Contains(err.Error(), "no such NBD device") {
			t.Errorf("lunboot detach /dev/nbd900 = %v, want no such device", err)
		}
	}
}
