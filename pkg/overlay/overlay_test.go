package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lunboot/lunboot/pkg/blockdev"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// memDisk is an in-memory blockdev.Device that counts writes; readOnly
// makes every write fail, as a read-only scsi.Disk does.
type memDisk struct {
	mu       sync.Mutex
	b        []byte
	bs       int
	readOnly bool
	writes   int
	flushes  int
}

func newMem(size, bs int) *memDisk { return &memDisk{b: make([]byte, size), bs: bs} }

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("memDisk: read %d at %d of %d", len(p), off, len(m.b))
	}
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.readOnly {
		return 0, errors.New("memDisk: read-only")
	}
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("memDisk: write %d at %d of %d", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) Flush() error   { m.mu.Lock(); m.flushes++; m.mu.Unlock(); return nil }
func (m *memDisk) Size() int64    { return int64(len(m.b)) }
func (m *memDisk) BlockSize() int { return m.bs }

// golden returns a read-only disk of size bytes filled with a pattern.
func golden(size int) *memDisk {
	g := newMem(size, 512)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range g.b {
		g.b[i] = byte(r.Uint32())
	}
	g.readOnly = true
	return g
}

// exercise applies random reads and writes to d and to a reference copy
// of the golden disk and compares every read.
func exercise(t *testing.T, d *Device, ref []byte, seed uint64, ops int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	for i := 0; i < ops; i++ {
		n := 1 + r.IntN(3*int(d.ChunkSize()))
		if r.IntN(4) == 0 {
			n = 4096
		}
		off := r.Int64N(int64(len(ref)) - int64(n) + 1)
		if r.IntN(2) == 0 {
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(r.Uint32())
			}
			if _, err := d.WriteAt(p, off); err != nil {
				t.Fatalf("WriteAt(%d bytes, %d) = %v", n, off, err)
			}
			copy(ref[off:], p)
			continue
		}
		got := make([]byte, n)
		if _, err := d.ReadAt(got, off); err != nil {
			t.Fatalf("ReadAt(%d bytes, %d) = %v", n, off, err)
		}
		if !bytes.Equal(got, ref[off:off+int64(n)]) {
			t.Fatalf("op %d: ReadAt(%d bytes, %d) differs from the reference", i, n, off)
		}
	}
	all := make([]byte, len(ref))
	if _, err := d.ReadAt(all, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all, ref) {
		t.Fatal("the whole disk read back differs from the reference")
	}
}

func TestRAMReadsBackAndLeavesGoldenAlone(t *testing.T) {
	const size = 1<<20 + 3*512 // not a multiple of the chunk: a short last chunk
	g := golden(size)
	orig := bytes.Clone(g.b)
	d, err := NewRAM(g, 4<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref := bytes.Clone(orig)
	exercise(t, d, ref, 3, 3000)
	// The last, short chunk.
	if _, err := d.WriteAt([]byte("tail"), size-4); err != nil {
		t.Fatalf("write at the end: %v", err)
	}
	if g.writes != 0 || !bytes.Equal(g.b, orig) {
		t.Fatalf("the golden disk got %d writes", g.writes)
	}
	if _, err := d.WriteAt([]byte("x"), size); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("write past the end = %v, want ErrOutOfRange", err)
	}
	// A second client's overlay on the same golden disk sees none of it.
	d2, err := NewRAM(g, 4<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	d2.ReadAt(got, 0)
	if !bytes.Equal(got, orig) {
		t.Error("a second overlay of the same golden disk sees the first one's writes")
	}
}

func TestRAMConcurrent(t *testing.T) {
	g := golden(1 << 20)
	d, err := NewRAM(g, 2<<20, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Each goroutine owns a stripe of 512-byte sectors spread over chunks
	// shared with the others: concurrent copy-on-write of one chunk must
	// not lose a neighbour's write.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := w; s < (1<<20)/512; s += 8 {
				d.WriteAt(bytes.Repeat([]byte{byte(w + 1)}, 512), int64(s)*512)
			}
		}()
	}
	wg.Wait()
	got := make([]byte, 1<<20)
	d.ReadAt(got, 0)
	for s := 0; s < len(got)/512; s++ {
		if want := byte(s%8 + 1); got[s*512] != want || got[s*512+511] != want {
			t.Fatalf("sector %d = %d, want %d", s, got[s*512], want)
		}
	}
}

