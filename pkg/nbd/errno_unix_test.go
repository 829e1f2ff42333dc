//go:build unix

package nbd

import (
	"fmt"
	"syscall"
	"testing"
)

func TestErrnoOfSyscall(t *testing.T) {
	tests := []struct {
		err  error
		want Errno
	}{
		{fmt.Errorf("x: %w", syscall.EROFS), EPERM},
		{fmt.Errorf("x: %w", syscall.EACCES), EPERM},
		{syscall.EPERM, EPERM},
		{syscall.EIO, EIO},
		{syscall.EINVAL, EINVAL},
		{syscall.ENOSPC, ENOSPC},
		{syscall.EDQUOT, ENOSPC},
		{syscall.EFBIG, ENOSPC},
		{syscall.ENOMEM, ENOMEM},
		{syscall.EOVERFLOW, EOVERFLOW},
		{syscall.ENOTSUP, ENOTSUP},
		{syscall.EOPNOTSUPP, ENOTSUP},
		{syscall.ESHUTDOWN, ESHUTDOWN},
		{syscall.ETIMEDOUT, EIO},
	}
	for _, tt := range tests {
		if got := ErrnoOf(tt.err); got != tt.want {
			t.Errorf("ErrnoOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
