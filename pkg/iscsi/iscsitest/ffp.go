package iscsitest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

type tcmd struct {
	hdr         wire.BHS
	itt, cmdSN  uint32
	lun         [8]byte
	cdb         []byte
	read, write bool
	edtl        uint32
	buf         []byte
	got         uint32 // unsolicited bytes, contiguous from 0
	unsolDone   bool
	unsolSN     uint32
	next        uint32 // next offset to solicit
	r2tSN       uint32
	outstanding int
}

type r2t struct {
	cmd              *tcmd
	off, length, got uint32
	dataSN           uint32
}

// updateMaxLocked recomputes MaxCmdSN: the initiator may have Window
// commands outstanding; MaxCmdSN never goes back, and stays put while the
// window is closed (RFC 7143 §4.2.2.1). c.mu is held.
func (c *Conn) updateMaxLocked() {
	if c.paused || c.window == 0 || c.window < c.inflight {
		return
	}
	m := c.expCmdSN - 1 + uint32(c.window-c.inflight)
	if wire.SerialGreater(m, c.maxCmdSN) {
		c.maxCmdSN = m
	}
}

func (c *Conn) setWindow(n int) {
	c.mu.Lock()
	c.window = n
	c.paused = n == 0
	c.updateMaxLocked()
	c.mu.Unlock()
	if n > 0 {
		// Announce the new MaxCmdSN (unsolicited NOP-In, no ping).
		h := wire.BHS{}
		(&wire.NOPIn{ITT: wire.ReservedTag, TTT: wire.ReservedTag}).Encode(&h)
		c.send(&h, nil, statPeek, corruptNone)
	}
}

func (c *Conn) sendAsync(event uint8, p1, p2, p3 uint16) {
	var h wire.BHS
	(&wire.AsyncMessage{Event: event, Param1: p1, Param2: p2, Param3: p3}).Encode(&h)
	c.send(&h, nil, statAdvance, corruptNone)
	if event == wire.AsyncDropConnection || event == wire.AsyncDropAll {
		time.AfterFunc(50*time.Millisecond, c.Close)
	}
}

func (c *Conn) ping() {
	c.mu.Lock()
	c.nextTTT++
	ttt := c.nextTTT
	data := []byte("iscsitest-ping")
	c.pings[ttt] = data
	c.mu.Unlock()
	var h wire.BHS
	(&wire.NOPIn{ITT: wire.ReservedTag, TTT: ttt}).Encode(&h)
	c.t.count(func(s *Stats) { s.PingsSent++ })
	c.send(&h, data, statPeek, corruptNone)
}

// serveFFP is the full feature phase of a normal session.
func (c *Conn) serveFFP() {
	t := c.t
	c.mu.Lock()
	c.hd, c.dd = c.negHD, c.negDD
	c.r.MaxData = t.opts.MaxRecvDataSegmentLength
	c.r.HeaderDigest, c.r.DataDigest = c.hd, c.dd
	c.mu.Unlock()
	if iv := t.opts.NOPInterval; iv > 0 {
		go func() {
			tk := time.NewTicker(iv)
			defer tk.Stop()
			for {
				select {
				case <-c.done:
					return
				case <-tk.C:
					c.ping()
				}
			}
		}()
	}
	for {
		var h wire.BHS
		if err := c.r.ReadHeader(&h); err != nil {
			c.readFailed(err)
			return
		}
		if c.frozen.Load() {
			<-c.done
			return
		}
		var err error
		switch op := h.Opcode(); op {
		case wire.OpSCSICommand:
			err = c.onCommand(&h)
		case wire.OpDataOut:
			err = c.onDataOut(&h)
		case wire.OpNOPOut:
			err = c.onNOPOut(&h)
		case wire.OpLogout:
			c.onLogout(&h)
			return
		case wire.OpTaskMgmt:
			tm, _ := wire.DecodeTaskMgmtRequest(&h)
			var rh wire.BHS
			(&wire.TaskMgmtResponse{Response: 0, ITT: tm.ITT}).Encode(&rh)
			err = c.send(&rh, nil, statAdvance, corruptNone)
		default:
			t.violation("unexpected %v in full feature phase", op)
			err = c.reject(&h, wire.RejectProtocolError)
		}
		if err != nil {
			c.t.log.Debug("iscsitest: connection ends", "err", err)
			return
		}
	}
}

func (c *Conn) readFailed(err error) {
	select {
	case <-c.done:
		return
	default:
	}
	if errors.Is(err, wire.ErrHeaderDigest) || errors.Is(err, wire.ErrDataDigest) || errors.Is(err, wire.ErrDataTooLong) {
		c.t.violation("%v", err)
	}
}