func TestRAMFullAndWarnings(t *testing.T) {
	g := golden(1 << 20)
	var log strings.Builder
	d, err := NewRAM(g, 10*RAMChunk, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 10; c++ {
		if _, err := d.WriteAt([]byte{1}, int64(c)*RAMChunk+5); err != nil {
			t.Fatalf("chunk %d: %v", c, err)
		}
	}
	if n := strings.Count(log.String(), "level=WARN"); n != 2 || !strings.Contains(log.String(), "overlay 75% full") || !strings.Contains(log.String(), "overlay 90% full") {
		t.Errorf("warnings after filling the overlay = %d:\n%s", n, log.String())
	}
	// A chunk already copied can still be written; a new one cannot.
	if _, err := d.WriteAt([]byte{2}, 3); err != nil {
		t.Errorf("rewriting a copied chunk of a full overlay: %v", err)
	}
	_, err = d.WriteAt([]byte{3}, 11*RAMChunk)
	if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write to a new chunk of a full overlay = %v, want ErrFull and ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "RAM overlay of 40 KiB") {
		t.Errorf("the error does not say what is full: %v", err)
	}
	if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "overlay full") {
		t.Errorf("no error logged for the refused write:\n%s", log.String())
	}
	b := make([]byte, 1)
	d.ReadAt(b, 11*RAMChunk)
	if b[0] != g.b[11*RAMChunk] {
		t.Error("the refused write changed what is read")
	}
	if used, capacity := d.Usage(); used != 10 || capacity != 10 {
		t.Errorf("Usage() = %d, %d; want 10, 10", used, capacity)
	}
}

func TestNewRAMRefuses(t *testing.T) {
	if _, err := NewRAM(golden(1<<16), 100, Options{}); err == nil {
		t.Error("NewRAM with 100 bytes: no error")
	}
}

// identity is a tgtd-like pair of designators.
func identity(serial string) scsi.Identity {
	return scsi.Identity{Designators: []scsi.Designator{
		{CodeSet: 1, Association: scsi.AssocLogicalUnit, Type: scsi.DesigNAA, Value: []byte{0x60, 0, 0x0e, 0x40, 0, 0, 0, 1}},
		{CodeSet: 2, Association: scsi.AssocLogicalUnit, Type: scsi.DesigT10VendorID, Value: []byte("IET     " + serial)},
	}}
}

const initiator = "iqn.2026-11.org.lunboot:525400000001"

func TestLUNKeepsWritesAcrossOpens(t *testing.T) {
	const size = 3<<20 + 512
	g := golden(size)
	orig := bytes.Clone(g.b)
	gold := Golden{Disk: g, Identity: identity("golden"), Initiator: initiator}
	h := Header{ChunkSize: LUNChunk, GoldenSize: size, GoldenBlockSize: 512}
	ov := newMem(int(h.RequiredSize()), 512)
	d, formatted, err := OpenLUN(gold, ov, Options{})
	if err != nil || !formatted {
		t.Fatalf("OpenLUN on a blank LUN = %v, formatted %v", err, formatted)
	}
	ref := bytes.Clone(orig)
	exercise(t, d, ref, 5, 400)
	if err := d.Flush(); err != nil || ov.flushes == 0 {
		t.Fatalf("Flush = %v, %d flushes of the overlay LUN", err, ov.flushes)
	}
	// The next boot.
	d2, formatted, err := OpenLUN(gold, ov, Options{})
	if err != nil || formatted {
		t.Fatalf("OpenLUN again = %v, formatted %v", err, formatted)
	}
	exercise(t, d2, ref, 6, 400)
	u1, _ := d.Usage()
	u2, _ := d2.Usage()
	if u2 < u1 {
		t.Errorf("chunks copied after reopening: %d, before %d", u2, u1)
	}
	if g.writes != 0 || !bytes.Equal(g.b, orig) {
		t.Fatalf("the golden disk got %d writes", g.writes)
	}
}

