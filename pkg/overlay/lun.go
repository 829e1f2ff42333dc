package overlay

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/lunboot/lunboot/pkg/blockdev"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Refusals of OpenLUN that callers and pkg/advice branch on.
var (
	// ErrGoldenChanged: the golden LUN is not the one the overlay was made
	// against (another identity, size or fingerprint). Its writes would
	// land on a different image and corrupt it.
	ErrGoldenChanged = errors.New("overlay: the golden LUN changed since the overlay was made")
	// ErrTooSmall: the overlay LUN cannot hold every chunk of the golden
	// LUN.
	ErrTooSmall = errors.New("overlay: the overlay LUN is smaller than it must be")
	// ErrOtherClient: the overlay was made by another initiator.
	ErrOtherClient = errors.New("overlay: the overlay LUN belongs to another client")
)

// fingerprintBytes is how much of the golden LUN Header.Fingerprint covers.
const fingerprintBytes = 1 << 20

// Golden is what OpenLUN checks the overlay LUN against: the golden disk
// (read-only) and its identity.
type Golden struct {
	Disk     blockdev.Device
	Identity scsi.Identity
	// Initiator is this client's initiator name.
	Initiator string
}

// Fingerprint is the SHA-256 of the first MiB of the golden disk.
func Fingerprint(d blockdev.Device) ([32]byte, error) {
	b := make([]byte, min(d.Size(), fingerprintBytes))
	if _, err := d.ReadAt(b, 0); err != nil {
		return [32]byte{}, fmt.Errorf("overlay: read the golden LUN's first MiB: %w", err)
	}
	return sha256.Sum256(b), nil
}

// OpenLUN returns the copy-on-write view of g.Disk whose writes go to the
// overlay LUN ov. A blank ov (first 4096 bytes zero) is formatted for g;
// otherwise its header must name g (identity, size, fingerprint) and
// this client, and ov must be large enough: each mismatch is refused with
// an error wrapping ErrGoldenChanged, ErrTooSmall, ErrOtherClient or
// ErrNotOverlay. formatted reports a fresh overlay.
func OpenLUN(g Golden, ov blockdev.Device, o Options) (dev *Device, formatted bool, err error) {
	h, formatted, err := inspect(g, ov)
	if err != nil {
		return nil, false, err
	}
	ls := &lunStore{dev: ov, h: h, chunk: int64(h.ChunkSize), data: int64(h.DataOffset()), mapBuf: make([]byte, h.MapEntries()*4)}
	if formatted {
		// The map first, the header last: a header on the LUN always
		// has a zeroed or valid map behind it.
		if _, err := ov.WriteAt(make([]byte, h.DataOffset()-HeaderSize), HeaderSize); err != nil {
			return nil, false, fmt.Errorf("overlay: clear the overlay LUN's map: %w", err)
		}
		b, err := h.MarshalBinary()
		if err != nil {
			return nil, false, err
		}
		if err := ov.Flush(); err != nil {
			return nil, false, fmt.Errorf("overlay: flush the overlay LUN's map: %w", err)
		}
		if _, err := ov.WriteAt(b, 0); err != nil {
			return nil, false, fmt.Errorf("overlay: write the overlay LUN's header: %w", err)
		}
		if err := ov.Flush(); err != nil {
			return nil, false, fmt.Errorf("overlay: flush the overlay LUN's header: %w", err)
		}
	} else if _, err := ov.ReadAt(ls.mapBuf, HeaderSize); err != nil {
		return nil, false, fmt.Errorf("overlay: read the overlay LUN's map: %w", err)
	}
	if o.WarnAt == nil {
		o.WarnAt = []int{} // it holds every chunk: nothing to warn about
	}
	d, err := newDevice(g.Disk, ls, ls.chunk, o)
	if err != nil {
		return nil, false, err
	}
	n := h.MapEntries()
	named := make([]bool, n)
	for c := uint64(0); c < n; c++ {
		v := binary.BigEndian.Uint32(ls.mapBuf[c*4:])
		if v == 0 {
			continue
		}
		if uint64(v-1) >= n {
			return nil, false, fmt.Errorf("overlay: the map's entry for chunk %d names slot %d of %d: the map is damaged", c, v-1, n)
		}
		if named[v-1] {
			return nil, false, fmt.Errorf("overlay: the map names slot %d for two chunks (one is %d): the map is damaged", v-1, c)
		}
		named[v-1] = true
		d.set(c, v-1)
		ls.next = max(ls.next, uint64(v))
	}
	// Slots below next that no entry names were released (a failed
	// write) or never committed: reuse them.
	for s := ls.next; s > 0; s-- {
		if !named[s-1] {
			ls.free = append(ls.free, uint32(s-1))
		}
	}
	return d, formatted, nil
}