func (c *Conn) reject(bad *wire.BHS, reason uint8) error {
	var h wire.BHS
	(&wire.Reject{Reason: reason}).Encode(&h)
	return c.send(&h, bad[:], statAdvance, corruptNone)
}

// onCommand receives a SCSI Command: window checks, immediate data, then
// unsolicited Data-Out or R2Ts until the data is complete.
func (c *Conn) onCommand(h *wire.BHS) error {
	t := c.t
	cmd, _ := wire.DecodeSCSICommand(h)
	tc := &tcmd{hdr: *h, itt: cmd.ITT, cmdSN: cmd.CmdSN, lun: cmd.LUN, read: cmd.Read, write: cmd.Write, edtl: cmd.ExpectedDataTransferLength}
	tc.cdb = append([]byte(nil), cmd.CDB[:]...)
	c.mu.Lock()
	if !cmd.Immediate {
		if cmd.CmdSN != c.expCmdSN {
			t.violation("CmdSN %d, expected %d", cmd.CmdSN, c.expCmdSN)
		}
		if !wire.SerialLessEq(cmd.CmdSN, c.maxCmdSN) {
			t.violation("CmdSN %d beyond MaxCmdSN %d (window not honoured)", cmd.CmdSN, c.maxCmdSN)
		}
		c.expCmdSN = cmd.CmdSN + 1
	}
	if _, dup := c.cmds[cmd.ITT]; dup {
		t.violation("ITT 0x%08x reused while outstanding", cmd.ITT)
	}
	c.inflight++
	c.cmds[cmd.ITT] = tc
	inflight := c.inflight
	immediate, first, initialR2T := c.immediate, c.first, c.initialR2T
	c.mu.Unlock()
	t.count(func(s *Stats) { s.MaxInFlight = max(s.MaxInFlight, inflight) })
	if tc.write {
		tc.buf = make([]byte, tc.edtl)
	}
	if n := cmd.DataLen; n > 0 {
		if !tc.write {
			t.violation("immediate data on a command without W")
			return c.r.DiscardData(h)
		}
		if !immediate {
			t.violation("immediate data with ImmediateData=No")
		}
		if n > first || uint32(n) > tc.edtl {
			t.violation("immediate data of %d bytes beyond FirstBurstLength %d / EDTL %d", n, first, tc.edtl)
			return c.r.DiscardData(h)
		}
		if err := c.r.ReadData(h, tc.buf[:n]); err != nil {
			return err
		}
		tc.got = uint32(n)
		t.count(func(s *Stats) { s.ImmediateBytes += n })
	}
	if !cmd.Final {
		if initialR2T {
			t.violation("unsolicited Data-Out announced with InitialR2T=Yes")
		}
		return nil // unsolicited Data-Out follows
	}
	tc.unsolDone = true
	return c.solicit(tc)
}

// solicit sends R2Ts up to MaxOutstandingR2T, or runs the command once its
// data is complete.
func (c *Conn) solicit(tc *tcmd) error {
	if !tc.write || tc.next == 0 && tc.got >= tc.edtl {
		if tc.outstanding == 0 {
			c.run(tc)
		}
		return nil
	}
	if tc.next < tc.got {
		tc.next = tc.got
	}
	for tc.outstanding < c.maxR2T && tc.next < tc.edtl {
		n := min(uint32(c.burst), tc.edtl-tc.next)
		c.mu.Lock()
		c.nextTTT++
		ttt := c.nextTTT
		c.ttts[ttt] = &r2t{cmd: tc, off: tc.next, length: n}
		c.mu.Unlock()
		var h wire.BHS
		(&wire.R2T{LUN: tc.lun, ITT: tc.itt, TTT: ttt, R2TSN: tc.r2tSN, BufferOffset: tc.next, DesiredLength: n}).Encode(&h)
		tc.r2tSN++
		tc.next += n
		tc.outstanding++
		c.t.count(func(s *Stats) { s.R2Ts++ })
		if err := c.send(&h, nil, statPeek, corruptNone); err != nil {
			return err
		}
	}
	if tc.next >= tc.edtl && tc.outstanding == 0 {
		c.run(tc)
	}
	return nil
}

