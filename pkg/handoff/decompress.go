package handoff

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"
)

// Compression is how one segment of an initrd is stored.
type Compression string

// Compressions the kernel can unpack (lib/decompress.c compressed_formats)
// and what the inspector makes of them.
const (
	CompressionNone  Compression = "none"
	CompressionGzip  Compression = "gzip"
	CompressionBzip2 Compression = "bzip2"
	CompressionLZMA  Compression = "lzma"
	CompressionXZ    Compression = "xz"
	CompressionLZO   Compression = "lzo" // recognised, not decompressed
	// CompressionLZ4 is the legacy LZ4 format (magic 0x184C2102) that
	// `lz4 -l` writes: initramfs-tools and dracut both use -l because the
	// kernel's unlz4 reads only that format.
	CompressionLZ4  Compression = "lz4"
	CompressionZstd Compression = "zstd"
)

// Dictionary and window limits. They keep a hostile header from making the
// inspector allocate gigabytes; real initrds use far less (initramfs-tools:
// xz -6 = 8 MiB, zstd -9; dracut: xz dict=1MiB, zstd -15).
const (
	maxXZDict     = 64 << 20 // xz -9
	maxLZMADict   = 64 << 20
	maxZstdWindow = 64 << 20 // zstd --long=26
)

// sniff names the compression of data starting with b (at least 6 bytes
// when available), as the kernel's decompress_method does; ok is false for
// anything it would not unpack.
func sniff(b []byte) (c Compression, ok bool) {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}), bytes.HasPrefix(b, []byte{0x1f, 0x9e}):
		return CompressionGzip, true
	case bytes.HasPrefix(b, []byte("BZh")):
		return CompressionBzip2, true
	case bytes.HasPrefix(b, []byte{0x5d, 0x00, 0x00}):
		return CompressionLZMA, true
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return CompressionXZ, true
	case bytes.HasPrefix(b, []byte{0x89, 'L', 'Z', 'O'}):
		return CompressionLZO, true
	case bytes.HasPrefix(b, []byte{0x02, 0x21, 0x4c, 0x18}):
		return CompressionLZ4, true
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompressionZstd, true
	}
	return "", false
}

// ErrUnsupportedCompression is returned for a segment the kernel could
// unpack but the inspector cannot (lzo), so the initrd cannot be checked.
var ErrUnsupportedCompression = errors.New("handoff: initrd compression not supported by the inspector")

// decompressor returns a reader of the decompressed stream and a function
// that releases it. For gzip, one member is read and r is left exactly at
// its end (the kernel, too, decompresses one member and looks at what
// follows); the others may read ahead, so nothing after them is inspected.
func decompressor(c Compression, r *posReader) (io.Reader, func(), error) {
	nop := func() {}
	switch c {
	case CompressionGzip:
		// The *bufio.Reader itself, not a wrapper: klauspost's flate has a
		// fast path for it (about a quarter less CPU than compress/gzip on
		// a 130 MB Debian initrd), and reads it through io.ByteReader so
		// it stops exactly at the member's end.
		zr, err := gzip.NewReader(r.r)
		if err != nil {
			return nil, nop, err
		}
		zr.Multistream(false)
		return zr, nop, nil
	case CompressionBzip2:
		return bzip2.NewReader(r), nop, nil
	case CompressionLZMA:
		lr, err := lzma.ReaderConfig{DictCap: maxLZMADict}.NewReader(r)
		if err != nil {
			return nil, nop, err
		}
		return lr, nop, nil
	case CompressionXZ:
		// therootcompany/xz (XZ Embedded in Go, already in the image for
		// u-root's bzImage code) rather than ulikunitz/xz: on the probe
		// disk's 2.2 MiB xz initrd (Debian's initramfs-tools) it took 180 ms of host CPU against 280 ms,
		// and the process decoding it peaked 11 MiB lower (VmHWM; see
		// docs/boot-speed.md). It sizes the dictionary from the block
		// header, up to maxXZDict, and fails with ErrMemlimit beyond.
		xr, err := xz.NewReader(r, maxXZDict)
		if err != nil {
			return nil, nop, err
		}
		xr.Multistream(false)
		return xr, nop, nil
	case CompressionLZ4:
		return lz4.NewReader(r), nop, nil
	case CompressionZstd:
		zr, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nop, err
		}
		return zr, zr.Close, nil
	}
	return nil, nop, fmt.Errorf("%w: %s", ErrUnsupportedCompression, c)
}

