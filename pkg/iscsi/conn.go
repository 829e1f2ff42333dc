package iscsi

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// conn is one TCP connection of a session in full feature phase: a reader
// goroutine that demultiplexes target PDUs by ITT, a writer goroutine that
// coalesces queued PDUs into as few writes as possible, and a keepalive.
type conn struct {
	s       *Session
	nc      net.Conn
	r       *wire.Reader
	hd, dd  bool
	maxSend int    // the target's MaxRecvDataSegmentLength
	p       Params // negotiated
	portal  string
	w       writer
	sock    *wire.Socket // nc's descriptor for readv/writev; nil if it has none

	expStatSN atomic.Uint32
	lastRecv  atomic.Int64 // unix nanoseconds
	// inBatch is set while the reader works through PDUs it has received;
	// commands queued meanwhile are written before it reads again.
	inBatch      atomic.Bool
	flushPending atomic.Bool

	// Guarded by Session.mu.
	draining   bool // no new commands (logout pending)
	stopping   bool // we sent a Logout: the end of the stream is expected
	pingActive bool
	pingITT    uint32
	pingSent   time.Time
	logoutITT  uint32
	logoutCh   chan wire.LogoutResponse
	wait       time.Duration // Time2Wait before reconnecting

	scratch  []byte // reader's buffer for non-Data-In segments
	received bool   // reader: a socket read happened since lastRecv was set
	failOnce sync.Once
	failed   chan struct{}
	err      error
	wg       sync.WaitGroup
}

func newConn(s *Session, nc net.Conn, res *loginResult, portal string) *conn {
	c := &conn{
		s: s, nc: nc, hd: res.hd, dd: res.dd, maxSend: res.targetMRDSL, p: res.params, portal: portal,
		failed: make(chan struct{}),
		wait:   time.Duration(res.params.DefaultTime2Wait) * time.Second,
	}
	c.r = res.rd
	c.r.HeaderDigest, c.r.DataDigest, c.r.MaxData = res.hd, res.dd, res.params.MaxRecvDataSegmentLength
	c.expStatSN.Store(res.expStatSN)
	c.lastRecv.Store(time.Now().UnixNano())
	c.w.init(nc)
	c.sock = c.r.Socket() // res.rd reads nc
	// Before the reader waits for input, it sends what is queued.
	c.r.BeforeRead = c.beforeRead
	return c
}

func (c *conn) start() {
	c.wg.Add(3)
	go c.readLoop()
	go c.writeLoop()
	go c.keepalive()
}

// fail tears the connection down once; the session then recovers (or
// closes). It never blocks.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.err = err
		close(c.failed)
		c.nc.Close()
		c.w.close()
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			c.s.connFailed(c, err)
		}()
	})
}

// connErr describes an I/O failure on the connection.
func (c *conn) connErr(op string, err error) error {
	if errors.Is(err, wire.ErrHeaderDigest) || errors.Is(err, wire.ErrDataDigest) || errors.Is(err, wire.ErrDataTooLong) {
		return fmt.Errorf("%w: %s %s: %w", ErrProtocol, op, c.portal, err)
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("target closed the connection")
	}
	return fmt.Errorf("iscsi: %s %s: %w", op, c.portal, err)
}

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

