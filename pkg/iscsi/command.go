package iscsi

import (
	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

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
