//go:build !unix

package nbd

// sysErrno has no errno table to consult off Unix: such errors become EIO
// (or EPERM through fs.ErrPermission).
func sysErrno(error) (Errno, bool) { return 0, false }