// sendCommand queues a SCSI Command and its unsolicited data (RFC 7143
// §11.3, §4.2.5.2): immediate data in the command PDU when ImmediateData
// is Yes, then Data-Out PDUs with the reserved TTT up to FirstBurstLength
// when InitialR2T is No. Each PDU carries at most the target's
// MaxRecvDataSegmentLength. s.mu is held.
func (c *conn) sendCommand(t *task) {
	cmd := wire.SCSICommand{
		Final: true, Read: t.read, Write: t.write, Attr: wire.AttrSimple,
		LUN: t.cmd.LUN, ITT: t.itt, ExpectedDataTransferLength: t.edtl,
		CmdSN: t.cmdSN, ExpStatSN: c.expStatSN.Load(),
	}
	copy(cmd.CDB[:], t.cmd.CDB)
	var h wire.BHS
	if !t.write {
		cmd.Encode(&h)
		c.w.add(c.newPDU(&h, nil, nil))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.out
	imm, unsol := 0, 0
	if c.p.ImmediateData {
		imm = min(len(out), c.p.FirstBurstLength, c.maxSend)
		unsol = imm
	}
	if !c.p.InitialR2T {
		unsol = min(len(out), c.p.FirstBurstLength)
	}
	cmd.Final = unsol == imm
	cmd.Encode(&h)
	if imm > 0 {
		c.w.addTask(t, c.newPDU(&h, out[:imm], t))
	} else {
		c.w.add(c.newPDU(&h, nil, nil))
	}
	c.queueDataOut(t, out, uint32(imm), uint32(unsol-imm), wire.ReservedTag)
}

// queueDataOut queues Data-Out PDUs for [off, off+n) of the task's data,
// answering one R2T (ttt) or as unsolicited data (reserved TTT); DataSN
// starts at 0 for each sequence and F marks its last PDU (RFC 7143
// §11.7). t.mu is held.
func (c *conn) queueDataOut(t *task, out []byte, off, n, ttt uint32) {
	end := off + n
	var sn uint32
	for pos := off; pos < end; {
		chunk := min(end-pos, uint32(c.maxSend))
		d := wire.DataOut{
			Final: pos+chunk == end, LUN: t.cmd.LUN, ITT: t.itt, TTT: ttt,
			ExpStatSN: c.expStatSN.Load(), DataSN: sn, BufferOffset: pos,
		}
		var h wire.BHS
		d.Encode(&h)
		c.w.addTask(t, c.newPDU(&h, out[pos:pos+chunk], t))
		pos += chunk
		sn++
	}
}

// readLoop reads and dispatches target PDUs until the connection fails.
func (c *conn) readLoop() {
	defer c.wg.Done()
	var h wire.BHS
	for {
		if err := c.r.ReadHeader(&h); err != nil {
			c.fail(c.connErr("read from", err))
			return
		}
		c.inBatch.Store(true)
		if c.received {
			// The first PDU since a read from the socket: one clock
			// reading per read, not per PDU, is enough for keepalive.
			c.received = false
			c.lastRecv.Store(time.Now().UnixNano())
		}
		if err := c.dispatch(&h); err != nil {
			c.fail(err)
			return
		}
	}
}

// beforeRead runs on the reader before each read from the socket: from
// then on, goroutines issuing commands write them themselves, and what the
// PDUs processed so far made us queue (commands their callers issued next,
// Data-Out, NOP-Out replies) goes out now, in one write.
func (c *conn) beforeRead() {
	c.received = true
	c.inBatch.Store(false)
	c.tryFlush()
}

// ackStatSN records a StatSN: advance is false for PDUs whose StatSN is
// the next one rather than their own (R2T, unsolicited NOP-In, RFC 7143
// §11.8.3, §11.19.3).
func (c *conn) ackStatSN(statSN uint32, advance bool) {
	next := statSN
	if advance {
		next++
	}
	for {
		cur := c.expStatSN.Load()
		if !wire.SerialGreater(next, cur) || c.expStatSN.CompareAndSwap(cur, next) {
			return
		}
	}
}

// window applies a PDU's ExpCmdSN/MaxCmdSN (RFC 7143 §4.2.2.1): only
// newer values count; a MaxCmdSN below ExpCmdSN−1 (the target must never
// send one) or an ExpCmdSN beyond the commands we sent is a protocol error.
func (c *conn) window(exp, max uint32) error {
	s := c.s
	s.mu.Lock()
	err := c.windowLocked(exp, max)
	s.mu.Unlock()
	return err // commands it queued go out before the reader reads again
}

// completeWindow applies the window and finishes the task under one lock:
// the common end of a read or write.
func (c *conn) completeWindow(t *task, res *scsi.Result, terr error, exp, max uint32) error {
	s := c.s
	s.mu.Lock()
	err := c.windowLocked(exp, max)
	if err == nil && t.state == taskSent && t.cn == c {
		// The reader is done with t: Execute may recycle it.
		t.recycle = terr == nil
		s.finish(t, res, terr)
	}
	s.mu.Unlock()
	return err
}

// windowLocked is window with s.mu held. A window that opened lets queued
// commands go: the reader writes them before it reads again (beforeRead).
func (c *conn) windowLocked(exp, max uint32) error {
	s := c.s
	if wire.SerialLess(max, exp-1) {
		return protoErr("MaxCmdSN %d is below ExpCmdSN−1 (%d): the command window went backwards", max, exp-1)
	}
	if wire.SerialGreater(exp, s.cmdSN) {
		return protoErr("ExpCmdSN %d acknowledges commands never sent (next CmdSN %d)", exp, s.cmdSN)
	}
	if wire.SerialGreater(exp, s.expCmdSN) {
		s.expCmdSN = exp
	}
	if wire.SerialGreater(max, s.maxCmdSN) {
		s.maxCmdSN = max
		if s.cn == c {
			s.pump()
		}
	}
	return nil
}

// lookup finds the task an ITT names on this connection.
func (c *conn) lookup(itt uint32, what string) (*task, error) {
	s := c.s
	s.mu.Lock()
	t := s.tasks[itt]
	ok := t != nil && t.cn == c
	s.mu.Unlock()
	if !ok {
		return nil, protoErr("%s for unknown ITT 0x%08x", what, itt)
	}
	return t, nil
}

// readSegment reads a small data segment into the reader's scratch buffer.
func (c *conn) readSegment(h *wire.BHS) ([]byte, error) {
	n := h.DataLen()
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	b := c.scratch[:n]
	if err := c.r.ReadData(h, b); err != nil {
		return nil, c.connErr("read from", err)
	}
	return b, nil
}

func (c *conn) dispatch(h *wire.BHS) error {
	switch op := h.Opcode(); op {
	case wire.OpDataIn:
		return c.onDataIn(h)
	case wire.OpSCSIResponse:
		return c.onResponse(h)
	case wire.OpR2T:
		return c.onR2T(h)
	case wire.OpNOPIn:
		return c.onNOPIn(h)
	case wire.OpAsyncMessage:
		return c.onAsync(h)
	case wire.OpReject:
		return c.onReject(h)
	case wire.OpLogoutResponse:
		return c.onLogoutResponse(h)
	default:
		return protoErr("unexpected %v in full feature phase", op)
	}
}

// onDataIn places read data straight into the caller's buffer (RFC 7143
// §11.7): DataSN and offsets must follow each other (DataPDUInOrder and
// DataSequenceInOrder are Yes) and stay inside the buffer. With the S bit
// the PDU also completes the command (phase collapse).
func (c *conn) onDataIn(h *wire.BHS) error {
	d, _ := wire.DecodeDataIn(h)
	t, err := c.lookup(d.ITT, "Data-In")
	if err != nil {
		return err
	}
	if d.DataLen > 0 && !t.read {
		return protoErr("Data-In with %d bytes for a command that reads nothing (ITT 0x%08x)", d.DataLen, d.ITT)
	}
	if d.DataSN != t.dataSN {
		return protoErr("Data-In DataSN %d, want %d (ITT 0x%08x)", d.DataSN, t.dataSN, d.ITT)
	}
	if d.BufferOffset != t.inOff {
		return protoErr("Data-In at offset %d, want %d (ITT 0x%08x, data must arrive in order)", d.BufferOffset, t.inOff, d.ITT)
	}
	end := uint64(d.BufferOffset) + uint64(d.DataLen)
	if end > uint64(len(t.dataIn)) {
		return protoErr("Data-In of %d bytes at offset %d overruns the %d-byte buffer (ITT 0x%08x)", d.DataLen, d.BufferOffset, len(t.dataIn), d.ITT)
	}
	if d.HasStatus && !d.Final {
		return protoErr("Data-In with status (S) but without F (ITT 0x%08x)", d.ITT)
	}
	t.mu.Lock()
	if t.abandoned {
		err = c.r.DiscardData(h)
	} else {
		err = c.r.ReadData(h, t.dataIn[d.BufferOffset:end])
	}
	t.mu.Unlock()
	if err != nil {
		return c.connErr("read from", err)
	}
	t.dataSN++
	t.inOff = uint32(end)
	t.inBytes += d.DataLen
	if !d.HasStatus {
		return c.window(d.ExpCmdSN, d.MaxCmdSN)
	}
	c.ackStatSN(d.StatSN, true)
	res := &scsi.Result{Status: d.Status, N: t.inBytes, Residual: residual(d.Underflow, d.Overflow, d.Residual)}
	return c.completeWindow(t, res, nil, d.ExpCmdSN, d.MaxCmdSN)
}

func residual(under, over bool, n uint32) int64 {
	switch {
	case under:
		return int64(n)
	case over:
		return -int64(n)
	}
	return 0
}

// complete finishes a task unless its connection was replaced meanwhile.
func (c *conn) complete(t *task, res *scsi.Result, err error) {
	s := c.s
	s.mu.Lock()
	if t.state == taskSent && t.cn == c {
		s.finish(t, res, err)
	}
	s.mu.Unlock()
}

// onResponse completes a command with its SCSI Response (RFC 7143 §11.4):
// status, residuals and sense data (a 2-byte SenseLength, then the sense).
func (c *conn) onResponse(h *wire.BHS) error {
	r, _ := wire.DecodeSCSIResponse(h)
	t, err := c.lookup(r.ITT, "SCSI Response")
	if err != nil {
		return err
	}
	seg, err := c.readSegment(h)
	if err != nil {
		return err
	}
	var sense []byte
	if len(seg) > 0 {
		if len(seg) < 2 {
			return protoErr("SCSI Response data segment of %d byte(s) lacks the SenseLength field", len(seg))
		}
		sl := int(binary.BigEndian.Uint16(seg))
		if sl > len(seg)-2 {
			return protoErr("SenseLength %d exceeds the %d-byte data segment", sl, len(seg)-2)
		}
		if sl > 0 {
			sense = append([]byte(nil), seg[2:2+sl]...)
		}
	}
	c.ackStatSN(r.StatSN, true)
	if r.Response != wire.ResponseCompleted {
		return c.completeWindow(t, nil, fmt.Errorf("iscsi: command 0x%02x: target failure (iSCSI response 0x%02x)", t.cmd.CDB[0], r.Response), r.ExpCmdSN, r.MaxCmdSN)
	}
	res := &scsi.Result{Status: r.Status, Sense: sense, N: t.inBytes, Residual: residual(r.Underflow, r.Overflow, r.Residual)}
	return c.completeWindow(t, res, nil, r.ExpCmdSN, r.MaxCmdSN)
}

// onR2T answers a Ready To Transfer with Data-Out (RFC 7143 §11.8).
func (c *conn) onR2T(h *wire.BHS) error {
	r, _ := wire.DecodeR2T(h)
	if r.DataLen != 0 {
		return protoErr("R2T with a %d-byte data segment", r.DataLen)
	}
	t, err := c.lookup(r.ITT, "R2T")
	if err != nil {
		return err
	}
	switch {
	case !t.write:
		return protoErr("R2T for a command that writes nothing (ITT 0x%08x)", r.ITT)
	case r.R2TSN != t.r2tSN:
		return protoErr("R2TSN %d, want %d (ITT 0x%08x)", r.R2TSN, t.r2tSN, r.ITT)
	case r.DesiredLength == 0 || uint64(r.BufferOffset)+uint64(r.DesiredLength) > uint64(t.edtl):
		return protoErr("R2T for %d bytes at offset %d outside the %d-byte transfer (ITT 0x%08x)", r.DesiredLength, r.BufferOffset, t.edtl, r.ITT)
	case r.DesiredLength > uint32(c.p.MaxBurstLength):
		return protoErr("R2T for %d bytes exceeds MaxBurstLength %d", r.DesiredLength, c.p.MaxBurstLength)
	case r.TTT == wire.ReservedTag:
		return protoErr("R2T with the reserved Target Transfer Tag")
	}
	t.r2tSN++
	if err := c.window(r.ExpCmdSN, r.MaxCmdSN); err != nil {
		return err
	}
	c.ackStatSN(r.StatSN, false)
	t.mu.Lock()
	c.queueDataOut(t, t.out, r.BufferOffset, r.DesiredLength, r.TTT)
	t.mu.Unlock()
	return nil // written before the reader reads again
}

// onNOPIn answers target pings (TTT not reserved) with a NOP-Out echoing
// TTT and data (RFC 7143 §11.19), and clears our own ping when answered.
func (c *conn) onNOPIn(h *wire.BHS) error {
	n, _ := wire.DecodeNOPIn(h)
	seg, err := c.readSegment(h)
	if err != nil {
		return err
	}
	if err := c.window(n.ExpCmdSN, n.MaxCmdSN); err != nil {
		return err
	}
	s := c.s
	switch {
	case n.TTT != wire.ReservedTag:
		if n.ITT != wire.ReservedTag {
			return protoErr("NOP-In with both ITT and TTT set")
		}
		c.ackStatSN(n.StatSN, false)
		echo := append([]byte(nil), seg...)
		s.mu.Lock()
		o := wire.NOPOut{Immediate: true, LUN: n.LUN, ITT: wire.ReservedTag, TTT: n.TTT, CmdSN: s.cmdSN, ExpStatSN: c.expStatSN.Load()}
		s.mu.Unlock()
		var b wire.BHS
		o.Encode(&b)
		c.w.add(c.newPDU(&b, echo, nil)) // written before the reader reads again
	case n.ITT != wire.ReservedTag:
		c.ackStatSN(n.StatSN, true)
		s.mu.Lock()
		ok := c.pingActive && c.pingITT == n.ITT
		if ok {
			c.pingActive = false
		}
		s.mu.Unlock()
		if !ok {
			return protoErr("NOP-In answers ITT 0x%08x, which we never sent", n.ITT)
		}
	default:
		c.ackStatSN(n.StatSN, false)
	}
	return nil
}

// onAsync handles Asynchronous Messages (RFC 7143 §11.9).
func (c *conn) onAsync(h *wire.BHS) error {
	a, _ := wire.DecodeAsyncMessage(h)
	seg, err := c.readSegment(h)
	if err != nil {
		return err
	}
	if err := c.window(a.ExpCmdSN, a.MaxCmdSN); err != nil {
		return err
	}
	c.ackStatSN(a.StatSN, true)
	log := c.s.log
	switch a.Event {
	case wire.AsyncSCSIEvent:
		log.Info("iscsi: target reported a SCSI asynchronous event", "lun", scsi.LUN(a.LUN).String(), "sense", fmt.Sprintf("%x", seg))
	case wire.AsyncLogoutRequest:
		limit := time.Duration(a.Param3) * time.Second
		log.Info("iscsi: target requests logout; finishing outstanding commands, then reconnecting", "within", limit)
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			c.drainAndLogout(limit, "target requested logout")
		}()
	case wire.AsyncDropConnection, wire.AsyncDropAll:
		wait := time.Duration(a.Param2) * time.Second
		log.Info("iscsi: target will drop the connection; reconnecting", "event", a.Event, "time2wait", wait)
		c.s.mu.Lock()
		c.wait = wait
		c.stopping = true
		c.s.mu.Unlock()
		return fmt.Errorf("iscsi: target dropped the connection (async event %d)", a.Event)
	case wire.AsyncRenegotiate:
		log.Info("iscsi: target requests parameter renegotiation; logging in again")
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			c.drainAndLogout(0, "target requested renegotiation")
		}()
	default:
		log.Debug("iscsi: ignoring asynchronous event", "event", a.Event, "vcode", a.VCode)
	}
	return nil
}

