package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/lunboot/lunboot/pkg/scsi"
)

// The per-client overlay LUN's layout (all integers big-endian, as SCSI's):
//
//	[0, 4096)              header (Header), CRC-32C in its last 4 bytes
//	[4096, DataOffset)     the chunk map: one uint32 per golden chunk,
//	                       0 = not copied, s+1 = copied into slot s
//	[DataOffset, …)        slot s at DataOffset + s*ChunkSize
//
// A LUN whose first 4096 bytes are zero is blank and is formatted on
// first use; anything else without the magic is refused, never
// overwritten.
const (
	HeaderSize   = 4096
	headerMagic  = "LUNBOVL\x00"
	headerV1     = 1
	maxInitiator = 223 // RFC 7143 §4.2.7.1: iSCSI names up to 223 bytes
	// LUNChunk is the chunk size of an overlay LUN: 64 KiB keeps the map
	// at 64 KiB per GiB of golden disk.
	LUNChunk = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNotOverlay means the LUN's first block is neither blank nor an
// overlay header: it holds something else, which lunboot will not
// overwrite.
var ErrNotOverlay = errors.New("overlay: the LUN is not blank and holds no lunboot overlay header")

// Header binds an overlay LUN to the golden LUN it was made against.
type Header struct {
	// ChunkSize is the unit of copy-on-write, a power of two.
	ChunkSize uint32
	// GoldenSize and GoldenBlockSize are the golden LUN's capacity and
	// logical block size when the overlay was made.
	GoldenSize      uint64
	GoldenBlockSize uint32
	// Fingerprint is the SHA-256 of the golden LUN's first MiB (or all
	// of it when smaller): its partition table and boot area, which an
	// image rewritten in place under the same LUN identity changes.
	Fingerprint [32]byte
	// Initiator is the iSCSI initiator name of the client that made the
	// overlay: a second client given the same overlay LUN is refused.
	Initiator string
	// Identity is the golden LUN's logical-unit designators (VPD page
	// 0x83, SPC-4 §7.8.6).
	Identity scsi.Identity
}

// MapEntries is the number of chunks of the golden LUN.
func (h *Header) MapEntries() uint64 {
	return (h.GoldenSize + uint64(h.ChunkSize) - 1) / uint64(h.ChunkSize)
}

// DataOffset is where slot 0 starts: after the header and the map, on a
// 4096-byte boundary.
func (h *Header) DataOffset() uint64 {
	return HeaderSize + (h.MapEntries()*4+HeaderSize-1)/HeaderSize*HeaderSize
}

// RequiredSize is the smallest overlay LUN that holds every chunk of the
// golden LUN, so that a persistent overlay can never fill up.
func (h *Header) RequiredSize() uint64 {
	return h.DataOffset() + h.MapEntries()*uint64(h.ChunkSize)
}

func (h *Header) validate() error {
	switch {
	case h.ChunkSize < 512 || h.ChunkSize > 16<<20 || h.ChunkSize&(h.ChunkSize-1) != 0:
		return fmt.Errorf("chunk size %d is not a power of two from 512 to 16 MiB", h.ChunkSize)
	case h.GoldenBlockSize < 512 || h.GoldenBlockSize > h.ChunkSize || h.GoldenBlockSize&(h.GoldenBlockSize-1) != 0:
		return fmt.Errorf("golden block size %d is not a power of two from 512 to the chunk size", h.GoldenBlockSize)
	case h.GoldenSize == 0 || h.GoldenSize%uint64(h.GoldenBlockSize) != 0 || h.GoldenSize > 1<<60:
		return fmt.Errorf("golden size %d is not a positive multiple of its block size below 2^60", h.GoldenSize)
	case h.MapEntries() > 1<<32-2:
		return fmt.Errorf("golden size %d needs more than 2^32-2 chunks", h.GoldenSize)
	case len(h.Initiator) > maxInitiator:
		return fmt.Errorf("initiator name of %d bytes (at most %d)", len(h.Initiator), maxInitiator)
	case len(h.Identity.Designators) == 0 || len(h.Identity.Designators) > 255:
		return fmt.Errorf("%d golden LUN designators (want 1 to 255)", len(h.Identity.Designators))
	}
	return nil
}

// Header field offsets.
const (
	offVersion   = 8
	offChunk     = 12
	offGolden    = 16
	offGoldenBS  = 24
	offFinger    = 32
	offInitLen   = 64
	offInit      = 65
	offIdentity  = offInit + maxInitiator // count, then type, code set, length, value
	offCRC       = HeaderSize - 4
	maxDesigSize = 255
)

// MarshalBinary encodes h into one HeaderSize block.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("overlay header: %w", err)
	}
	b := make([]byte, HeaderSize)
	copy(b, headerMagic)
	binary.BigEndian.PutUint16(b[offVersion:], headerV1)
	binary.BigEndian.PutUint32(b[offChunk:], h.ChunkSize)
	binary.BigEndian.PutUint64(b[offGolden:], h.GoldenSize)
	binary.BigEndian.PutUint32(b[offGoldenBS:], h.GoldenBlockSize)
	copy(b[offFinger:], h.Fingerprint[:])
	b[offInitLen] = byte(len(h.Initiator))
	copy(b[offInit:], h.Initiator)
	p := offIdentity
	b[p] = byte(len(h.Identity.Designators))
	p++
	for _, d := range h.Identity.Designators {
		if len(d.Value) > maxDesigSize {
			return nil, fmt.Errorf("overlay header: a designator of %d bytes", len(d.Value))
		}
		if p+3+len(d.Value) > offCRC {
			return nil, errors.New("overlay header: the golden LUN's designators do not fit")
		}
		b[p], b[p+1], b[p+2] = byte(d.Type), d.CodeSet, byte(len(d.Value))
		copy(b[p+3:], d.Value)
		p += 3 + len(d.Value)
	}
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[:offCRC], castagnoli))
	return b, nil
}

