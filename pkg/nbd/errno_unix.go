//go:build unix

package nbd

import (
	"errors"
	"syscall"
)

// sysErrnos maps this system's errno values to the protocol's; a slice, not
// a switch, because some systems give two names one value (Linux ENOTSUP
// and EOPNOTSUPP).
var sysErrnos = []struct {
	sys syscall.Errno
	nbd Errno
}{
	{syscall.EPERM, EPERM},
	{syscall.EACCES, EPERM},
	{syscall.EROFS, EPERM},
	{syscall.EIO, EIO},
	{syscall.ENOMEM, ENOMEM},
	{syscall.EINVAL, EINVAL},
	{syscall.ENOSPC, ENOSPC},
	{syscall.EDQUOT, ENOSPC},
	{syscall.EFBIG, ENOSPC},
	{syscall.EOVERFLOW, EOVERFLOW},
	{syscall.ENOTSUP, ENOTSUP},
	{syscall.EOPNOTSUPP, ENOTSUP},
	{syscall.ESHUTDOWN, ESHUTDOWN},
}

func sysErrno(err error) (Errno, bool) {
	var se syscall.Errno
	if !errors.As(err, &se) {
		return 0, false
	}
	for _, m := range sysErrnos {
		if m.sys == se {
			return m.nbd, true
		}
	}
	return 0, false
}
