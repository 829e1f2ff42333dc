package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

// memDevice is an in-memory blockdev.Device. It records what reached it:
// data holds every completed write, durable the state at the last Flush,
// so a test can tell a flushed write from a merely written one.
type memDevice struct {
	mu      sync.Mutex
	data    []byte
	durable []byte
	bs      int

	readOnly bool
	canTrim  bool
	trimmed  [][2]int64

	// readErr, when set, may fail a read of [off, off+n).
	readErr func(off int64, n int) error
	// writeErr, when set, may fail a write.
	writeErr func(off int64, n int) error
	// flushErr fails Flush when set.
	flushErr error
	// gate, when set, is called on entry to ReadAt and WriteAt and may
	// block to hold a request in flight.
	gate func(op string, off int64)

	reads, writes, flushes, fuaWrites atomic.Int64
	active, peak                      atomic.Int64
}

func newMemDevice(size int64, bs int) *memDevice {
	return &memDevice{data: make([]byte, size), durable: make([]byte, size), bs: bs}
}

func (m *memDevice) enter(op string, off int64) func() {
	n := m.active.Add(1)
	for {
		p := m.peak.Load()
		if n <= p || m.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if m.gate != nil {
		m.gate(op, off)
	}
	return func() { m.active.Add(-1) }
}

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	defer m.enter("read", off)()
	m.reads.Add(1)
	if m.readErr != nil {
		if err := m.readErr(off, len(p)); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off > int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	defer m.enter("write", off)()
	m.writes.Add(1)
	if m.writeErr != nil {
		if err := m.writeErr(off, len(p)); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, errors.New("memDevice: write beyond the end")
	}
	return copy(m.data[off:], p), nil
}

func (m *memDevice) Flush() error {
	m.flushes.Add(1)
	if m.flushErr != nil {
		return m.flushErr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	copy(m.durable, m.data)
	return nil
}

func (m *memDevice) Size() int64    { return int64(len(m.data)) }
func (m *memDevice) BlockSize() int { return m.bs }
func (m *memDevice) ReadOnly() bool { return m.readOnly }
func (m *memDevice) CanTrim() bool  { return m.canTrim }

func (m *memDevice) Trim(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trimmed = append(m.trimmed, [2]int64{off, n})
	clear(m.data[off : off+n])
	return nil
}

// snapshot returns copies of the written and the durable state.
func (m *memDevice) snapshot() (data, durable []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...), append([]byte(nil), m.durable...)
}

// fuaDevice adds a FUA write to memDevice: the write is durable at once.
type fuaDevice struct{ *memDevice }

func (f fuaDevice) WriteAtFUA(p []byte, off int64) (int, error) {
	n, err := f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	f.fuaWrites.Add(1)
	f.mu.Lock()
	copy(f.durable[off:], p)
	f.mu.Unlock()
	return n, nil
}

// result is one reply as the client saw it.
type result struct {
	errno Errno
	data  []byte
	err   error // transport failure
}

// client plays the kernel: it sends requests with distinct handles and
// matches replies to them in whatever order they come.
type client struct {
	conn    net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	next    uint64
	pending map[uint64]pendingReq
	readErr error
	done    chan struct{}
}

type pendingReq struct {
	req Request
	ch  chan result
}

// startServe runs Serve on one end of a pipe and returns a client on the
// other end and a function that waits for Serve's result.
func startServe(t *testing.T, ctx context.Context, dev blockdev.Device, opts Options) (*client, func() error) {
	t.Helper()
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, a, dev, opts) }()
	c := newClient(b)
	var once sync.Once
	var serr error
	wait := func() error {
		once.Do(func() {
			select {
			case serr = <-errc:
			case <-time.After(10 * time.Second):
				serr = errors.New("Serve did not return within 10s")
			}
		})
		return serr
	}
	t.Cleanup(func() {
		b.Close()
		wait()
	})
	return c, wait
}

func newClient(conn net.Conn) *client {
	c := &client{conn: conn, pending: map[uint64]pendingReq{}, done: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *client) readLoop() {
	defer close(c.done)
	var hdr [ReplySize]byte
	for {
		_, err := io.ReadFull(c.conn, hdr[:])
		if err == nil {
			var r Reply
			if err = r.UnmarshalBinary(hdr[:]); err == nil {
				err = c.deliver(r)
			}
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			for h, p := range c.pending {
				p.ch <- result{err: err}
				delete(c.pending, h)
			}
			c.mu.Unlock()
			return
		}
	}
}

func (c *client) deliver(r Reply) error {
	c.mu.Lock()
	p, ok := c.pending[r.Handle]
	delete(c.pending, r.Handle)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("reply for unknown handle %#x", r.Handle)
	}
	res := result{errno: r.Error}
	if r.Error == 0 && p.req.Type == CmdRead {
		res.data = make([]byte, p.req.Length)
		if _, err := io.ReadFull(c.conn, res.data); err != nil {
			return err
		}
	}
	p.ch <- res
	return nil
}

// send writes a request (and payload) and returns where its reply arrives.
func (c *client) send(req Request, payload []byte) <-chan result {
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		ch <- result{err: c.readErr}
		return ch
	}
	c.next++
	req.Handle = c.next<<32 | 0xabcd
	if req.Type != CmdDisc {
		c.pending[req.Handle] = pendingReq{req, ch}
	}
	c.mu.Unlock()

	b, _ := req.MarshalBinary()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.conn.Write(append(b, payload...)); err != nil {
		c.mu.Lock()
		delete(c.pending, req.Handle)
		c.mu.Unlock()
		ch <- result{err: err}
	}
	return ch
}

// do sends a request and waits (bounded) for its reply.
func (c *client) do(t *testing.T, req Request, payload []byte) result {
	t.Helper()
	return wait(t, c.send(req, payload))
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("no reply within 10s")
		return result{}
	}
}

// writeRaw writes raw bytes to the server, for hostile input.
func (c *client) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(b)
	return err
}