// onReject handles a Reject (RFC 7143 §11.17): a rejected command fails;
// a rejected Data-Out, a digest error or anything else breaks the
// connection, and ERL 0 recovery re-issues the commands.
func (c *conn) onReject(h *wire.BHS) error {
	rj, _ := wire.DecodeReject(h)
	seg, err := c.readSegment(h)
	if err != nil {
		return err
	}
	if len(seg) < wire.BHSLen {
		return protoErr("Reject (%s) without the rejected header", wire.RejectReasonString(rj.Reason))
	}
	if err := c.window(rj.ExpCmdSN, rj.MaxCmdSN); err != nil {
		return err
	}
	c.ackStatSN(rj.StatSN, true)
	var bad wire.BHS
	copy(bad[:], seg)
	op, itt := bad.Opcode(), bad.ITT()
	reason := wire.RejectReasonString(rj.Reason)
	c.s.log.Warn("iscsi: target rejected a PDU", "pdu", op.String(), "itt", itt, "reason", reason)
	s := c.s
	switch op {
	case wire.OpSCSICommand:
		s.mu.Lock()
		t := s.tasks[itt]
		s.mu.Unlock()
		if t == nil || rj.Reason == wire.RejectDataDigest {
			break
		}
		c.complete(t, nil, protoErr("target rejected command 0x%02x: %s", t.cmd.CDB[0], reason))
		return nil
	case wire.OpNOPOut:
		s.mu.Lock()
		if c.pingActive && c.pingITT == itt {
			c.pingActive = false
		}
		s.mu.Unlock()
		return nil
	}
	return protoErr("target rejected a %v (%s)", op, reason)
}