func TestLUNRefusals(t *testing.T) {
	const size = 1 << 20
	f := openLUN(t, size, newMem)
	g, gold, ov, d, h := f.golden, f.gold, f.ov, f.d, f.h
	d.WriteAt([]byte("client data"), 4096)
	if err := Check(gold, ov); err != nil {
		t.Errorf("Check of the client's own overlay = %v", err)
	}
	if err := Check(gold, newMem(int(h.RequiredSize()), 512)); err != nil {
		t.Errorf("Check of a blank overlay LUN = %v", err)
	}

	bigger := golden(size + 512)
	rewritten := golden(size)
	rewritten.b[446] ^= 0xff // the partition table
	for _, tc := range []struct {
		name string
		g    Golden
		ov   *memDisk
		want error
		says string
	}{
		{"another golden LUN", Golden{Disk: g, Identity: identity("other"), Initiator: initiator}, ov, ErrGoldenChanged, "made against the LUN"},
		{"golden resized", Golden{Disk: bigger, Identity: gold.Identity, Initiator: initiator}, ov, ErrGoldenChanged, "1048576 bytes"},
		{"golden rewritten in place", Golden{Disk: rewritten, Identity: gold.Identity, Initiator: initiator}, ov, ErrGoldenChanged, "first MiB"},
		{"another client", Golden{Disk: g, Identity: gold.Identity, Initiator: "iqn.2026-11.org.lunboot:other"}, ov, ErrOtherClient, "made by " + initiator},
		{"overlay LUN smaller", gold, &memDisk{b: bytes.Clone(ov.b[:len(ov.b)-512]), bs: 512}, ErrTooSmall, "need"},
		{"blank overlay LUN smaller than the golden LUN", gold, newMem(size, 512), ErrTooSmall, "plus"},
		{"overlay LUN of one block", gold, newMem(512, 512), ErrTooSmall, "need"},
		{"overlay LUN holding something else", gold, func() *memDisk { m := newMem(int(h.RequiredSize()), 512); copy(m.b, "\xebX\x90mkfs.fat"); return m }(), ErrNotOverlay, "not blank"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.ov.writes
			if err := Check(tc.g, tc.ov); !errors.Is(err, tc.want) {
				t.Errorf("Check = %v, want %v", err, tc.want)
			}
			_, _, err := OpenLUN(tc.g, tc.ov, Options{})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("OpenLUN = %v, want %v saying %q", err, tc.want, tc.says)
			}
			if tc.ov.writes != before {
				t.Errorf("a refused OpenLUN wrote %d times to the overlay LUN", tc.ov.writes-before)
			}
		})
	}
	// A damaged header is refused, not reformatted.
	ov.b[100] ^= 1
	if _, _, err := OpenLUN(gold, ov, Options{}); err == nil || !strings.Contains(err.Error(), "CRC-32C") {
		t.Errorf("OpenLUN with a damaged header = %v, want a CRC error", err)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{ChunkSize: LUNChunk, GoldenSize: 4 << 30, GoldenBlockSize: 512, Initiator: initiator, Identity: identity("golden")}
	h.Fingerprint[0] = 9
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Header
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := Compare(&got, &h); err != nil {
		t.Errorf("round trip: %v", err)
	}
	if got.DataOffset() != 4096+65536*4 || got.RequiredSize() != got.DataOffset()+4<<30 {
		t.Errorf("DataOffset, RequiredSize = %d, %d", got.DataOffset(), got.RequiredSize())
	}
	for _, bad := range []Header{
		{ChunkSize: 1000, GoldenSize: 4096, GoldenBlockSize: 512, Identity: identity("g")},
		{ChunkSize: 4096, GoldenSize: 4097, GoldenBlockSize: 512, Identity: identity("g")},
		{ChunkSize: 4096, GoldenSize: 4096, GoldenBlockSize: 512},
		{ChunkSize: 512, GoldenSize: 1 << 50, GoldenBlockSize: 512, Identity: identity("g")},
	} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v): no error", bad)
		}
	}
}

// FuzzHeader decodes arbitrary header blocks: no panic, and what decodes
// encodes back to the same block.
func FuzzHeader(f *testing.F) {
	h := Header{ChunkSize: LUNChunk, GoldenSize: 1 << 30, GoldenBlockSize: 4096, Initiator: initiator, Identity: identity("golden")}
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Add(make([]byte, HeaderSize))
	f.Add([]byte(headerMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, b)
		// The same bytes with a valid CRC, so the later checks run too.
		if len(b) >= len(headerMagic) {
			c := make([]byte, HeaderSize)
			copy(c, b)
			fixCRC(c)
			roundTrip(t, c)
		}
	})
}

