package overlay

import (
	"fmt"
	"sync"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

// RAMChunk is the chunk size of a RAM overlay: the page size, which is
// what file systems write, so a scattered 4 KiB write costs 4 KiB.
const RAMChunk = 4096

// slabBytes is the allocation unit of the RAM store: chunks are carved
// from 1 MiB slabs, so the Go heap holds few large objects.
const slabBytes = 1 << 20

// NewRAM returns the copy-on-write view of base (opened read-only by the
// caller) whose writes are kept in up to limit bytes of memory. A write
// needing a chunk beyond limit fails with an error wrapping ErrFull.
func NewRAM(base blockdev.Device, limit int64, o Options) (*Device, error) {
	if limit < RAMChunk {
		return nil, fmt.Errorf("overlay: RAM size %d: want at least %d bytes", limit, RAMChunk)
	}
	chunk := int64(max(RAMChunk, base.BlockSize()))
	r := &ramStore{chunk: int(chunk), perSlab: max(1, slabBytes/int(chunk)), max: uint64(limit / chunk), limit: limit}
	return newDevice(base, r, chunk, o)
}

type ramStore struct {
	chunk   int
	perSlab int
	max     uint64
	limit   int64

	mu    sync.RWMutex
	slabs [][]byte
	next  uint64
	free  []uint32 // released slots, reused first
}

func (r *ramStore) alloc() (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.free); n > 0 {
		s := r.free[n-1]
		r.free = r.free[:n-1]
		return s, nil
	}
	if r.next >= r.max {
		return 0, fullError(r.describe())
	}
	s := r.next
	if int(s)/r.perSlab >= len(r.slabs) {
		n := min(uint64(r.perSlab), r.max-uint64(len(r.slabs)*r.perSlab))
		r.slabs = append(r.slabs, make([]byte, int(n)*r.chunk))
	}
	r.next++
	return uint32(s), nil
}

func (r *ramStore) release(slot uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.free = append(r.free, slot)
}

func (r *ramStore) at(slot uint32, off, n int) []byte {
	r.mu.RLock()
	slab := r.slabs[int(slot)/r.perSlab]
	r.mu.RUnlock()
	b := (int(slot) % r.perSlab) * r.chunk
	return slab[b+off : b+off+n]
}

func (r *ramStore) readSlot(p []byte, slot uint32, off int) error {
	copy(p, r.at(slot, off, len(p)))
	return nil
}

func (r *ramStore) writeSlot(p []byte, slot uint32, off int) error {
	copy(r.at(slot, off, len(p)), p)
	return nil
}

func (r *ramStore) commit(uint64, uint32) error { return nil }
func (r *ramStore) flush() error                { return nil }
func (r *ramStore) capacity() uint64            { return r.max }
func (r *ramStore) describe() string {
	return fmt.Sprintf("RAM overlay of %s (%s chunks)", formatBytes(r.limit), formatBytes(int64(r.chunk)))
}
