// Package blockdev defines the block-device view that joins lunboot's layers:
// the SCSI disk on top of an iSCSI session implements it, and the NBD server
// serves it to the kernel. Neither side knows about the other.
package blockdev

import "io"

// Device is a fixed-size random-access disk. All methods are safe for
// concurrent use; ReadAt and WriteAt may be called with any offset and length
// that lie inside the device (implementations handle partial blocks), and a
// short count is always returned together with a non-nil error.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Flush makes every completed write durable (SCSI SYNCHRONIZE CACHE).
	Flush() error
	// Size is the capacity in bytes.
	Size() int64
	// BlockSize is the logical block size in bytes (a power of two, >= 512).
	BlockSize() int
}

// FUAWriter is implemented by devices that can write through the cache in a
// single command (SCSI WRITE with the FUA bit), so an NBD_CMD_FLAG_FUA write
// does not need a full cache flush.
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// Trimmer is implemented by devices that can discard a byte range (SCSI
// UNMAP). Callers check CanTrim before advertising discard support.
type Trimmer interface {
	Trim(off, length int64) error
	CanTrim() bool
}

// ReadOnly is implemented by devices that may refuse writes (a
// write-protected LUN); the NBD server then advertises a read-only export.
type ReadOnly interface {
	ReadOnly() bool
}
