package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func openTest(t *testing.T, tgt *memTarget, lun LUN, opts DiskOptions) *Disk {
	t.Helper()
	d, err := OpenDisk(context.Background(), tgt, lun, opts)
	if err != nil {
		t.Fatalf("OpenDisk(lun %s) = %v", lun, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenDiskErrors(t *testing.T) {
	tgt := newMemTarget()
	ctrl := tgt.addDisk(LUN{}, 512, 1)
	ctrl.inq.Type = TypeController
	tgt.addDisk(LUN{0, 2}, 520, 100)
	tgt.addDisk(LUN{0, 3}, 512, 100).prot = 0x03 // type 2 protection
	tgt.addDisk(LUN{0, 4}, 512, 100).prot = 0x01 // type 1: usable
	for _, tt := range []struct {
		lun  LUN
		is   error
		want string
	}{
		{LUN{0, 7}, ErrLUNNotSupported, "no logical unit with this number"},
		{LUN{}, ErrNotBlockDevice, "is a controller"},
		{LUN{0, 2}, nil, "unsupported logical block size 520"},
		{LUN{0, 3}, nil, "type 2 protection"},
	} {
		d, err := OpenDisk(context.Background(), tgt, tt.lun, DiskOptions{})
		if err == nil {
			d.Close()
			t.Errorf("OpenDisk(lun %s) = nil error, want %q", tt.lun, tt.want)
			continue
		}
		if (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("OpenDisk(lun %s) = %v, want %q", tt.lun, err, tt.want)
		}
		// Advice is the caller's (pkg/advice): the error states facts.
		if strings.Contains(err.Error(), "check") {
			t.Errorf("OpenDisk(lun %s) = %v gives advice", tt.lun, err)
		}
	}
	if d, err := OpenDisk(context.Background(), tgt, LUN{0, 4}, DiskOptions{}); err != nil {
		t.Errorf("OpenDisk(type 1 protection) = %v, want it opened", err)
	} else {
		d.Close()
	}
}

func TestOpenDiskProbe(t *testing.T) {
	tgt := newMemTarget()
	thin := tgt.addDisk(lun1, 4096, 3<<29) // 6 TiB of 4K blocks: past 2^32 blocks? no; size past 2 TiB
	thin.lbpme = true
	thin.lbp = &LogicalBlockProvisioning{LBPU: true}
	thin.limits = &BlockLimits{MaxTransferLength: 64, MaxUnmapLBACount: 1024, MaxUnmapBlockDescriptorCount: 1}
	thin.ua = []SenseError{{Key: SenseUnitAttention, ASC: 0x29}, {Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x09}}
	big := tgt.addDisk(LUN{0, 2}, 512, 3<<31)
	big.inq.Version = 4 // SPC-2: READ CAPACITY(10) first
	wp := tgt.addDisk(LUN{0, 3}, 512, 64)
	wp.wp = true
	wp.noMS10 = true
	wp.dpofua = false

	d := openTest(t, tgt, lun1, DiskOptions{})
	if d.Size() != 3<<29*4096 || d.BlockSize() != 4096 || !d.CanTrim() || d.ReadOnly() {
		t.Errorf("thin disk: size %d, block %d, trim %v, ro %v; want %d, 4096, true, false", d.Size(), d.BlockSize(), d.CanTrim(), d.ReadOnly(), int64(3<<29)*4096)
	}
	if got := d.MaxTransfer(); got != 64*4096 {
		t.Errorf("MaxTransfer() = %d, want %d from VPD 0xb0", got, 64*4096)
	}
	if !d.fuaNative || d.Inquiry().Product != "MEMDISK" || !d.Capacity().Long {
		t.Errorf("thin disk: fua %v, product %q, long capacity %v; want true, MEMDISK, true", d.fuaNative, d.Inquiry().Product, d.Capacity().Long)
	}

	tgt.cdbs = nil
	d = openTest(t, tgt, LUN{0, 2}, DiskOptions{MaxTransfer: 1 << 30})
	if d.Size() != 3<<40 || d.CanTrim() || d.MaxTransfer() != 1<<30 {
		t.Errorf("3 TiB disk: size %d, trim %v, max transfer %d; want %d, false, 1 GiB", d.Size(), d.CanTrim(), d.MaxTransfer(), int64(3)<<40)
	}
	if tgt.countOp(OpReadCapacity10) != 1 || tgt.countOp(OpServiceActionIn16) != 1 {
		t.Errorf("3 TiB SPC-2 disk: %d READ CAPACITY(10), %d (16); want 1 each", tgt.countOp(OpReadCapacity10), tgt.countOp(OpServiceActionIn16))
	}

	d = openTest(t, tgt, LUN{0, 3}, DiskOptions{})
	if !d.ReadOnly() || d.fuaNative {
		t.Errorf("write-protected disk via MODE SENSE(6): ro %v, fua %v; want true, false", d.ReadOnly(), d.fuaNative)
	}
	d = openTest(t, tgt, LUN{0, 2}, DiskOptions{ReadOnly: true})
	if !d.ReadOnly() {
		t.Errorf("ReadOnly option: ReadOnly() = false")
	}
}

// model is the reference a Disk is compared with.
type model []byte

func (m model) check(t *testing.T, d *Disk) {
	t.Helper()
	got := make([]byte, len(m))
	if n, err := d.ReadAt(got, 0); n != len(m) || err != nil {
		t.Fatalf("ReadAt(whole disk) = %d, %v", n, err)
	}
	if !bytes.Equal(got, m) {
		i := 0
		for got[i] == m[i] {
			i++
		}
		t.Fatalf("disk differs from the model at byte %d (block %d): got %#02x, want %#02x", i, i/d.BlockSize(), got[i], m[i])
	}
}

func TestDiskReadWriteModel(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 256) // 128 KiB
	d := openTest(t, tgt, lun1, DiskOptions{MaxTransfer: 4096, Parallel: 3})
	m := make(model, d.Size())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		off := rng.Int64N(d.Size())
		n := 1 + rng.IntN(min(20000, int(d.Size()-off)))
		if i%4 == 0 { // aligned
			off &^= 511
			n = (n + 511) &^ 511
			n = min(n, int(d.Size()-off))
		}
		if rng.IntN(3) == 0 {
			got := make([]byte, n)
			if k, err := d.ReadAt(got, off); k != n || err != nil {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, k, err)
			}
			if !bytes.Equal(got, m[off:off+int64(n)]) {
				t.Fatalf("ReadAt(%d bytes at %d) differs from the model", n, off)
			}
			continue
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		write := d.WriteAt
		if rng.IntN(2) == 0 {
			write = d.WriteAtFUA
		}
		if k, err := write(p, off); k != n || err != nil {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, off, k, err)
		}
		copy(m[off:], p)
	}
	m.check(t, d)
	for _, c := range tgt.commands() {
		if (c[0] == OpRead10 || c[0] == OpWrite10) && binary.BigEndian.Uint16(c[7:]) > 8 {
			t.Fatalf("command % x moves %d blocks, more than MaxTransfer allows (8)", c, binary.BigEndian.Uint16(c[7:]))
		}
	}
}