func (c *conn) onLogoutResponse(h *wire.BHS) error {
	r, _ := wire.DecodeLogoutResponse(h)
	if h.DataLen() != 0 {
		return protoErr("Logout Response with a data segment")
	}
	s := c.s
	s.mu.Lock()
	ch := c.logoutCh
	ok := ch != nil && r.ITT == c.logoutITT
	if ok {
		c.logoutCh = nil
		if r.Time2Wait > 0 {
			c.wait = time.Duration(r.Time2Wait) * time.Second
		}
	}
	s.mu.Unlock()
	if !ok {
		return protoErr("Logout Response for ITT 0x%08x, which we never sent", r.ITT)
	}
	c.ackStatSN(r.StatSN, true)
	ch <- r
	return nil
}

// logout sends a Logout Request and waits for the response.
func (c *conn) logout(ctx context.Context, reason uint8) (wire.LogoutResponse, error) {
	s := c.s
	s.mu.Lock()
	itt := s.allocITT()
	ch := make(chan wire.LogoutResponse, 1)
	c.logoutITT, c.logoutCh = itt, ch
	c.stopping, c.draining = true, true
	req := wire.LogoutRequest{Immediate: true, Reason: reason, ITT: itt, CmdSN: s.cmdSN, ExpStatSN: c.expStatSN.Load()}
	s.mu.Unlock()
	var h wire.BHS
	req.Encode(&h)
	c.w.add(c.newPDU(&h, nil, nil))
	c.flush()
	select {
	case r := <-ch:
		return r, nil
	case <-c.failed:
		// The target closes the connection right after its response: the
		// reader may have delivered it just before failing.
		select {
		case r := <-ch:
			return r, nil
		default:
		}
		return wire.LogoutResponse{}, fmt.Errorf("connection failed before the Logout Response: %w", c.err)
	case <-ctx.Done():
		return wire.LogoutResponse{}, fmt.Errorf("no Logout Response: %w", ctx.Err())
	}
}

