package iscsi

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

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