func (c *Conn) onDataOut(h *wire.BHS) error {
	t := c.t
	d, _ := wire.DecodeDataOut(h)
	t.count(func(s *Stats) { s.DataOutPDUs++ })
	c.mu.Lock()
	tc := c.cmds[d.ITT]
	var rt *r2t
	if d.TTT != wire.ReservedTag {
		rt = c.ttts[d.TTT]
	}
	c.mu.Unlock()
	if tc == nil || !tc.write {
		t.violation("Data-Out for unknown or non-write ITT 0x%08x", d.ITT)
		return c.r.DiscardData(h)
	}
	end := uint64(d.BufferOffset) + uint64(d.DataLen)
	if end > uint64(tc.edtl) {
		t.violation("Data-Out beyond EDTL")
		return c.r.DiscardData(h)
	}
	if d.TTT == wire.ReservedTag {
		if tc.unsolDone {
			t.violation("unsolicited Data-Out after the first burst ended")
			return c.r.DiscardData(h)
		}
		if d.BufferOffset != tc.got || d.DataSN != tc.unsolSN {
			t.violation("unsolicited Data-Out offset %d DataSN %d, want %d, %d", d.BufferOffset, d.DataSN, tc.got, tc.unsolSN)
		}
		if end > uint64(c.first) {
			t.violation("unsolicited data beyond FirstBurstLength %d", c.first)
		}
		if err := c.r.ReadData(h, tc.buf[d.BufferOffset:end]); err != nil {
			return err
		}
		tc.got = uint32(end)
		tc.unsolSN++
		t.count(func(s *Stats) { s.UnsolicitedBytes += d.DataLen })
		if d.Final {
			tc.unsolDone = true
			return c.solicit(tc)
		}
		return nil
	}
	if rt == nil || rt.cmd != tc {
		t.violation("Data-Out with unknown TTT 0x%08x", d.TTT)
		return c.r.DiscardData(h)
	}
	if d.BufferOffset != rt.off+rt.got || d.DataSN != rt.dataSN || end > uint64(rt.off+rt.length) {
		t.violation("solicited Data-Out offset %d DataSN %d len %d, want offset %d DataSN %d within %d", d.BufferOffset, d.DataSN, d.DataLen, rt.off+rt.got, rt.dataSN, rt.length)
		return c.r.DiscardData(h)
	}
	if err := c.r.ReadData(h, tc.buf[d.BufferOffset:end]); err != nil {
		return err
	}
	rt.got += uint32(d.DataLen)
	rt.dataSN++
	t.count(func(s *Stats) { s.SolicitedBytes += d.DataLen })
	if d.Final {
		if rt.got != rt.length {
			t.violation("Data-Out sequence ended after %d of %d bytes", rt.got, rt.length)
		}
		c.mu.Lock()
		delete(c.ttts, d.TTT)
		c.mu.Unlock()
		tc.outstanding--
		return c.solicit(tc)
	}
	return nil
}

// run executes a command whose data is complete and answers it, after the
// configured delay, on its own goroutine so that commands overlap.
func (c *Conn) run(tc *tcmd) {
	t := c.t
	t.mu.Lock()
	t.cmdSeq++
	seq := t.cmdSeq
	t.stats.Commands++
	t.mu.Unlock()
	fault := FaultNone
	if hook := t.opts.Hooks.Command; hook != nil {
		fault = hook(&Command{Conn: c, LUN: tc.lun, CDB: tc.cdb, ITT: tc.itt, CmdSN: tc.cmdSN, Seq: seq})
	}
	answer := func() {
		if d := t.opts.CommandDelay; d > 0 {
			select {
			case <-time.After(d):
			case <-c.done:
				return
			}
		}
		c.answer(tc, fault)
	}
	if t.opts.CommandDelay > 0 {
		go answer()
	} else {
		answer()
	}
}

