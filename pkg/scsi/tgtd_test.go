package scsi_test

// Interop tests: the Disk and the commands against tgtd on loopback,
// through lunboot's own iSCSI initiator.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

const (
	tgtIQN  = "iqn.2026-11.org.lunboot:scsi-interop"
	initIQN = "iqn.2026-11.org.lunboot:scsi-initiator"
)

// tgtd is tgtd with target 1 (tgtIQN) and sparse file LUNs.
type tgtd struct{ *tgt.Test }

// startTgtd runs tgtd with target 1 and one sparse file LUN per size
// (LUNs 1, 2, …).
func startTgtd(t *testing.T, sizes ...int64) *tgtd {
	t.Helper()
	return &tgtd{tgt.StartTest(t, tgtIQN, sizes...)}
}

func (e *tgtd) login(t *testing.T) *iscsi.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := iscsi.Login(ctx, iscsi.Config{Portal: e.Portal, TargetName: tgtIQN, InitiatorName: initIQN,
		Logger: testLogger()})
	if err != nil {
		t.Fatalf("iscsi.Login: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Logout(ctx)
	})
	return s
}

// testLogger shows the initiator's warnings with go test -v. It writes to
// stderr rather than t.Log: session goroutines may still log after the
// test has returned, and t.Log then panics.
func testLogger() *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func open(t *testing.T, s scsi.Executor, lun int, opts scsi.DiskOptions) *scsi.Disk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := scsi.OpenDisk(ctx, s, sam.LUNFromLinux(uint64(lun)), opts)
	if err != nil {
		t.Fatalf("OpenDisk(LUN %d) = %v", lun, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestTgtdDiskReadBack(t *testing.T) {
	e := startTgtd(t, 8<<20, 2<<20)
	s := e.login(t)
	ctx := context.Background()

	luns, err := scsi.ReportLUNs(ctx, s, scsi.LUN{})
	if err != nil || len(luns) != 3 || luns[2].Linux() != 2 {
		t.Fatalf("ReportLUNs = %v, %v, want LUNs 0, 1, 2", luns, err)
	}
	d := open(t, s, 1, scsi.DiskOptions{MaxTransfer: 256 << 10})
	if d.Size() != 8<<20 || d.BlockSize() != 512 || d.ReadOnly() {
		t.Fatalf("LUN 1: size %d, block %d, ro %v; want 8 MiB, 512, false", d.Size(), d.BlockSize(), d.ReadOnly())
	}
	model := make([]byte, d.Size())
	rng := mrand.New(mrand.NewPCG(7, 7))
	// Writes of every shape, several in flight, each to its own region so
	// the model is exact; then a byte-for-byte read back.
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := range 8 {
		region := int64(g) << 20
		wg.Go(func() {
			for range 20 {
				mu.Lock()
				off := region + rng.Int64N(1<<19)
				n := 1 + rng.IntN(1<<19)
				p := make([]byte, n)
				rand.Read(p)
				copy(model[off:], p)
				mu.Unlock()
				if k, err := d.WriteAt(p, off); k != n || err != nil {
					t.Errorf("WriteAt(%d bytes at %d) = %d, %v", n, off, k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	got := make([]byte, d.Size())
	if n, err := d.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("ReadAt(whole LUN) = %d, %v", n, err)
	}
	if !bytes.Equal(got, model) {
		t.Fatalf("LUN 1 read back differs from what was written")
	}
	for _, r := range []struct{ off, n int64 }{{1, 1}, {511, 2}, {4097, 70000}, {d.Size() - 3, 3}} {
		p := make([]byte, r.n)
		if k, err := d.ReadAt(p, r.off); k != int(r.n) || err != nil || !bytes.Equal(p, model[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v, equal %v", r.n, r.off, k, err, bytes.Equal(p, model[r.off:r.off+r.n]))
		}
	}
	// FUA writes go through too.
	if n, err := d.WriteAtFUA([]byte("forced unit access"), 12345); n != 18 || err != nil {
		t.Errorf("WriteAtFUA = %d, %v", n, err)
	}

	// The other LUN is independent.
	d2 := open(t, s, 2, scsi.DiskOptions{})
	zero := make([]byte, 4096)
	if _, err := d2.ReadAt(zero, 0); err != nil || !bytes.Equal(zero, make([]byte, 4096)) {
		t.Errorf("LUN 2 ReadAt = %v, want zeros", err)
	}

	// Past the end, the target's own answer maps to a typed error.
	err = scsi.Read(ctx, s, sam.LUNFromLinux(2), 4096, 512, make([]byte, 512))
	if !errors.Is(err, scsi.ErrLBAOutOfRange) {
		t.Errorf("Read past the end of LUN 2 = %v, want ErrLBAOutOfRange", err)
	}
	// An absent LUN.
	_, err = scsi.OpenDisk(ctx, s, sam.LUNFromLinux(9), scsi.DiskOptions{})
	if !errors.Is(err, scsi.ErrLUNNotSupported) {
		t.Errorf("OpenDisk(LUN 9) = %v, want ErrLUNNotSupported", err)
	}
}

func TestTgtdPast2TiB(t *testing.T) {
	e := startTgtd(t, 3<<40) // sparse: tmpfs/ext4 hold only what is written
	s := e.login(t)
	ctx := context.Background()
	c, err := scsi.ReadCapacity(ctx, s, sam.LUNFromLinux(1), false)
	if err != nil || !c.Long || c.Blocks() != 3<<40/512 {
		t.Fatalf("ReadCapacity = %+v, %v, want READ CAPACITY(16) with %d blocks", c, err, 3<<40/512)
	}
	d := open(t, s, 1, scsi.DiskOptions{})
	if d.Size() != 3<<40 {
		t.Fatalf("Size() = %d, want 3 TiB", d.Size())
	}
	for _, off := range []int64{2<<40 - 100, 5 << 39, 3<<40 - 4096} {
		p := make([]byte, 4096)
		rand.Read(p)
		if n, err := d.WriteAt(p, off); n != len(p) || err != nil {
			t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
		}
		got := make([]byte, len(p))
		if n, err := d.ReadAt(got, off); n != len(p) || err != nil || !bytes.Equal(got, p) {
			t.Errorf("ReadAt(%d) = %d, %v, equal %v", off, n, err, bytes.Equal(got, p))
		}
	}
}

func TestTgtdUnmap(t *testing.T) {
	e := startTgtd(t, 16<<20)
	if err := e.Srv.SetLUNParams(1, 1, "thin_provisioning=1"); err != nil {
		testenv.Missing(t, fmt.Sprintf("tgtd does not take thin_provisioning=1: %v", err))
	}
	s := e.login(t)
	d := open(t, s, 1, scsi.DiskOptions{})
	if !d.CanTrim() {
		c := d.Capacity()
		t.Fatalf("CanTrim() = false on a thin_provisioning=1 LUN (LBPME %v, limits %+v)", c.LBPME, d.BlockLimits())
	}
	data := bytes.Repeat([]byte{0xa5}, 4<<20)
	if _, err := d.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Trim(1<<20, 2<<20); err != nil {
		t.Fatalf("Trim = %v", err)
	}
	got := make([]byte, 4<<20)
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	clear(want[1<<20 : 3<<20])
	if !bytes.Equal(got, want) {
		t.Errorf("after Trim(1M, 2M) the LUN does not read zeros there and the old data elsewhere")
	}
}

func TestTgtdReadOnly(t *testing.T) {
	e := startTgtd(t, 1<<20)
	if err := e.Srv.SetLUNParams(1, 1, "readonly=1"); err != nil {
		testenv.Missing(t, fmt.Sprintf("tgtd does not take readonly=1: %v", err))
	}
	s := e.login(t)
	d := open(t, s, 1, scsi.DiskOptions{})
	if !d.ReadOnly() {
		t.Errorf("ReadOnly() = false on a readonly=1 LUN")
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, scsi.ErrWriteProtected) {
		t.Errorf("WriteAt on a read-only LUN = %v, want ErrWriteProtected", err)
	}
	// The target itself refuses a write that bypasses the Disk.
	err := scsi.Write(context.Background(), s, sam.LUNFromLinux(1), 0, 512, make([]byte, 512), false)
	if !errors.Is(err, scsi.ErrDataProtect) {
		t.Errorf("WRITE to a read-only LUN = %v, want DATA PROTECT", err)
	}
}