// Check is OpenLUN's verdict without opening: nil for a blank overlay
// LUN large enough for g or one made for g by this client, else the
// refusal OpenLUN would return. It only reads.
func Check(g Golden, ov blockdev.Device) error {
	_, _, err := inspect(g, ov)
	return err
}

// inspect reads ov's header and checks it against g: the header to use
// (made from g when ov is blank) and whether ov is blank.
func inspect(g Golden, ov blockdev.Device) (Header, bool, error) {
	if ov.BlockSize() > HeaderSize {
		return Header{}, false, fmt.Errorf("overlay: the overlay LUN's block size %d is above %d", ov.BlockSize(), HeaderSize)
	}
	fp, err := Fingerprint(g.Disk)
	if err != nil {
		return Header{}, false, err
	}
	want := Header{ChunkSize: LUNChunk, GoldenSize: uint64(g.Disk.Size()), GoldenBlockSize: uint32(g.Disk.BlockSize()),
		Fingerprint: fp, Initiator: g.Initiator, Identity: g.Identity}
	if want.ChunkSize < want.GoldenBlockSize {
		want.ChunkSize = want.GoldenBlockSize
	}
	tooSmall := func(h *Header) error {
		return fmt.Errorf("%w: %d bytes, need %d (the golden LUN's %d bytes plus %d for header and map)",
			ErrTooSmall, ov.Size(), h.RequiredSize(), h.GoldenSize, h.DataOffset())
	}
	if ov.Size() < HeaderSize {
		return Header{}, false, tooSmall(&want)
	}
	blk := make([]byte, HeaderSize)
	if _, err := ov.ReadAt(blk, 0); err != nil {
		return Header{}, false, fmt.Errorf("overlay: read the overlay LUN's header: %w", err)
	}
	var h Header
	blank := bytes.Equal(blk, make([]byte, HeaderSize))
	if blank {
		if err := want.validate(); err != nil {
			return Header{}, false, fmt.Errorf("overlay: %w", err)
		}
		h = want
	} else if err := h.UnmarshalBinary(blk); err != nil {
		return Header{}, false, err
	} else if err := Compare(&h, &want); err != nil {
		return Header{}, false, err
	}
	if uint64(ov.Size()) < h.RequiredSize() {
		return Header{}, false, tooSmall(&h)
	}
	return h, blank, nil
}

// Compare checks that an overlay's header have matches the golden LUN and
// client described by want.
func Compare(have, want *Header) error {
	switch {
	case !have.Identity.Same(want.Identity):
		return fmt.Errorf("%w: it was made against the LUN %s, this one is %s", ErrGoldenChanged, have.Identity, want.Identity)
	case have.GoldenSize != want.GoldenSize || have.GoldenBlockSize != want.GoldenBlockSize:
		return fmt.Errorf("%w: it was made against %d bytes in %d-byte blocks, the LUN now has %d bytes in %d-byte blocks",
			ErrGoldenChanged, have.GoldenSize, have.GoldenBlockSize, want.GoldenSize, want.GoldenBlockSize)
	case have.Fingerprint != want.Fingerprint:
		return fmt.Errorf("%w: its first MiB (partition table, boot area) differs from when the overlay was made (SHA-256 %x…, now %x…)",
			ErrGoldenChanged, have.Fingerprint[:6], want.Fingerprint[:6])
	case have.Initiator != want.Initiator:
		return fmt.Errorf("%w: made by %s, this client is %s", ErrOtherClient, have.Initiator, want.Initiator)
	}
	return nil
}

