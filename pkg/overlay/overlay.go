package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

// ErrFull is returned (wrapped, together with syscall.ENOSPC so that the
// NBD server answers ENOSPC) by a write that needs a new chunk when the
// store has none left. The write fails whole for that chunk: nothing is
// lost silently, and the OS's file system reports an I/O error.
var ErrFull = errors.New("overlay: full")

// ErrOutOfRange is returned for a read or write outside the golden disk.
var ErrOutOfRange = errors.New("overlay: range outside the disk")

// store keeps the copied chunks. Slots are numbered from 0; a slot
// committed to a chunk is never freed, one whose data or map write failed
// is released for reuse, so transient errors do not use up the store.
type store interface {
	// alloc returns a free slot, or an error wrapping ErrFull.
	alloc() (uint32, error)
	// release returns a slot alloc handed out whose data write failed.
	release(slot uint32)
	// readSlot and writeSlot move p at byte off of slot.
	readSlot(p []byte, slot uint32, off int) error
	writeSlot(p []byte, slot uint32, off int) error
	// commit records that chunk now lives in slot, after its data was
	// written. When it fails, the slot is the store's again (reused once
	// no map on the store can name it).
	commit(chunk uint64, slot uint32) error
	flush() error
	// capacity is the number of slots the store can hold.
	capacity() uint64
	describe() string
}

// Options configures a Device.
type Options struct {
	// Logger receives the usage warnings and the first refusals of a full
	// store (Warn and Error); nil discards.
	Logger *slog.Logger
	// WarnAt are the usage percentages (of the store's capacity) at which
	// a warning is logged once each; nil means DefaultWarnAt.
	WarnAt []int
}

// DefaultWarnAt are the usage thresholds warned about by default.
var DefaultWarnAt = []int{75, 90}

// tablePage is the number of chunk entries in one page of the in-memory
// chunk table; pages are allocated on the first write into their range,
// so a large golden disk with few writes costs little memory.
const tablePage = 1024

// Device is the copy-on-write view of a golden disk. It is safe for
// concurrent use; writes to one chunk are serialized, and a chunk's table
// entry is published only after its data is in the store.
type Device struct {
	base  blockdev.Device
	st    store
	chunk int64
	size  int64
	log   *slog.Logger

	mu    sync.RWMutex
	table [][]uint32 // chunk -> slot+1; 0 = still on the golden disk
	used  uint64

	locks [64]sync.Mutex // COW of chunk c under locks[c%64]

	warnMu   sync.Mutex
	warnAt   []int
	warned   int // thresholds passed
	refusals uint64
}

var _ blockdev.Device = (*Device)(nil)

func newDevice(base blockdev.Device, st store, chunk int64, o Options) (*Device, error) {
	if chunk <= 0 || chunk&(chunk-1) != 0 || chunk < int64(base.BlockSize()) {
		return nil, fmt.Errorf("overlay: chunk size %d: want a power of two of at least the golden disk's block size %d", chunk, base.BlockSize())
	}
	if base.Size() <= 0 {
		return nil, fmt.Errorf("overlay: golden disk size %d", base.Size())
	}
	n := (base.Size() + chunk - 1) / chunk
	if n > 1<<32-2 {
		return nil, fmt.Errorf("overlay: golden disk of %d bytes has more than 2^32-2 chunks of %d bytes", base.Size(), chunk)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	warnAt := o.WarnAt
	if warnAt == nil {
		warnAt = DefaultWarnAt
	}
	return &Device{base: base, st: st, chunk: chunk, size: base.Size(), log: log,
		table: make([][]uint32, (n+tablePage-1)/tablePage), warnAt: warnAt}, nil
}

// chunks is the number of chunks of the golden disk.
func (d *Device) chunks() uint64 { return uint64((d.size + d.chunk - 1) / d.chunk) }

func (d *Device) lookup(c uint64) (uint32, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	pg := d.table[c/tablePage]
	if pg == nil || pg[c%tablePage] == 0 {
		return 0, false
	}
	return pg[c%tablePage] - 1, true
}

func (d *Device) set(c uint64, slot uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pg := d.table[c/tablePage]
	if pg == nil {
		pg = make([]uint32, tablePage)
		d.table[c/tablePage] = pg
	}
	if pg[c%tablePage] == 0 {
		d.used++
	}
	pg[c%tablePage] = slot + 1
}

// Size is the golden disk's size.
func (d *Device) Size() int64 { return d.size }

// BlockSize is the golden disk's block size.
func (d *Device) BlockSize() int { return d.base.BlockSize() }

// ChunkSize is the unit of copy-on-write in bytes.
func (d *Device) ChunkSize() int64 { return d.chunk }

// Usage returns the chunks copied so far and the store's capacity in chunks.
func (d *Device) Usage() (used, capacity uint64) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.used, d.st.capacity()
}

