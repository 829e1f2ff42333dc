package handoff

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The initramfs "newc" cpio format the kernel unpacks (init/initramfs.c,
// Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
// ASCII header ("070701" or "070702" and thirteen 8-digit hex fields), the
// NUL-terminated name padded so the data starts 4-byte aligned, the data
// padded to 4 bytes; the archive ends with an entry named "TRAILER!!!".
// u-root's pkg/cpio needs an io.ReaderAt and keeps records; the inspector
// streams decompressed data and keeps only names, so it has its own reader.

const (
	newcHeaderLen = 110
	newcTrailer   = "TRAILER!!!"
	// maxNameLen is the kernel's limit (init/initramfs.c: name_len >
	// PATH_MAX is "bad name").
	maxNameLen = 4096
)

// File type bits of a cpio mode (S_IFMT and friends).
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
)

// newcHeader holds the fields of a newc header the inspector uses.
type newcHeader struct {
	Ino, Mode, UID, GID, Nlink, Mtime uint32
	FileSize                          uint32
	NameSize                          uint32
	Name                              string
}

// errNotCPIO reports a header without newc magic.
var errNotCPIO = errors.New("not a newc cpio header")

// posReader is a buffered reader that knows its position in the stream,
// for the 4-byte alignment rules, which count from the start of the
// stream. The position is derived from what the buffer took from the
// source, so reading costs nothing extra; decompressors are handed the
// *bufio.Reader itself (see decompressor), which compress/flate reads
// byte by byte and so stops exactly at the end of a gzip member.
type posReader struct {
	r   *bufio.Reader
	src *countReader
}

// countReader counts the bytes read from r, starting at n.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func newPosReader(r io.Reader, pos int64) *posReader {
	src := &countReader{r: r, n: pos}
	return &posReader{r: bufio.NewReaderSize(src, 64<<10), src: src}
}

// pos is the offset of the next byte to be read.
func (p *posReader) pos() int64 { return p.src.n - int64(p.r.Buffered()) }

func (p *posReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func (p *posReader) Peek(n int) ([]byte, error) { return p.r.Peek(n) }

func (p *posReader) discard(n int64) error {
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := p.r.Discard(k)
		n -= int64(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// align skips the padding up to the next multiple of 4.
func (p *posReader) align() error {
	if pad := (4 - p.pos()%4) % 4; pad > 0 {
		if err := p.discard(pad); err != nil {
			return noEOF(err)
		}
	}
	return nil
}

// skipZeros consumes NUL bytes (padding between archives) and reports
// whether anything follows.
func (p *posReader) skipZeros() (more bool, err error) {
	for {
		b, err := p.r.Peek(1)
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b[0] != 0 {
			return true, nil
		}
		// Skip a run of zeros at once.
		buf, _ := p.r.Peek(p.r.Buffered())
		n := 0
		for n < len(buf) && buf[n] == 0 {
			n++
		}
		if err := p.discard(int64(n)); err != nil {
			return false, err
		}
	}
}

// noEOF turns a clean EOF in the middle of a structure into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readHeader reads one newc header and its name. The caller must then read
// or skip exactly FileSize bytes and call align.
func readHeader(p *posReader) (newcHeader, error) {
	var h newcHeader
	if pos := p.pos(); pos%4 != 0 {
		// init/initramfs.c do_reset: "broken padding".
		return h, fmt.Errorf("cpio header at offset %d is not 4-byte aligned", pos)
	}
	var raw [newcHeaderLen]byte
	if _, err := io.ReadFull(p, raw[:]); err != nil {
		return h, noEOF(err)
	}
	if !bytes.Equal(raw[:6], []byte("070701")) && !bytes.Equal(raw[:6], []byte("070702")) {
		return h, fmt.Errorf("%w (magic %q)", errNotCPIO, raw[:6])
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(raw[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return h, fmt.Errorf("cpio header field %d %q is not hex", i, raw[6+8*i:14+8*i])
		}
		f[i] = uint32(v)
	}
	h = newcHeader{Ino: f[0], Mode: f[1], UID: f[2], GID: f[3], Nlink: f[4], Mtime: f[5], FileSize: f[6], NameSize: f[11]}
	if h.NameSize == 0 || h.NameSize > maxNameLen {
		return h, fmt.Errorf("cpio name size %d out of range 1..%d", h.NameSize, maxNameLen)
	}
	name := make([]byte, h.NameSize)
	if _, err := io.ReadFull(p, name); err != nil {
		return h, noEOF(err)
	}
	if name[len(name)-1] != 0 {
		return h, fmt.Errorf("cpio name %q is not NUL-terminated", name)
	}
	h.Name = string(name[:len(name)-1])
	if err := p.align(); err != nil {
		return h, err
	}
	return h, nil
}

// newcWriter writes a newc archive the way the kernel reads it, to W as it
// goes: a file's data may be streamed (addFrom), so that carrying the 11
// MiB lunboot binary does not hold it in memory. The first error sticks;
// finish returns it.
type newcWriter struct {
	W   io.Writer
	n   int64 // bytes written
	ino uint32
	err error
}

func (w *newcWriter) write(b []byte) {
	if w.err != nil {
		return
	}
	m, err := w.W.Write(b)
	w.n += int64(m)
	w.err = err
}

func (w *newcWriter) header(name string, mode uint32, size int64) {
	w.ino++
	nlink := uint32(1)
	if mode&modeTypeMask == modeDir {
		nlink = 2
	}
	if name == newcTrailer {
		w.ino, nlink = 0, 1
	}
	w.write(fmt.Appendf(nil, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		w.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0))
	w.write(append([]byte(name), 0))
	w.pad(4)
}

func (w *newcWriter) add(name string, mode uint32, data []byte) {
	w.header(name, mode, int64(len(data)))
	w.write(data)
	w.pad(4)
}

// addFrom adds a file whose size bytes of data come from r.
func (w *newcWriter) addFrom(name string, mode uint32, r io.Reader, size int64) {
	if size < 0 || size > 0xffffffff {
		w.err = cmp.Or(w.err, fmt.Errorf("cpio: %s is %d bytes, more than newc's 4 GiB", name, size))
		return
	}
	w.header(name, mode, size)
	if w.err == nil {
		m, err := io.CopyN(w.W, r, size)
		w.n += m
		if err != nil {
			w.err = fmt.Errorf("cpio: copy %s (%d of %d bytes): %w", name, m, size, err)
		}
	}
	w.pad(4)
}

func (w *newcWriter) pad(n int64) {
	if p := (n - w.n%n) % n; p > 0 {
		w.write(make([]byte, p))
	}
}

// finish writes the trailer and pads the archive to a multiple of 512 bytes
// (what GNU cpio does, and more than the 4-byte alignment the kernel needs
// for the archive that follows). It returns the first error of any write.
func (w *newcWriter) finish() error {
	w.add(newcTrailer, 0, nil)
	w.pad(512)
	return w.err
}