func (c *Conn) answer(tc *tcmd, fault Fault) {
	t := c.t
	if fault == FaultDrop {
		c.Close()
		return
	}
	res := t.execute(tc.lun, tc.cdb, tc.buf)
	if t.opts.UnitAttention && c.sess != nil {
		switch tc.cdb[0] {
		case 0x12, 0xa0, 0x03:
		default:
			if id, ok := lunID(tc.lun); ok && t.luns[id] != nil {
				c.mu.Lock()
				first := !c.sess.uaDone[id]
				c.sess.uaDone[id] = true
				c.mu.Unlock()
				if first {
					res = check(sensePowerOn)
				}
			}
		}
	}
	c.mu.Lock()
	delete(c.cmds, tc.itt)
	c.inflight--
	c.updateMaxLocked()
	c.mu.Unlock()
	if fault == FaultSkip {
		return
	}
	if fault == FaultReject {
		c.reject(&tc.hdr, wire.RejectNotSupported)
		return
	}
	bad := corruptNone
	if fault == FaultHeaderDigest {
		bad = corruptHeader
	}
	var under, over bool
	var resid uint32
	if tc.read {
		n := uint32(len(res.data))
		switch {
		case n < tc.edtl:
			under, resid = true, tc.edtl-n
		case n > tc.edtl:
			over, resid = true, n-tc.edtl
			res.data = res.data[:tc.edtl]
		}
	}
	if res.status == statusGood && tc.read && len(res.data) > 0 {
		seg := c.initMRDSL
		if t.opts.DataInSegment > 0 {
			seg = min(seg, t.opts.DataInSegment)
		}
		collapse := !t.opts.NoPhaseCollapse
		if fault == FaultDropMidData {
			// Half of the data, then the connection goes.
			half := max(len(res.data)/2, 1)
			d := wire.DataIn{LUN: tc.lun, ITT: tc.itt, TTT: wire.ReservedTag}
			var h wire.BHS
			d.Encode(&h)
			c.send(&h, res.data[:min(half, seg)], statNone, corruptNone)
			c.Close()
			return
		}
		var sn uint32
		for off := 0; off < len(res.data); {
			n := min(seg, len(res.data)-off)
			last := off+n == len(res.data)
			d := wire.DataIn{Final: last, LUN: tc.lun, ITT: tc.itt, TTT: wire.ReservedTag, DataSN: sn, BufferOffset: uint32(off)}
			mode := statNone
			if last && collapse {
				d.HasStatus, d.Status = true, res.status
				d.Underflow, d.Overflow, d.Residual = under, over, resid
				mode = statAdvance
			}
			var h wire.BHS
			d.Encode(&h)
			b := bad
			if fault == FaultDataDigest && sn == 0 {
				b = corruptData
			}
			if err := c.send(&h, res.data[off:off+n], mode, b); err != nil {
				return
			}
			bad = corruptNone
			t.count(func(s *Stats) { s.DataInPDUs++ })
			off += n
			sn++
		}
		if collapse {
			return
		}
		r := wire.SCSIResponse{Status: res.status, ITT: tc.itt, ExpDataSN: sn, Underflow: under, Overflow: over, Residual: resid}
		var h wire.BHS
		r.Encode(&h)
		c.send(&h, nil, statAdvance, bad)
		return
	}
	if fault == FaultDropMidData {
		c.Close()
		return
	}
	r := wire.SCSIResponse{Status: res.status, ITT: tc.itt}
	if tc.read {
		r.Underflow, r.Residual = true, tc.edtl
	}
	var data []byte
	if len(res.sense) > 0 {
		data = make([]byte, 2+len(res.sense))
		binary.BigEndian.PutUint16(data, uint16(len(res.sense)))
		copy(data[2:], res.sense)
	}
	var h wire.BHS
	r.Encode(&h)
	c.send(&h, data, statAdvance, bad)
}

func (c *Conn) onNOPOut(h *wire.BHS) error {
	t := c.t
	n, _ := wire.DecodeNOPOut(h)
	data := make([]byte, n.DataLen)
	if err := c.r.ReadData(h, data); err != nil {
		return err
	}
	if !n.Immediate {
		c.mu.Lock()
		c.expCmdSN++
		c.mu.Unlock()
	}
	if n.ITT != wire.ReservedTag {
		t.count(func(s *Stats) { s.InitiatorPings++ })
		var rh wire.BHS
		(&wire.NOPIn{LUN: n.LUN, ITT: n.ITT, TTT: wire.ReservedTag}).Encode(&rh)
		return c.send(&rh, data, statAdvance, corruptNone)
	}
	c.mu.Lock()
	want, ok := c.pings[n.TTT]
	delete(c.pings, n.TTT)
	c.mu.Unlock()
	if !ok || !bytes.Equal(want, data) {
		t.violation("NOP-Out answers unknown ping TTT 0x%08x or changes its data", n.TTT)
		return nil
	}
	t.count(func(s *Stats) { s.PingsAnswered++ })
	return nil
}

func (c *Conn) onLogout(h *wire.BHS) {
	t := c.t
	l, _ := wire.DecodeLogoutRequest(h)
	c.r.DiscardData(h)
	t.mu.Lock()
	if c.discovery {
		t.stats.DiscoveryLogouts++
	} else {
		t.stats.Logouts++
	}
	if c.sess != nil && t.sessions[c.sess.key] == c.sess {
		delete(t.sessions, c.sess.key)
	}
	t.mu.Unlock()
	var rh wire.BHS
	(&wire.LogoutResponse{ITT: l.ITT, Time2Wait: uint16(t.opts.DefaultTime2Wait)}).Encode(&rh)
	c.send(&rh, nil, statAdvance, corruptNone)
}
