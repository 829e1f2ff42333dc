package iscsi

import (
	"net"
	"runtime"
	"sync"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// outPDU is a PDU waiting for the writer. Its data points into the
// caller's buffer (Data-Out, immediate data) or a private one; t, when
// set, holds a reference released once the bytes are written.
type outPDU struct {
	hdr     [wire.BHSLen + 4]byte
	hlen    int
	data    []byte
	trailer [8]byte
	tlen    int
	t       *task
}

var pduPool = sync.Pool{New: func() any { return new(outPDU) }}

// newPDU frames h (and data) with padding and the negotiated digests.
func (c *conn) newPDU(h *wire.BHS, data []byte, t *task) *outPDU {
	p := pduPool.Get().(*outPDU)
	// Work on the pooled copy so that h stays on the caller's stack.
	copy(p.hdr[:], h[:])
	hb := (*wire.BHS)(p.hdr[:wire.BHSLen])
	hb.SetDataLen(len(data))
	p.hlen = wire.BHSLen
	if c.hd {
		wire.PutDigest(p.hdr[wire.BHSLen:], wire.CRC32C(p.hdr[:wire.BHSLen]))
		p.hlen += 4
	}
	p.data, p.t, p.tlen = data, t, 0
	if len(data) > 0 {
		pad := wire.Pad(len(data))
		clear(p.trailer[:pad])
		p.tlen = pad
		if c.dd {
			wire.PutDigest(p.trailer[pad:], wire.DataDigest(data))
			p.tlen += 4
		}
	}
	return p
}

func (p *outPDU) release() {
	if p.t != nil {
		p.t.release()
	}
	p.data, p.t = nil, nil
	pduPool.Put(p)
}

// writer is the connection's send queue. Producers append under mu; then
// the queue is written by one goroutine at a time, which takes the whole
// queue at once, so that PDUs queued meanwhile go out together:
//
//   - a goroutine issuing a command writes it itself (flush: no goroutine
//     hand-off on the command path) unless the reader is busy with PDUs
//     already received and will write before it waits for more;
//   - the reader writes what was queued (commands its completions led
//     callers to issue, Data-Out for R2Ts, NOP-Out replies) right before
//     each read that may wait, but never waits for room in the socket
//     (tryFlush): the target may be waiting for us to read. What the
//     socket does not take at once goes to the writer goroutine (carry);
//   - the writer goroutine writes for background producers (keepalive)
//     and finishes what the reader could not.
type writer struct {
	mu      sync.Mutex
	q       []*outPDU
	spare   []*outPDU
	writing bool
	closed  bool
	// carry is a batch the reader began to write; carryIOV is what of it
	// is still unwritten. It goes out before q.
	carry    []*outPDU
	carryIOV [][]byte
	kick     chan struct{}
	stop     chan struct{}
	iov      [][]byte
	buf      []byte
}

func (w *writer) init(nc net.Conn) {
	w.kick = make(chan struct{}, 1)
	w.stop = make(chan struct{})
}

// add queues a PDU without writing it; the caller then calls flush or
// wake. After close the PDU is dropped and add returns false. A PDU
// holding a task reference goes through addTask instead.
func (w *writer) add(p *outPDU) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		if p.t == nil {
			p.release()
		}
		return false
	}
	w.q = append(w.q, p)
	w.mu.Unlock()
	return true
}

// addTask queues a PDU whose data belongs to t, counting the reference.
// t.mu is held (so release, which takes it, cannot run before the count).
func (w *writer) addTask(t *task, p *outPDU) {
	t.refs++
	if !w.add(p) {
		t.refs--
		p.t = nil
		p.release()
	}
}

// wake asks the writer goroutine to write the queue.
func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *writer) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	close(w.stop)
	var q []*outPDU
	if !w.writing {
		q, w.q = w.q, nil
		q = append(q, w.carry...)
		w.carry, w.carryIOV = nil, nil
	}
	w.mu.Unlock()
	for _, p := range q {
		p.release()
	}
}

// coalesceLimit: batches up to this size are copied into one buffer and
// written at once; larger ones go out with writev so that Data-Out payload
// is never copied.
const coalesceLimit = 32 << 10

// flush writes the queue on the calling goroutine, waiting for room in the
// socket, unless another goroutine is writing already (it will drain what
// was added). It must not be called with Session.mu or a task's mu held,
// nor from the reader.
func (c *conn) flush() { c.write(true) }

