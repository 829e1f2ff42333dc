package iscsi

import (
	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

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
