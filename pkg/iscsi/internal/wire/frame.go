package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// castagnoli is the CRC32C table (RFC 7143 §13.1, RFC 3720 appendix B.4);
// hash/crc32 uses the SSE4.2/ARMv8 instructions for it where present.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the CRC32C of p as iSCSI digests define it.
func CRC32C(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// UpdateCRC32C continues a CRC32C over more bytes: UpdateCRC32C(CRC32C(a),
// b) == CRC32C(a‖b).
func UpdateCRC32C(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// Pad returns how many zero bytes follow a data segment of n bytes to reach
// a 4-byte boundary (RFC 7143 §11.1).
func Pad(n int) int { return -n & 3 }

var zeros [4]byte

// DataDigest returns the digest of a data segment: CRC32C over the data and
// its padding (RFC 7143 §11.2.3).
func DataDigest(data []byte) uint32 {
	return UpdateCRC32C(CRC32C(data), zeros[:Pad(len(data))])
}

// HeaderDigest returns the digest of a BHS followed by its AHS.
func HeaderDigest(h *BHS, ahs []byte) uint32 {
	return UpdateCRC32C(CRC32C(h[:]), ahs)
}

// PutDigest stores a digest as it travels: the CRC's little-endian bytes,
// so that 32 zero bytes give aa 36 91 8a (RFC 3720 B.4).
func PutDigest(b []byte, crc uint32) { binary.LittleEndian.PutUint32(b, crc) }

// GetDigest reads a digest stored by PutDigest.
func GetDigest(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// Framing errors. They mean the byte stream can no longer be trusted: the
// connection must be dropped.
var (
	ErrHeaderDigest = errors.New("header digest mismatch")
	ErrDataDigest   = errors.New("data digest mismatch")
	ErrDataTooLong  = errors.New("data segment longer than negotiated MaxRecvDataSegmentLength")
)

// Reader reads PDUs from a byte stream. The zero value is not usable: set R
// and MaxData.
type Reader struct {
	R            *bufio.Reader
	HeaderDigest bool
	DataDigest   bool
	// MaxData is the largest DataSegmentLength accepted; longer PDUs fail
	// with ErrDataTooLong before anything is allocated or read.
	MaxData int
	// AHS holds the additional header segments of the last header read.
	AHS []byte

	ahs     [255 * 4]byte
	trailer [8]byte
	discard [4096]byte
}

// ReadHeader reads the BHS, any AHS and the header digest into h.
func (r *Reader) ReadHeader(h *BHS) error {
	if _, err := io.ReadFull(r.R, h[:]); err != nil {
		return err
	}
	n := h.AHSLen()
	r.AHS = r.ahs[:n]
	if _, err := io.ReadFull(r.R, r.AHS); err != nil {
		return unexpectedEOF(err)
	}
	if r.HeaderDigest {
		if _, err := io.ReadFull(r.R, r.trailer[:4]); err != nil {
			return unexpectedEOF(err)
		}
		if got, want := GetDigest(r.trailer[:4]), HeaderDigest(h, r.AHS); got != want {
			return fmt.Errorf("%w on %v: got 0x%08x, computed 0x%08x", ErrHeaderDigest, h.Opcode(), got, want)
		}
	}
	if l := h.DataLen(); l > r.MaxData {
		return fmt.Errorf("%w: %v carries %d bytes, limit %d", ErrDataTooLong, h.Opcode(), l, r.MaxData)
	}
	return nil
}

// ReadData reads the data segment of h into dst, which must be exactly
// h.DataLen() bytes, then its padding and data digest.
func (r *Reader) ReadData(h *BHS, dst []byte) error {
	if len(dst) != h.DataLen() {
		return fmt.Errorf("wire: ReadData with %d-byte buffer for a %d-byte segment", len(dst), h.DataLen())
	}
	if _, err := io.ReadFull(r.R, dst); err != nil {
		return unexpectedEOF(err)
	}
	crc := uint32(0)
	if r.DataDigest {
		crc = CRC32C(dst)
	}
	return r.finishData(h, crc)
}

// DiscardData reads and drops the data segment of h, still checking its
// digest.
func (r *Reader) DiscardData(h *BHS) error {
	n := h.DataLen()
	crc := CRC32C(nil)
	for n > 0 {
		chunk := r.discard[:min(n, len(r.discard))]
		if _, err := io.ReadFull(r.R, chunk); err != nil {
			return unexpectedEOF(err)
		}
		if r.DataDigest {
			crc = UpdateCRC32C(crc, chunk)
		}
		n -= len(chunk)
	}
	return r.finishData(h, crc)
}

func (r *Reader) finishData(h *BHS, crc uint32) error {
	n := h.DataLen()
	pad := Pad(n)
	tl := pad
	if r.DataDigest && n > 0 {
		tl += 4
	}
	if tl == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.R, r.trailer[:tl]); err != nil {
		return unexpectedEOF(err)
	}
	if r.DataDigest && n > 0 {
		crc = UpdateCRC32C(crc, r.trailer[:pad])
		if got := GetDigest(r.trailer[pad:tl]); got != crc {
			return fmt.Errorf("%w on %v: got 0x%08x, computed 0x%08x", ErrDataDigest, h.Opcode(), got, crc)
		}
	}
	return nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPDU appends one complete PDU — BHS, header digest, data, padding,
// data digest — to dst. It is the simple path for login, text and test
// traffic; the initiator's data path frames PDUs without copying data.
// An AHS is not supported: h must have TotalAHSLength 0.
func AppendPDU(dst []byte, h *BHS, data []byte, headerDigest, dataDigest bool) []byte {
	h.SetDataLen(len(data))
	dst = append(dst, h[:]...)
	var d [4]byte
	if headerDigest {
		PutDigest(d[:], HeaderDigest(h, nil))
		dst = append(dst, d[:]...)
	}
	if len(data) > 0 {
		dst = append(dst, data...)
		dst = append(dst, zeros[:Pad(len(data))]...)
		if dataDigest {
			PutDigest(d[:], DataDigest(data))
			dst = append(dst, d[:]...)
		}
	}
	return dst
}