// tryFlush is the reader's flush: it writes what the socket takes without
// waiting and leaves the rest to the writer goroutine.
func (c *conn) tryFlush() { c.write(false) }

func (c *conn) write(wait bool) {
	w := &c.w
	w.mu.Lock()
	if w.writing || (len(w.q) == 0 && w.carry == nil) {
		w.mu.Unlock()
		return
	}
	w.writing = true
	var err error
	for !w.closed && err == nil {
		var batch []*outPDU
		var iov, rest [][]byte
		if w.carry != nil {
			if !wait {
				break // the writer goroutine has it
			}
			batch, rest = w.carry, w.carryIOV
			w.carry, w.carryIOV = nil, nil
		} else if len(w.q) > 0 {
			// q and spare alternate between two arrays; spare is nil while
			// its array holds a batch being written.
			batch, w.q, w.spare = w.q, w.spare[:0], nil
		} else {
			break
		}
		w.mu.Unlock()
		if rest == nil {
			iov = c.frame(batch)
			rest = iov
		}
		var done bool
		done, err = c.writeIOV(&rest, wait)
		if !done && err == nil {
			// The socket is full: the writer goroutine finishes.
			w.mu.Lock()
			w.carry, w.carryIOV = batch, rest
			if !w.closed {
				w.writing = false
				w.mu.Unlock()
				w.wake()
				return
			}
			// close ran meanwhile and, seeing us writing, left the queue
			// to us; the writer goroutine is gone. Dropped below: a PDU
			// kept would keep its task referenced, and Execute waiting.
			break
		}
		for i, p := range batch {
			p.release()
			batch[i] = nil
		}
		clear(iov) // no references to callers' buffers
		w.mu.Lock()
		w.spare = batch[:0]
		if iov != nil {
			w.iov = iov[:0]
		}
	}
	w.writing = false
	var drop []*outPDU
	if w.closed || err != nil {
		drop, w.q = w.q, nil
		drop = append(drop, w.carry...)
		w.carry, w.carryIOV = nil, nil
	}
	w.mu.Unlock()
	for _, p := range drop {
		p.release()
	}
	if err != nil {
		c.fail(c.connErr("write to", err))
	}
}

// frame lays out a batch for writing: small batches are copied into one
// buffer, larger ones point at each PDU's parts. The writer holds w.writing.
func (c *conn) frame(batch []*outPDU) [][]byte {
	w := &c.w
	total := 0
	for _, p := range batch {
		total += p.hlen + len(p.data) + p.tlen
	}
	iov := w.iov[:0]
	w.iov = nil // the batch's until it is written
	if total <= coalesceLimit {
		b := w.buf[:0]
		for _, p := range batch {
			b = append(b, p.hdr[:p.hlen]...)
			b = append(b, p.data...)
			b = append(b, p.trailer[:p.tlen]...)
		}
		w.buf = b
		return append(iov, b)
	}
	for _, p := range batch {
		iov = append(iov, p.hdr[:p.hlen])
		if len(p.data) > 0 {
			iov = append(iov, p.data)
			if p.tlen > 0 {
				iov = append(iov, p.trailer[:p.tlen])
			}
		}
	}
	return iov
}

// writeIOV writes iov, consuming what was written. Without wait it
// stops when the socket is full; done reports whether all went out.
func (c *conn) writeIOV(iov *[][]byte, wait bool) (done bool, err error) {
	if c.sock == nil {
		if !wait {
			return false, nil // no non-blocking path: leave it to the writer goroutine
		}
		nb := net.Buffers(*iov)
		_, err = nb.WriteTo(c.nc)
		*iov = nb
		return err == nil, err
	}
	if wait {
		_, err = c.sock.Writev(iov)
		return err == nil, err
	}
	for len(*iov) > 0 {
		n, err := c.sock.TryWritev(iov)
		if err != nil || n == 0 {
			return false, err
		}
	}
	return true, nil
}

// flushSoon is flush for the command path: the first caller lets the
// other goroutines that are ready to run (typically those whose commands
// the reader just completed) queue their next command, then writes them
// all at once; callers meanwhile leave the writing to it.
func (c *conn) flushSoon() {
	if !c.flushPending.CompareAndSwap(false, true) {
		return
	}
	runtime.Gosched()
	c.flushPending.Store(false)
	c.flush()
}

// writeLoop writes what the reader and other background producers queue.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.w.kick:
			c.flush()
		case <-c.w.stop:
			return
		}
	}
}
