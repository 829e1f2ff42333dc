package wire

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// maxIOV is the most buffers one readv/writev takes (Linux's UIO_MAXIOV).
const maxIOV = 1024

// Socket reads and writes a stream socket with readv(2) and writev(2)
// through the runtime's network poller (syscall.RawConn), so that one
// system call moves a data segment and what surrounds it, from or to
// separate buffers.
//
// The calls are made with syscall.RawSyscall: the descriptor is
// non-blocking (the poller waits for readiness, never the kernel), so the
// goroutine keeps its P as for any short computation. A Syscall would tell
// the scheduler a blocking call begins, which wakes the runtime's monitor
// thread (sysmon) whenever the process was idle before: on a connection
// that idles between bursts of PDUs that cost two context switches per
// burst and its polling at 20 µs intervals after each.
//
// A Socket's reads and writes may run concurrently with each other, but
// not with themselves.
type Socket struct {
	rc syscall.RawConn
	rd rawOp
	wr rawOp
}

// rawOp is one direction's pending system call; fn is its attempt method,
// bound once so that no closure is allocated per call.
type rawOp struct {
	trap  uintptr
	iov   []syscall.Iovec
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // attempt; waits for readiness on EAGAIN
	once  func(fd uintptr) bool // attemptOnce; never waits
}

func (o *rawOp) attemptOnce(fd uintptr) bool {
	o.attempt(fd)
	return true
}

func (o *rawOp) attempt(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(o.trap, fd, uintptr(unsafe.Pointer(&o.iov[0])), uintptr(len(o.iov)))
		if e == syscall.EINTR {
			continue
		}
		o.n, o.errno = int(n), e
		return e != syscall.EAGAIN
	}
}

// NewSocket returns a Socket for c, or nil if c is not a connection whose
// descriptor can be used directly (then use its Read and Write).
func NewSocket(c any) *Socket {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{rc: rc}
	s.rd = rawOp{trap: syscall.SYS_READV, iov: make([]syscall.Iovec, 0, 2)}
	s.wr = rawOp{trap: syscall.SYS_WRITEV, iov: make([]syscall.Iovec, 0, maxIOV)}
	s.rd.fn = s.rd.attempt
	s.wr.fn = s.wr.attempt
	s.wr.once = s.wr.attemptOnce
	return s
}

func appendIOV(iov []syscall.Iovec, b []byte) []syscall.Iovec {
	if len(b) == 0 {
		return iov
	}
	v := syscall.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return append(iov, v)
}

// Readv reads into a, then b (either may be empty), waiting for input if
// none is there. It returns the bytes read in all; the end of the stream
// is io.EOF.
func (s *Socket) Readv(a, b []byte) (int, error) {
	o := &s.rd
	o.iov = appendIOV(appendIOV(o.iov[:0], a), b)
	if len(o.iov) == 0 {
		return 0, nil
	}
	err := s.rc.Read(o.fn)
	clear(o.iov) // keep no reference to the caller's buffers
	switch {
	case err != nil:
		return 0, err
	case o.errno != 0:
		return 0, os.NewSyscallError("readv", o.errno)
	case o.n == 0:
		return 0, io.EOF
	}
	return o.n, nil
}

// Writev writes all of bufs, waiting for room in the socket as needed,
// and returns the bytes written; what was written is consumed from bufs
// (like net.Buffers).
func (s *Socket) Writev(bufs *[][]byte) (int64, error) {
	var total int64
	for len(*bufs) > 0 {
		n, err := s.writev(bufs, s.wr.fn)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// TryWritev writes what the socket takes now of bufs, without waiting,
// and consumes it from bufs: when the socket buffer is full it writes
// nothing and returns 0, nil.
func (s *Socket) TryWritev(bufs *[][]byte) (int64, error) {
	return s.writev(bufs, s.wr.once)
}

// writev makes one writev(2) of up to maxIOV buffers through fn.
func (s *Socket) writev(bufs *[][]byte, fn func(uintptr) bool) (int64, error) {
	o := &s.wr
	o.iov = o.iov[:0]
	for _, b := range *bufs {
		if len(o.iov) == maxIOV {
			break
		}
		o.iov = appendIOV(o.iov, b)
	}
	if len(o.iov) == 0 {
		*bufs = (*bufs)[:0]
		return 0, nil
	}
	o.n, o.errno = 0, 0
	err := s.rc.Write(fn)
	clear(o.iov)
	switch {
	case err != nil:
		return 0, err
	case o.errno == syscall.EAGAIN:
		return 0, nil // TryWritev only: Writev's attempt waits instead
	case o.errno != 0:
		return 0, os.NewSyscallError("writev", o.errno)
	case o.n == 0:
		return 0, io.ErrShortWrite
	}
	consume(bufs, int64(o.n))
	return int64(o.n), nil
}

// consume drops the first n bytes of bufs.
func consume(bufs *[][]byte, n int64) {
	for len(*bufs) > 0 {
		l := int64(len((*bufs)[0]))
		if l > n {
			(*bufs)[0] = (*bufs)[0][n:]
			return
		}
		n -= l
		(*bufs)[0] = nil
		*bufs = (*bufs)[1:]
	}
}