func TestDiskConcurrentPartialWrites(t *testing.T) {
	// Many writers, each owning a disjoint byte range, all inside the same
	// few blocks: every read-modify-write races with the others. Without
	// the block range locks, writes get lost.
	tgt := newMemTarget()
	tgt.yield = true
	tgt.addDisk(lun1, 512, 16)
	d := openTest(t, tgt, lun1, DiskOptions{})
	m := make(model, d.Size())
	const writers, piece = 24, 100 // 2400 bytes over 5 blocks
	var wg sync.WaitGroup
	for round := range 10 {
		for w := range writers {
			off := int64(w*piece + 37)
			p := bytes.Repeat([]byte{byte(round*writers + w + 1)}, piece)
			copy(m[off:], p)
			wg.Go(func() {
				if n, err := d.WriteAt(p, off); n != piece || err != nil {
					t.Errorf("WriteAt(%d at %d) = %d, %v", piece, off, n, err)
				}
			})
		}
		wg.Wait()
		// Aligned readers and writers alongside, outside the writers' bytes.
		wg.Go(func() {
			if _, err := d.ReadAt(make([]byte, 4096), 0); err != nil {
				t.Errorf("ReadAt = %v", err)
			}
		})
		wg.Wait()
	}
	m.check(t, d)
}

