package nbd

import (
	"errors"
	"io/fs"
)

// ErrnoOf chooses the reply error for an error returned by a
// blockdev.Device. An Errno in err's chain wins; then the operating system's
// errno values map to their protocol counterparts (EROFS and EACCES to EPERM,
// EDQUOT and EFBIG to ENOSPC as proto.md asks); anything else is EIO. A nil
// error is 0.
//
// A device that wants a specific reply wraps a syscall errno — a
// write-protected LUN returns an error wrapping syscall.EROFS, an LBA out of
// range one wrapping syscall.EINVAL — and stays free of this package.
func ErrnoOf(err error) Errno {
	if err == nil {
		return 0
	}
	var e Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	if e, ok := sysErrno(err); ok {
		return e
	}
	if errors.Is(err, fs.ErrPermission) {
		return EPERM
	}
	return EIO
}