// String describes the store ("RAM overlay of 512 MiB, 4 KiB chunks").
func (d *Device) String() string { return d.st.describe() }

func (d *Device) check(n int, off int64) error {
	if off < 0 || off > d.size || int64(n) > d.size-off {
		return fmt.Errorf("%w: %d bytes at %d of %d", ErrOutOfRange, n, off, d.size)
	}
	return nil
}

// ReadAt reads copied chunks from the store and the rest from the golden
// disk, one golden read for each run of chunks not copied.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check(len(p), off); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		c := uint64(pos / d.chunk)
		within := pos % d.chunk
		n := int(min(int64(len(p)-done), d.chunk-within))
		if slot, ok := d.lookup(c); ok {
			if err := d.st.readSlot(p[done:done+n], slot, int(within)); err != nil {
				return done, fmt.Errorf("overlay: read chunk %d from %s: %w", c, d.st.describe(), err)
			}
			done += n
			continue
		}
		// Extend over following chunks still on the golden disk.
		for done+n < len(p) {
			if _, ok := d.lookup(c + uint64((within+int64(n))/d.chunk)); ok {
				break
			}
			n = min(len(p)-done, n+int(d.chunk))
		}
		if m, err := d.base.ReadAt(p[done:done+n], pos); err != nil {
			return done + m, fmt.Errorf("overlay: read the golden disk at %d: %w", pos, err)
		}
		done += n
	}
	return done, nil
}

// WriteAt writes into the store, copying each chunk it touches for the
// first time. The golden disk is only read.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check(len(p), off); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		c := uint64(pos / d.chunk)
		within := pos % d.chunk
		n := int(min(int64(len(p)-done), d.chunk-within))
		if err := d.writeChunk(c, p[done:done+n], int(within)); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (d *Device) writeChunk(c uint64, p []byte, within int) error {
	l := &d.locks[c%uint64(len(d.locks))]
	l.Lock()
	defer l.Unlock()
	if slot, ok := d.lookup(c); ok {
		if err := d.st.writeSlot(p, slot, within); err != nil {
			return fmt.Errorf("overlay: write chunk %d to %s: %w", c, d.st.describe(), err)
		}
		return nil
	}
	start := int64(c) * d.chunk
	clen := int(min(d.chunk, d.size-start))
	buf := p
	if within != 0 || len(p) != clen {
		buf = make([]byte, clen)
		if _, err := d.base.ReadAt(buf, start); err != nil {
			return fmt.Errorf("overlay: copy chunk %d from the golden disk: %w", c, err)
		}
		copy(buf[within:], p)
	}
	slot, err := d.st.alloc()
	if err != nil {
		d.refused(c, err)
		return err
	}
	if err := d.st.writeSlot(buf, slot, 0); err != nil {
		d.st.release(slot)
		return fmt.Errorf("overlay: write chunk %d to %s: %w", c, d.st.describe(), err)
	}
	if err := d.st.commit(c, slot); err != nil {
		return fmt.Errorf("overlay: record chunk %d in %s: %w", c, d.st.describe(), err)
	}
	d.set(c, slot)
	d.noteUsage()
	return nil
}

// refused logs a full store: the first refusal and then every 1000th, so
// the console is told without being flooded.
func (d *Device) refused(c uint64, err error) {
	d.warnMu.Lock()
	d.refusals++
	n := d.refusals
	d.warnMu.Unlock()
	if n == 1 || n%1000 == 0 {
		d.log.Error("overlay full: writes to blocks not yet copied fail with an I/O error (ENOSPC) until reboot",
			"overlay", d.st.describe(), "refused", n, "chunk", c, "err", err)
	}
}

func (d *Device) noteUsage() {
	used, capacity := d.Usage()
	if capacity == 0 {
		return
	}
	pct := int(used * 100 / capacity)
	d.warnMu.Lock()
	var passed []int
	for d.warned < len(d.warnAt) && pct >= d.warnAt[d.warned] {
		passed = append(passed, d.warnAt[d.warned])
		d.warned++
	}
	d.warnMu.Unlock()
	for _, t := range passed {
		d.log.Warn(fmt.Sprintf("overlay %d%% full: when it is full, writes to blocks not yet copied fail with an I/O error", t),
			"overlay", d.st.describe(), "used", formatBytes(int64(used)*d.chunk), "capacity", formatBytes(int64(capacity)*d.chunk))
	}
}

// Flush makes the store's writes durable (a no-op for RAM).
func (d *Device) Flush() error {
	if err := d.st.flush(); err != nil {
		return fmt.Errorf("overlay: flush %s: %w", d.st.describe(), err)
	}
	return nil
}

// fullError wraps ErrFull and ENOSPC with what is full.
func fullError(what string) error {
	return fmt.Errorf("%w: %s has no free chunk left (%w)", ErrFull, what, syscall.ENOSPC)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