func roundTrip(t *testing.T, b []byte) {
	var h Header
	if err := h.UnmarshalBinary(b); err != nil {
		return
	}
	out, err := h.MarshalBinary()
	if err != nil {
		t.Fatalf("a decoded header does not encode: %v", err)
	}
	var h2 Header
	if err := h2.UnmarshalBinary(out); err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	if err := Compare(&h2, &h); err != nil || h2.ChunkSize != h.ChunkSize {
		t.Fatalf("round trip differs: %v", err)
	}
}

// wbDisk is a write-back disk: writes are visible to reads at once but
// reach stable storage (durable) only at Flush, or at crash in any order
// the test picks, as a target's volatile cache may persist them.
type wbDisk struct {
	memDisk           // what reads see (the cache)
	durable []byte    // stable storage
	pending []wbWrite // written since the last flush
}

type wbWrite struct {
	off int64
	b   []byte
}

func newWB(size, bs int) *wbDisk {
	return &wbDisk{memDisk: memDisk{b: make([]byte, size), bs: bs}, durable: make([]byte, size)}
}

func (w *wbDisk) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.memDisk.WriteAt(p, off)
	if err == nil {
		w.pending = append(w.pending, wbWrite{off, bytes.Clone(p)})
	}
	return n, err
}

func (w *wbDisk) Flush() error {
	for _, p := range w.pending {
		copy(w.durable[p.off:], p.b)
	}
	w.pending = nil
	return w.memDisk.Flush()
}

// crash loses power: of the unflushed writes only those keep picks
// reached stable storage. It returns the disk as the next boot sees it.
func (w *wbDisk) crash(keep func(off int64) bool) *memDisk {
	for _, p := range w.pending {
		if keep(p.off) {
			copy(w.durable[p.off:], p.b)
		}
	}
	return &memDisk{b: bytes.Clone(w.durable), bs: w.bs}
}

// TestLUNCrashKeepsGoldenSectors: a write-back target that persists the
// map block of a new chunk but not its data before a power loss must not
// make the chunk's sectors the OS never wrote read back as zeros: the
// data is flushed before the map entry is written.
func TestLUNCrashKeepsGoldenSectors(t *testing.T) {
	const size = 1 << 20
	f := openLUN(t, size, newWB)
	g, gold, ov, d := f.golden, f.gold, f.ov, f.d
	// One sector into chunk 3, never flushed by the OS.
	if _, err := d.WriteAt(bytes.Repeat([]byte{0xAA}, 512), 3*LUNChunk+512); err != nil {
		t.Fatal(err)
	}
	// The worst order: the map blocks persisted, the data lost.
	after := ov.crash(func(off int64) bool { return off < f.data })
	d2, _, err := OpenLUN(gold, after, Options{})
	if err != nil {
		t.Fatalf("OpenLUN after the crash: %v", err)
	}
	got := make([]byte, LUNChunk)
	if _, err := d2.ReadAt(got, 3*LUNChunk); err != nil {
		t.Fatal(err)
	}
	want := g.b[3*LUNChunk : 4*LUNChunk]
	if !bytes.Equal(got[:512], want[:512]) || !bytes.Equal(got[1024:], want[1024:]) {
		t.Fatalf("after a crash, the sectors of chunk 3 the OS never wrote differ from the golden disk (first bytes %x, want %x)", got[:8], want[:8])
	}
	if s := got[512:1024]; !bytes.Equal(s, want[512:1024]) && !bytes.Equal(s, bytes.Repeat([]byte{0xAA}, 512)) {
		t.Fatalf("after a crash, the unflushed sector is neither the old nor the new data: %x", s[:8])
	}
}

// flakyDisk is a memDisk whose writes fail while fail says so.
type flakyDisk struct {
	memDisk
	fail func(off int64) bool
}

func (f *flakyDisk) WriteAt(p []byte, off int64) (int, error) {
	if f.fail != nil && f.fail(off) {
		return 0, errors.New("flakyDisk: transient write error")
	}
	return f.memDisk.WriteAt(p, off)
}