// drainAndLogout answers a target's request to log out (or to
// renegotiate): stop sending, let the commands in flight finish within
// limit, log out, and let recovery log in again.
func (c *conn) drainAndLogout(limit time.Duration, why string) {
	s := c.s
	s.mu.Lock()
	c.draining = true
	s.mu.Unlock()
	if limit <= 0 {
		limit = DefaultLoginTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	go func() {
		select {
		case <-c.failed:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = s.waitFor(ctx, func() bool {
		for _, t := range s.tasks {
			if t.cn == c {
				return false
			}
		}
		return true
	})
	lctx, lcancel := context.WithTimeout(s.ctx, s.cfg.LoginTimeout)
	defer lcancel()
	if _, err := c.logout(lctx, wire.LogoutCloseSession); err != nil {
		s.log.Warn("iscsi: logout requested by the target failed", "err", err)
	}
	c.fail(fmt.Errorf("iscsi: %s", why))
}

// keepalive pings an idle connection with NOP-Out (RFC 7143 §11.18) and
// declares it dead when a ping stays unanswered for three intervals.
func (c *conn) keepalive() {
	defer c.wg.Done()
	ka := c.s.cfg.KeepAlive
	if ka <= 0 {
		return
	}
	tk := time.NewTicker(ka / 2)
	defer tk.Stop()
	s := c.s
	for {
		select {
		case <-c.failed:
			return
		case <-tk.C:
		}
		now := time.Now()
		s.mu.Lock()
		if c.pingActive {
			if now.Sub(c.pingSent) >= 3*ka {
				s.mu.Unlock()
				c.fail(fmt.Errorf("iscsi: connection to %s dead: no answer to a NOP-Out ping for %v", c.portal, 3*ka))
				return
			}
			s.mu.Unlock()
			continue
		}
		if now.Sub(time.Unix(0, c.lastRecv.Load())) < ka || c.stopping {
			s.mu.Unlock()
			continue
		}
		itt := s.allocITT()
		c.pingActive, c.pingITT, c.pingSent = true, itt, now
		o := wire.NOPOut{Immediate: true, ITT: itt, TTT: wire.ReservedTag, CmdSN: s.cmdSN, ExpStatSN: c.expStatSN.Load()}
		s.mu.Unlock()
		var h wire.BHS
		o.Encode(&h)
		c.w.add(c.newPDU(&h, nil, nil))
		// Never write here: a stalled socket must not stop the
		// dead-connection check.
		c.w.wake()
	}
}
