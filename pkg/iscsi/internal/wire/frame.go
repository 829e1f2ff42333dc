package wire

import (
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

// Reader buffer sizes.
const (
	// readAhead is the Reader's buffer: one read(2) takes in many small
	// PDUs (SCSI Responses, 4 KiB Data-In with their headers) at once.
	readAhead = 64 << 10
	// directMin is the shortest data segment remainder read straight into
	// the caller's buffer instead of through the read-ahead buffer: for
	// large Data-In, copying out of the buffer would cost a memmove of
	// every byte on top of the kernel's copy.
	directMin = 8 << 10
)

// Reader reads PDUs from a byte stream through its own read-ahead buffer.
// Large data segments bypass the buffer: where the stream is a socket
// (see Socket), one readv(2) fills the rest of the segment in the caller's
// buffer and takes the segment's padding, digest and the next PDU's header
// into the read-ahead buffer, so a stream of large Data-In PDUs costs one
// system call and no user-space copy per PDU. The zero value is not
// usable: set R and MaxData.
type Reader struct {
	// R is the byte stream. Bytes the Reader has buffered are not in R any
	// more: keep using the Reader for the rest of the stream.
	R            io.Reader
	HeaderDigest bool
	DataDigest   bool
	// MaxData is the largest DataSegmentLength accepted; longer PDUs fail
	// with ErrDataTooLong before anything is allocated or read.
	MaxData int
	// AHS holds the additional header segments of the last header read.
	AHS []byte
	// BeforeRead, if set, runs before each read from R (each of which may
	// wait for input); an initiator sends what it has queued there.
	BeforeRead func()

	buf    []byte // read-ahead: buf[r:w] is buffered
	r, w   int
	large  bool    // the last data segment went straight to the caller's buffer
	sock   *Socket // R's descriptor, if it has one (see NewSocket)
	probed bool    // sock is set

	ahs     [255 * 4]byte
	trailer [8]byte
	discard [4096]byte
}

// Buffered returns how many bytes of the stream the Reader holds that have
// not been consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Socket returns the Socket the Reader reads R through, or nil when R has
// no descriptor of its own (see NewSocket). Its write side is free for the
// caller: one Socket serves a connection both ways.
func (r *Reader) Socket() *Socket {
	if !r.probed {
		r.sock, r.probed = NewSocket(r.R), true
	}
	return r.sock
}

// read reads from the stream into p and then, where the stream is a
// socket, into tail.
func (r *Reader) read(p, tail []byte) (int, error) {
	sock := r.Socket()
	if r.BeforeRead != nil {
		r.BeforeRead()
	}
	if sock != nil {
		return sock.Readv(p, tail)
	}
	return r.R.Read(p)
}

// fill reads more of the stream into the read-ahead buffer, which the
// caller has emptied.
func (r *Reader) fill() error {
	if r.buf == nil {
		r.buf = make([]byte, readAhead)
	}
	r.r, r.w = 0, 0
	for range 100 {
		n, err := r.read(r.buf, nil)
		if n > 0 {
			r.w = n
			return nil // a sticky error shows up again on the next read
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// headerLen is the length of a BHS and its header digest.
func (r *Reader) headerLen() int {
	if r.HeaderDigest {
		return BHSLen + 4
	}
	return BHSLen
}

// topUp reads until the buffer holds n bytes, taking no more than that
// from the stream. It returns io.EOF only if the stream ended with the
// buffer empty.
func (r *Reader) topUp(n int) error {
	if r.buf == nil {
		r.buf = make([]byte, readAhead)
	}
	have := copy(r.buf, r.buf[r.r:r.w])
	r.r, r.w = 0, have
	for range 100 {
		if r.w >= n {
			return nil
		}
		m, err := r.read(r.buf[r.w:n], nil)
		r.w += m
		if r.w >= n {
			return nil // a sticky error shows up again on the next read
		}
		if err != nil {
			if err == io.EOF && r.w > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return io.ErrNoProgress
}

// readFull fills p from the buffer, then from the stream. tail is how many
// bytes the stream is known to carry after p (the segment trailer and the
// next header), which a direct read may take into the buffer. It returns
// io.EOF only if the stream ended before the first byte of p.
func (r *Reader) readFull(p []byte, tail int) error {
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	// Once direct, the rest goes direct too: a fill for its last few
	// bytes would take in the next segment as well.
	direct := len(p)-n >= directMin
	for n < len(p) {
		var err error
		if direct {
			var m int
			m, err = r.direct(p[n:], tail)
			n += m
		} else if err = r.fill(); err == nil {
			m := copy(p[n:], r.buf[r.r:r.w])
			r.r += m
			n += m
		}
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// direct reads into p without the buffer, which is empty, taking at most
// tail bytes beyond p into it. It returns how many bytes landed in p.
func (r *Reader) direct(p []byte, tail int) (int, error) {
	if r.buf == nil {
		r.buf = make([]byte, readAhead)
	}
	n, err := r.read(p, r.buf[:min(tail, len(r.buf))])
	if n > len(p) {
		r.r, r.w = 0, n-len(p)
		return len(p), nil
	}
	if n > 0 {
		err = nil
	}
	return n, err
}

// ReadHeader reads the BHS, any AHS and the header digest into h.
func (r *Reader) ReadHeader(h *BHS) error {
	if hl := r.headerLen(); r.large && r.Buffered() < hl {
		// A large data segment is usually followed by another (reads
		// stream Data-In PDUs), and the read that took the last one's
		// data did not take in all of this header. Read only the rest of
		// the header: a full fill would take much of the next segment
		// into the read-ahead buffer, to be copied out again, instead of
		// letting it go straight to the caller's buffer (see direct).
		if err := r.topUp(hl); err != nil {
			return err
		}
	}
	if err := r.readFull(h[:], 0); err != nil {
		return err
	}
	n := h.AHSLen()
	r.AHS = r.ahs[:n]
	if err := r.readFull(r.AHS, 0); err != nil {
		return unexpectedEOF(err)
	}
	if r.HeaderDigest {
		if err := r.readFull(r.trailer[:4], 0); err != nil {
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

// trailerLen is the padding and data digest after a data segment of n bytes.
func (r *Reader) trailerLen(n int) int {
	tl := Pad(n)
	if r.DataDigest && n > 0 {
		tl += 4
	}
	return tl
}

// ReadData reads the data segment of h into dst, which must be exactly
// h.DataLen() bytes, then its padding and data digest.
func (r *Reader) ReadData(h *BHS, dst []byte) error {
	if len(dst) != h.DataLen() {
		return fmt.Errorf("wire: ReadData with %d-byte buffer for a %d-byte segment", len(dst), h.DataLen())
	}
	r.large = len(dst)-r.Buffered() >= directMin
	// What certainly follows: this segment's trailer and, unless the
	// stream ends, the next PDU's BHS (and header digest).
	if err := r.readFull(dst, r.trailerLen(len(dst))+r.headerLen()); err != nil {
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
	r.large = false
	n := h.DataLen()
	var crc uint32
	for n > 0 {
		chunk := r.discard[:min(n, len(r.discard))]
		if err := r.readFull(chunk, 0); err != nil {
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
	tl := r.trailerLen(n)
	if tl == 0 {
		return nil
	}
	if r.large && r.Buffered() < tl {
		// As in ReadHeader: take in no more than the trailer.
		if err := r.topUp(tl); err != nil {
			return unexpectedEOF(err)
		}
	}
	if err := r.readFull(r.trailer[:tl], 0); err != nil {
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