// lunFixture is a golden disk of a given size and a LUN overlay opened on
// a blank overlay disk of type D sized for it (openLUN).
type lunFixture[D blockdev.Device] struct {
	golden *memDisk
	gold   Golden
	ov     D
	d      *Device
	h      Header // the overlay's layout
	data   int64  // the overlay disk's first data byte: below it, the header and map
}

func openLUN[D blockdev.Device](t *testing.T, size int, mk func(n, bs int) D) lunFixture[D] {
	t.Helper()
	g := golden(size)
	gold := Golden{Disk: g, Identity: identity("golden"), Initiator: initiator}
	h := Header{ChunkSize: LUNChunk, GoldenSize: uint64(size), GoldenBlockSize: 512}
	ov := mk(int(h.RequiredSize()), 512)
	d, _, err := OpenLUN(gold, ov, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return lunFixture[D]{golden: g, gold: gold, ov: ov, d: d, h: h, data: int64(h.DataOffset())}
}

func newFlaky(size, bs int) *flakyDisk { return &flakyDisk{memDisk: *newMem(size, bs)} }

// TestLUNFailedWritesKeepSlots: a failed data or map write releases its
// slot, so after transient errors every chunk of the golden disk can
// still be copied (the overlay LUN holds exactly one slot per chunk).
func TestLUNFailedWritesKeepSlots(t *testing.T) {
	const size = 1 << 20
	f := openLUN(t, size, newFlaky)
	g, gold, ov, d, data := f.golden, f.gold, f.ov, f.d, f.data
	for _, inData := range []bool{true, false, true} {
		ov.fail = func(off int64) bool { return (off >= data) == inData }
		if _, err := d.WriteAt([]byte{1}, 0); err == nil {
			t.Fatal("a write while the overlay LUN fails succeeded")
		}
	}
	ov.fail = nil
	ref := bytes.Clone(g.b)
	for c := int64(0); c < size/LUNChunk; c++ {
		p := bytes.Repeat([]byte{byte(c + 1)}, 100)
		if _, err := d.WriteAt(p, c*LUNChunk+7); err != nil {
			t.Fatalf("write to chunk %d after 3 failed writes: %v", c, err)
		}
		copy(ref[c*LUNChunk+7:], p)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d2, _, err := OpenLUN(gold, &ov.memDisk, Options{})
	if err != nil {
		t.Fatalf("OpenLUN again: %v", err)
	}
	got := make([]byte, size)
	if _, err := d2.ReadAt(got, 0); err != nil || !bytes.Equal(got, ref) {
		t.Fatalf("after reopening: %v, contents equal %v", err, bytes.Equal(got, ref))
	}
}

// TestLUNFailedMapWriteNotPersisted: a map write that fails must not
// leave its entry in memory, where the next commit in the same map block
// would persist it: the failed chunk must read the golden data after
// reopening.
func TestLUNFailedMapWriteNotPersisted(t *testing.T) {
	const size = 1 << 20
	f := openLUN(t, size, newFlaky)
	g, gold, ov, d, data := f.golden, f.gold, f.ov, f.d, f.data
	ov.fail = func(off int64) bool { return off < data }
	if _, err := d.WriteAt(bytes.Repeat([]byte{0xEE}, 512), 0); err == nil {
		t.Fatal("a write whose map write fails succeeded")
	}
	ov.fail = nil
	if _, err := d.WriteAt(bytes.Repeat([]byte{0x55}, 512), LUNChunk); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d2, _, err := OpenLUN(gold, &ov.memDisk, Options{})
	if err != nil {
		t.Fatalf("OpenLUN again: %v", err)
	}
	got := make([]byte, 2*LUNChunk)
	if _, err := d2.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:LUNChunk], g.b[:LUNChunk]) {
		t.Fatalf("chunk 0, whose write failed, reads %x…, want the golden %x…", got[:8], g.b[:8])
	}
	if !bytes.Equal(got[LUNChunk:LUNChunk+512], bytes.Repeat([]byte{0x55}, 512)) {
		t.Fatalf("chunk 1 lost its write: %x…", got[LUNChunk:LUNChunk+8])
	}
}