func TestDiskConcurrentMixed(t *testing.T) {
	// A full-block write racing a partial write to the same block may land
	// in either order, but never so that the read-modify-write puts back
	// the old block over the full write: the aligned write must respect the
	// partial write's range lock too.
	tgt := newMemTarget()
	tgt.yield = true
	tgt.addDisk(lun1, 512, 64)
	d := openTest(t, tgt, lun1, DiskOptions{})
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		blk := int64(i % 64)
		full := bytes.Repeat([]byte{byte(i) | 0x80}, 512)
		at := int64(rng.IntN(480))
		part := bytes.Repeat([]byte{byte(i) & 0x7f}, 32)
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := d.WriteAt(full, blk*512); err != nil {
				t.Errorf("WriteAt(full block %d) = %v", blk, err)
			}
		})
		wg.Go(func() {
			if _, err := d.WriteAt(part, blk*512+at); err != nil {
				t.Errorf("WriteAt(32 bytes in block %d) = %v", blk, err)
			}
		})
		wg.Wait()
		got := make([]byte, 512)
		if _, err := d.ReadAt(got, blk*512); err != nil {
			t.Fatal(err)
		}
		fullFirst := append(bytes.Clone(full[:at]), append(bytes.Clone(part), full[at+32:]...)...)
		if !bytes.Equal(got, full) && !bytes.Equal(got, fullFirst) {
			t.Fatalf("round %d: block %d is neither order of the two writes (lost update): % x", i, blk, got[:64])
		}
	}
}

func TestDiskBounds(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 8)
	d := openTest(t, tgt, lun1, DiskOptions{})
	size := d.Size()
	for _, tt := range []struct {
		off, n  int64
		wantN   int
		wantErr error
	}{
		{0, size, int(size), nil},
		{size - 10, 20, 10, io.EOF},
		{size, 1, 0, io.EOF},
		{size + 5000, 1, 0, io.EOF},
		{-1, 1, 0, ErrOutOfRange},
		{3, 0, 0, nil},
	} {
		n, err := d.ReadAt(make([]byte, tt.n), tt.off)
		if n != tt.wantN || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v, want %d, %v", tt.n, tt.off, n, err, tt.wantN, tt.wantErr)
		}
	}
	tgt.cdbs = nil
	for _, tt := range []struct{ off, n int64 }{{size - 10, 20}, {size, 1}, {-1, 1}, {1 << 62, 1}} {
		if n, err := d.WriteAt(make([]byte, tt.n), tt.off); n != 0 || !errors.Is(err, ErrOutOfRange) {
			t.Errorf("WriteAt(%d bytes at %d) = %d, %v, want 0, ErrOutOfRange", tt.n, tt.off, n, err)
		}
	}
	if err := d.Trim(size-512, 1024); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("Trim past the end = %v, want ErrOutOfRange", err)
	}
	if len(tgt.commands()) != 0 {
		t.Errorf("out-of-range calls sent %d commands, want none", len(tgt.commands()))
	}
	if n, err := d.WriteAt(nil, size); n != 0 || err != nil {
		t.Errorf("WriteAt(nothing at the end) = %d, %v, want 0, nil", n, err)
	}
}

func TestDiskRetriesAndSense(t *testing.T) {
	tgt := newMemTarget()
	l := tgt.addDisk(lun1, 512, 64)
	d := openTest(t, tgt, lun1, DiskOptions{Retry: RetryPolicy{Backoff: time.Microsecond}})

	// A unit attention and a BUSY in the middle of I/O are absorbed.
	l.ua = []SenseError{{Key: SenseUnitAttention, ASC: 0x29, ASCQ: 0x07}}
	busy := 1
	tgt.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
		if cmd.CDB[0] == OpWrite10 && busy > 0 {
			busy--
			return &Result{Status: byte(StatusBusy)}, nil, true
		}
		return nil, nil, false
	}
	if n, err := d.WriteAt([]byte("hello"), 1000); n != 5 || err != nil {
		t.Fatalf("WriteAt with a unit attention and BUSY pending = %d, %v", n, err)
	}
	got := make([]byte, 5)
	if _, err := d.ReadAt(got, 1000); err != nil || string(got) != "hello" {
		t.Errorf("ReadAt after retries = %q, %v, want hello", got, err)
	}

	// A medium error is not transient: typed, named, no retry.
	tgt.cdbs = nil
	tgt.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
		if cmd.CDB[0] == OpRead10 && binary.BigEndian.Uint32(cmd.CDB[2:]) <= 40 && 40 < binary.BigEndian.Uint32(cmd.CDB[2:])+uint32(binary.BigEndian.Uint16(cmd.CDB[7:])) {
			e := &SenseError{Key: SenseMediumError, ASC: 0x11, InformationValid: true, Information: 40}
			return &Result{Status: byte(StatusCheckCondition), Sense: e.Marshal()}, nil, true
		}
		return nil, nil, false
	}
	n, err := d.ReadAt(make([]byte, 4096), 40*512)
	var se *SenseError
	if n != 0 || !errors.As(err, &se) || se.Key != SenseMediumError || !strings.Contains(err.Error(), "UNRECOVERED READ ERROR (11/00), at LBA 40") {
		t.Errorf("ReadAt over a bad block = %d, %v, want 0 and a medium error at LBA 40", n, err)
	}
	if c := tgt.countOp(OpRead10); c != 1 {
		t.Errorf("medium error retried: %d READs, want 1", c)
	}

	// Split transfers report how much completed before the failure.
	d2 := openTest(t, tgt, lun1, DiskOptions{MaxTransfer: 4096, Parallel: 1})
	n, err = d2.ReadAt(make([]byte, 32*512), 16*512) // chunks at LBA 16, 24, 32, 40
	if n != 3*4096 || !errors.Is(err, ErrMediumError) {
		t.Errorf("split ReadAt failing in its last chunk = %d, %v, want %d and a medium error", n, err, 3*4096)
	}
}

