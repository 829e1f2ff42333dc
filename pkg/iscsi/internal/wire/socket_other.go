//go:build !linux

package wire

import "errors"

// Socket is Linux-only: elsewhere NewSocket returns nil and callers use
// the connection's own Read and Write.
type Socket struct{}

// NewSocket returns nil: direct socket I/O is implemented for Linux only.
func NewSocket(any) *Socket { return nil }

var errNoSocket = errors.New("wire: direct socket I/O is not available on this system")

// Readv is not available on this system.
func (*Socket) Readv(a, b []byte) (int, error) { return 0, errNoSocket }

// Writev is not available on this system.
func (*Socket) Writev(bufs *[][]byte) (int64, error) { return 0, errNoSocket }

// TryWritev is not available on this system.
func (*Socket) TryWritev(bufs *[][]byte) (int64, error) { return 0, errNoSocket }