// lunStore keeps chunks on the overlay LUN; every slot it can hand out
// fits (OpenLUN checked RequiredSize), and a slot whose write failed is
// reused, so it never fills up.
type lunStore struct {
	dev   blockdev.Device
	h     Header
	chunk int64
	data  int64

	mu     sync.Mutex // guards mapBuf, next, free, unsafe and each map block's write
	mapBuf []byte
	next   uint64
	free   []uint32 // released slots and slots below next no entry names
	// unsafe are slots whose map write failed and whose old entry could
	// not be written back, with the offset of their map block: the LUN's
	// map may still name them, so they are reused only after the next
	// successful write of that block (which carries the old entry).
	unsafe map[uint32]int64
}

func (l *lunStore) alloc() (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n > 0 {
		s := l.free[n-1]
		l.free = l.free[:n-1]
		return s, nil
	}
	if l.next >= l.h.MapEntries() {
		return 0, fullError(l.describe())
	}
	l.next++
	return uint32(l.next - 1), nil
}

func (l *lunStore) readSlot(p []byte, slot uint32, off int) error {
	_, err := l.dev.ReadAt(p, l.data+int64(slot)*l.chunk+int64(off))
	return err
}

func (l *lunStore) writeSlot(p []byte, slot uint32, off int) error {
	_, err := l.dev.WriteAt(p, l.data+int64(slot)*l.chunk+int64(off))
	return err
}

// commit writes the map's block holding chunk's entry, after flushing
// the overlay LUN so that the chunk's data (written just before) is on
// stable storage first. Without that flush a write-back target may
// persist the map block before the data, and after a power loss the map
// would name a slot holding zeros: the golden copy of the sectors of the
// chunk the OS never wrote would read back as zeros, although the OS
// never wrote them. The entry itself reaches stable storage at the OS's
// next flush (until then a crash loses the new chunk, as it would lose an
// unflushed write to a plain disk, and the golden copy shows through).
func (l *lunStore) commit(chunk uint64, slot uint32) error {
	if err := l.dev.Flush(); err != nil {
		l.release(slot)
		return fmt.Errorf("flush the chunk's data before its map entry: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writeEntry(chunk, slot+1); err != nil {
		// The block's write failed, perhaps half done: mapBuf has the old
		// entry back (a later commit in the block must not persist the
		// failed one); write it back so the slot can be reused.
		if l.writeEntry(chunk, binary.BigEndian.Uint32(l.mapBuf[chunk*4:])) != nil {
			if l.unsafe == nil {
				l.unsafe = map[uint32]int64{}
			}
			l.unsafe[slot] = l.mapBlock(chunk)
		} else {
			l.free = append(l.free, slot)
		}
		return err
	}
	return nil
}

// writeEntry sets chunk's map entry to v and writes its map block; when
// the write fails the entry's old value is restored in mapBuf. l.mu is
// held.
func (l *lunStore) writeEntry(chunk uint64, v uint32) error {
	old := binary.BigEndian.Uint32(l.mapBuf[chunk*4:])
	binary.BigEndian.PutUint32(l.mapBuf[chunk*4:], v)
	start := l.mapBlock(chunk)
	end := min(start+int64(max(l.dev.BlockSize(), 512)), int64(len(l.mapBuf)))
	if _, err := l.dev.WriteAt(l.mapBuf[start:end], HeaderSize+start); err != nil {
		binary.BigEndian.PutUint32(l.mapBuf[chunk*4:], old)
		return err
	}
	for s, b := range l.unsafe {
		if b == start {
			l.free = append(l.free, s)
			delete(l.unsafe, s)
		}
	}
	return nil
}

// mapBlock is the offset in mapBuf of the block holding chunk's entry.
func (l *lunStore) mapBlock(chunk uint64) int64 {
	bs := int64(max(l.dev.BlockSize(), 512))
	return int64(chunk*4) / bs * bs
}

func (l *lunStore) release(slot uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free = append(l.free, slot)
}

func (l *lunStore) flush() error     { return l.dev.Flush() }
func (l *lunStore) capacity() uint64 { return l.h.MapEntries() }
func (l *lunStore) describe() string {
	return fmt.Sprintf("overlay LUN (%s chunks)", formatBytes(l.chunk))
}