func TestDiskFUA(t *testing.T) {
	for _, native := range []bool{true, false} {
		tgt := newMemTarget()
		l := tgt.addDisk(lun1, 512, 64)
		l.dpofua = native
		d := openTest(t, tgt, lun1, DiskOptions{})
		tgt.cdbs = nil
		if n, err := d.WriteAtFUA(make([]byte, 1024), 2048); n != 1024 || err != nil {
			t.Fatalf("WriteAtFUA = %d, %v", n, err)
		}
		cmds := tgt.commands()
		switch {
		case native && (len(cmds) != 1 || cmds[0][0] != OpWrite10 || cmds[0][1]&0x08 == 0):
			t.Errorf("WriteAtFUA with DPOFUA sent % x, want one WRITE(10) with FUA", cmds)
		case !native && (len(cmds) != 2 || cmds[0][1]&0x08 != 0 || !bytes.Equal(cmds[1], SynchronizeCache10CDB(4, 2))):
			t.Errorf("WriteAtFUA without DPOFUA sent % x, want WRITE(10) then SYNCHRONIZE CACHE(10) of blocks 4-5", cmds)
		}
		tgt.cdbs = nil
		if err := d.Flush(); err != nil || tgt.countOp(OpSynchronizeCache10) != 1 {
			t.Errorf("Flush = %v with %d SYNCHRONIZE CACHE, want nil with 1", err, tgt.countOp(OpSynchronizeCache10))
		}
	}
}

func TestDiskWriteProtect(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 64).wp = true
	tgt.addDisk(LUN{0, 2}, 512, 64).wpHide = true

	d := openTest(t, tgt, lun1, DiskOptions{})
	tgt.cdbs = nil
	if n, err := d.WriteAt([]byte{1}, 0); n != 0 || !errors.Is(err, ErrReadOnly) || !errors.Is(err, ErrWriteProtected) {
		t.Errorf("WriteAt on a WP disk = %d, %v, want 0, ErrReadOnly and ErrWriteProtected", n, err)
	}
	if len(tgt.commands()) != 0 {
		t.Errorf("WriteAt on a WP disk sent % x, want nothing", tgt.commands())
	}

	// Write protection found only by a failing write.
	d = openTest(t, tgt, LUN{0, 2}, DiskOptions{})
	if d.ReadOnly() {
		t.Fatalf("ReadOnly() before any write = true, want false")
	}
	if _, err := d.WriteAt(make([]byte, 512), 0); !errors.Is(err, ErrWriteProtected) || !errors.Is(err, ErrDataProtect) {
		t.Errorf("first WriteAt on a hidden-WP disk = %v, want DATA PROTECT / write protected", err)
	}
	if !d.ReadOnly() {
		t.Errorf("ReadOnly() after a write-protected failure = false, want true")
	}
}