// UnmarshalBinary decodes a header block. It returns ErrNotOverlay
// (wrapped) when b has no overlay magic.
func (h *Header) UnmarshalBinary(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("overlay header: %d bytes, want %d", len(b), HeaderSize)
	}
	if !bytes.Equal(b[:len(headerMagic)], []byte(headerMagic)) {
		return fmt.Errorf("%w (first bytes %q)", ErrNotOverlay, b[:len(headerMagic)])
	}
	if got, want := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[:offCRC], castagnoli); got != want {
		return fmt.Errorf("overlay header: CRC-32C %#08x, computed %#08x: the header is damaged", got, want)
	}
	if v := binary.BigEndian.Uint16(b[offVersion:]); v != headerV1 {
		return fmt.Errorf("overlay header: version %d, this lunboot reads version %d", v, headerV1)
	}
	var n Header
	n.ChunkSize = binary.BigEndian.Uint32(b[offChunk:])
	n.GoldenSize = binary.BigEndian.Uint64(b[offGolden:])
	n.GoldenBlockSize = binary.BigEndian.Uint32(b[offGoldenBS:])
	copy(n.Fingerprint[:], b[offFinger:])
	il := int(b[offInitLen])
	if il > maxInitiator {
		return fmt.Errorf("overlay header: initiator name length %d (at most %d)", il, maxInitiator)
	}
	n.Initiator = string(b[offInit : offInit+il])
	p := offIdentity
	count := int(b[p])
	p++
	for i := 0; i < count; i++ {
		if p+3 > offCRC || p+3+int(b[p+2]) > offCRC {
			return fmt.Errorf("overlay header: golden LUN designator %d runs past the header", i)
		}
		l := int(b[p+2])
		n.Identity.Designators = append(n.Identity.Designators, scsi.Designator{
			Type: scsi.DesignatorType(b[p]), CodeSet: b[p+1], Association: scsi.AssocLogicalUnit,
			Value: append([]byte(nil), b[p+3:p+3+l]...),
		})
		p += 3 + l
	}
	if err := n.validate(); err != nil {
		return fmt.Errorf("overlay header: %w", err)
	}
	*h = n
	return nil
}