// checkXZ vets the LZMA2 dictionary sizes of an xz stream before the xz
// reader allocates them (it sizes each block's dictionary from the block
// header; the reader's own limit, maxXZDict, is a second line). The
// stream must end the initrd, as every generator
// writes it: the footer is found behind any zero padding at end, the index
// before it lists every block, and each block header is read where the
// index says it is.
func checkXZ(r io.ReaderAt, start, end int64) error {
	// Stream padding: zero bytes after the footer.
	for end-start >= 12+12 {
		var b [4]byte
		if _, err := r.ReadAt(b[:], end-4); err != nil {
			return err
		}
		if b != [4]byte{} {
			break
		}
		end -= 4
	}
	var hdr, foot [12]byte
	if end-start < 24 {
		return errors.New("xz stream too short")
	}
	if _, err := r.ReadAt(hdr[:], start); err != nil {
		return err
	}
	if _, err := r.ReadAt(foot[:], end-12); err != nil {
		return err
	}
	if foot[10] != 'Y' || foot[11] != 'Z' || foot[8] != hdr[6] || foot[9] != hdr[7] {
		return errors.New("xz stream does not end the initrd (no matching footer at its end)")
	}
	indexSize := (int64(binary.LittleEndian.Uint32(foot[4:8])) + 1) * 4
	indexStart := end - 12 - indexSize
	if indexStart < start+12 || indexSize > 16<<20 {
		return fmt.Errorf("xz index size %d does not fit", indexSize)
	}
	index := make([]byte, indexSize)
	if _, err := r.ReadAt(index, indexStart); err != nil {
		return err
	}
	if index[0] != 0 {
		return errors.New("xz index indicator missing")
	}
	ir := bytes.NewReader(index[1:])
	nrec, err := binary.ReadUvarint(ir)
	if err != nil || nrec > uint64(indexSize) {
		return errors.New("xz index record count invalid")
	}
	pos := start + 12
	for i := uint64(0); i < nrec; i++ {
		unpadded, err1 := binary.ReadUvarint(ir)
		_, err2 := binary.ReadUvarint(ir)
		if err1 != nil || err2 != nil || unpadded == 0 || unpadded > uint64(end) {
			return fmt.Errorf("xz index record %d invalid", i)
		}
		if err := checkXZBlock(r, pos, indexStart); err != nil {
			return fmt.Errorf("xz block %d: %w", i, err)
		}
		// The unpadded size covers header, data and check; blocks are
		// padded to 4 bytes.
		pos += (int64(unpadded) + 3) &^ 3
	}
	if pos != indexStart {
		return errors.New("xz blocks and index disagree")
	}
	return nil
}

// checkXZBlock reads the block header at pos and checks its LZMA2 filter's
// dictionary size (xz file format 1.1 §3.1).
func checkXZBlock(r io.ReaderAt, pos, limit int64) error {
	var b [1024]byte
	if pos >= limit {
		return errors.New("header outside the stream")
	}
	if _, err := r.ReadAt(b[:1], pos); err != nil {
		return err
	}
	size := (int64(b[0]) + 1) * 4
	if b[0] == 0 || pos+size > limit {
		return errors.New("header size invalid")
	}
	if _, err := r.ReadAt(b[:size], pos); err != nil {
		return err
	}
	h := bytes.NewReader(b[2:size])
	flags := b[1]
	if flags&0x40 != 0 {
		if _, err := binary.ReadUvarint(h); err != nil {
			return err
		}
	}
	if flags&0x80 != 0 {
		if _, err := binary.ReadUvarint(h); err != nil {
			return err
		}
	}
	for f := 0; f <= int(flags&3); f++ {
		id, err := binary.ReadUvarint(h)
		if err != nil {
			return err
		}
		n, err := binary.ReadUvarint(h)
		if err != nil || n > uint64(h.Len()) {
			return errors.New("filter properties invalid")
		}
		props := make([]byte, n)
		if _, err := io.ReadFull(h, props); err != nil {
			return err
		}
		if id == 0x21 { // LZMA2
			if n != 1 || props[0] > 40 {
				return errors.New("LZMA2 properties invalid")
			}
			dict := uint64(0xffffffff)
			if p := props[0]; p < 40 {
				dict = uint64(2|p&1) << (p/2 + 11)
			}
			if dict > maxXZDict {
				return fmt.Errorf("LZMA2 dictionary %d bytes exceeds the %d the inspector allows", dict, maxXZDict)
			}
		}
	}
	return nil
}