func TestDiskTrim(t *testing.T) {
	tgt := newMemTarget()
	l := tgt.addDisk(lun1, 512, 128)
	l.lbpme = true
	l.lbp = &LogicalBlockProvisioning{LBPU: true}
	l.limits = &BlockLimits{MaxUnmapLBACount: 16, MaxUnmapBlockDescriptorCount: 1}
	d := openTest(t, tgt, lun1, DiskOptions{})
	if !d.CanTrim() {
		t.Fatalf("CanTrim() = false for LBPME+LBPU, want true")
	}
	fill := bytes.Repeat([]byte{0xaa}, int(d.Size()))
	if _, err := d.WriteAt(fill, 0); err != nil {
		t.Fatal(err)
	}
	tgt.cdbs = nil
	if err := d.Trim(100, 40*512); err != nil {
		t.Fatalf("Trim = %v", err)
	}
	// Whole blocks inside [100, 20580): 1..39, in UNMAPs of at most 16.
	if n := tgt.countOp(OpUnmap); n != 3 || l.unmapped != 39 {
		t.Errorf("Trim sent %d UNMAPs for %d blocks, want 3 for 39", n, l.unmapped)
	}
	m := model(fill)
	clear(m[512 : 40*512])
	m.check(t, d)
	if err := d.Trim(10, 100); err != nil || l.unmapped != 39 {
		t.Errorf("Trim inside one block = %v, %d unmapped; want nil and nothing unmapped", err, l.unmapped)
	}

	thick := tgt.addDisk(LUN{0, 2}, 512, 8)
	_ = thick
	d = openTest(t, tgt, LUN{0, 2}, DiskOptions{})
	if d.CanTrim() || !errors.Is(d.Trim(0, 512), ErrNotSupported) {
		t.Errorf("thick LUN: CanTrim %v, Trim error %v; want false, ErrNotSupported", d.CanTrim(), d.Trim(0, 512))
	}
	// LBPME without LBPU, or with a zero unmap limit, is no trim either.
	l3 := tgt.addDisk(LUN{0, 3}, 512, 8)
	l3.lbpme, l3.lbp = true, &LogicalBlockProvisioning{}
	if d = openTest(t, tgt, LUN{0, 3}, DiskOptions{}); d.CanTrim() {
		t.Errorf("LBPME without LBPU: CanTrim() = true, want false")
	}
	l3.lbp, l3.limits = &LogicalBlockProvisioning{LBPU: true}, &BlockLimits{}
	if d = openTest(t, tgt, LUN{0, 3}, DiskOptions{}); d.CanTrim() {
		t.Errorf("MAXIMUM UNMAP LBA COUNT 0: CanTrim() = true, want false")
	}
}

// hang makes every READ wait for its context, like a target that vanished.
func hang(tgt *memTarget) {
	tgt.before = func(ctx context.Context, cmd *Command) (*Result, error, bool) {
		if cmd.CDB[0] == OpRead10 {
			<-ctx.Done()
			return nil, ctx.Err(), true
		}
		return nil, nil, false
	}
}

func TestDiskTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tgt := newMemTarget()
		tgt.addDisk(lun1, 512, 8)
		d := openTest(t, tgt, lun1, DiskOptions{Timeout: 8 * time.Second})
		hang(tgt)
		// Operations started at different times each get at least the
		// timeout and at most 9/8 of it.
		var wg sync.WaitGroup
		for _, delay := range []time.Duration{0, 300 * time.Millisecond, 999 * time.Millisecond, 1500 * time.Millisecond} {
			wg.Go(func() {
				time.Sleep(delay)
				start := time.Now()
				_, err := d.ReadAt(make([]byte, 512), 0)
				if el := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || el < 8*time.Second || el > 9*time.Second {
					t.Errorf("ReadAt on a hung target, started at +%v = %v after %v, want deadline exceeded after 8s to 9s", delay, err, el)
				}
			})
		}
		wg.Wait()
	})
}

func TestDiskClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tgt := newMemTarget()
		tgt.addDisk(lun1, 512, 8)
		d := openTest(t, tgt, lun1, DiskOptions{Timeout: -1})
		hang(tgt)
		done := make(chan error)
		go func() {
			_, err := d.ReadAt(make([]byte, 512), 0)
			done <- err
		}()
		synctest.Wait()
		d.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("ReadAt in flight at Close = %v, want ErrClosed", err)
		}
		if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, ErrClosed) {
			t.Errorf("WriteAt after Close = %v, want ErrClosed", err)
		}
		if err := d.Flush(); !errors.Is(err, ErrClosed) {
			t.Errorf("Flush after Close = %v, want ErrClosed", err)
		}
	})
}

func TestDiskPast2TiB(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 3<<31)
	d := openTest(t, tgt, lun1, DiskOptions{})
	off := int64(5<<39) + 333 // 2.5 TiB, unaligned
	p := []byte("beyond the 32-bit LBA horizon")
	tgt.cdbs = nil
	if n, err := d.WriteAt(p, off); n != len(p) || err != nil {
		t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
	}
	got := make([]byte, len(p))
	if n, err := d.ReadAt(got, off); n != len(p) || err != nil || !bytes.Equal(got, p) {
		t.Errorf("ReadAt(%d) = %q, %d, %v, want %q", off, got, n, err, p)
	}
	if tgt.countOp(OpWrite16) != 1 || tgt.countOp(OpRead16) != 2 || tgt.countOp(OpRead10) != 0 {
		t.Errorf("I/O past 2 TiB sent % x, want READ(16), WRITE(16), READ(16)", tgt.commands())
	}
}
