package iscsi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// TestHostileTarget answers the first command of a session with a PDU that
// breaks RFC 7143. The initiator must name the violation, drop the
// connection, recover (ERL 0) and complete the re-issued command.
func TestHostileTarget(t *testing.T) {
	type pdu struct {
		h    wire.BHS
		data []byte
	}
	enc := func(e interface{ Encode(*wire.BHS) }, data []byte) pdu {
		var p pdu
		e.Encode(&p.h)
		p.h.SetDataLen(len(data))
		p.data = data
		return p
	}
	tests := []struct {
		name  string
		write bool
		build func(c *iscsitest.Command, exp, max uint32) pdu
		want  string
	}{
		{"Data-In for unknown ITT", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.DataIn{ITT: c.ITT + 1000, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 512))
		}, "unknown ITT"},
		{"Data-In wrong DataSN", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.DataIn{ITT: c.ITT, DataSN: 5, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 512))
		}, "DataSN 5"},
		{"Data-In offset gap", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.DataIn{ITT: c.ITT, BufferOffset: 512, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 512))
		}, "offset 512"},
		{"Data-In beyond the buffer", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.DataIn{ITT: c.ITT, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 8192))
		}, "overruns"},
		{"Data-In with S but not F", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.DataIn{ITT: c.ITT, HasStatus: true, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 4096))
		}, "without F"},
		{"giant DataSegmentLength", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			p := enc(&wire.DataIn{ITT: c.ITT, ExpCmdSN: exp, MaxCmdSN: max}, nil)
			p.h.SetDataLen(wire.MaxDataSegment)
			return p
		}, "MaxRecvDataSegmentLength"},
		{"window going backwards", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.NOPIn{ITT: wire.ReservedTag, TTT: wire.ReservedTag, ExpCmdSN: exp, MaxCmdSN: exp - 5}, nil)
		}, "went backwards"},
		{"ExpCmdSN ahead of what was sent", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.NOPIn{ITT: wire.ReservedTag, TTT: wire.ReservedTag, ExpCmdSN: exp + 100, MaxCmdSN: exp + 200}, nil)
		}, "never sent"},
		{"R2T for a read", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.R2T{ITT: c.ITT, TTT: 9, DesiredLength: 512, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "writes nothing"},
		{"R2T beyond the transfer", true, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.R2T{ITT: c.ITT, TTT: 9, BufferOffset: 1 << 20, DesiredLength: 512, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "outside"},
		{"R2T wrong R2TSN", true, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.R2T{ITT: c.ITT, TTT: 9, R2TSN: 3, DesiredLength: 512, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "R2TSN 3"},
		{"R2T with data", true, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.R2T{ITT: c.ITT, TTT: 9, DesiredLength: 512, ExpCmdSN: exp, MaxCmdSN: max}, make([]byte, 4))
		}, "data segment"},
		{"sense length beyond the segment", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.SCSIResponse{ITT: c.ITT, Status: 2, ExpCmdSN: exp, MaxCmdSN: max}, []byte{0, 16, 0x70, 0})
		}, "SenseLength 16"},
		{"SCSI Response for unknown ITT", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.SCSIResponse{ITT: 77, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "unknown ITT"},
		{"Login Response in full feature phase", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.LoginResponse{ITT: c.ITT, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "unexpected Login Response"},
		{"NOP-In answering a ping never sent", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.NOPIn{ITT: 0x12345, TTT: wire.ReservedTag, ExpCmdSN: exp, MaxCmdSN: max}, nil)
		}, "never sent"},
		{"Reject without the rejected header", false, func(c *iscsitest.Command, exp, max uint32) pdu {
			return enc(&wire.Reject{Reason: wire.RejectProtocolError, ExpCmdSN: exp, MaxCmdSN: max}, []byte{1, 2, 3, 4})
		}, "without the rejected header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, forever := range []bool{false, true} {
				hook := func(c *iscsitest.Command) iscsitest.Fault {
					if !forever && c.Seq != 1 {
						return iscsitest.FaultNone
					}
					_, exp, max := c.Conn.Seq()
					p := tt.build(c, exp, max)
					raw := p.h[:] // a hostile length stays as built
					if p.data != nil {
						raw = wire.AppendPDU(nil, &p.h, p.data, false, false)
					}
					c.Conn.WriteRaw(raw)
					return iscsitest.FaultSkip
				}
				tg := startTarget(t, iscsitest.Options{Hooks: iscsitest.Hooks{Command: hook}})
				cfg := config(t, tg)
				fastRecovery(&cfg)
				cfg.RecoveryTimeout = time.Second
				// The boot path's limit: an always-hostile answer
				// surfaces after one re-issue. (With 0 it would end
				// as ErrRecoveryTimeout; TestReissueUnlimited.)
				cfg.MaxReissues = 1
				log, logs := newLog(t)
				cfg.Logger = log
				s := mustLogin(t, cfg)
				cmd := &scsi.Command{CDB: read10(0, 8), DataIn: make([]byte, 4096)}
				if tt.write {
					cmd = &scsi.Command{CDB: write10(0, 8), DataOut: randBytes(4096)}
				}
				res, err := s.Execute(tctx(t), cmd)
				if forever {
					// Lost on the first connection, re-issued once,
					// lost again: it is not sent a third time.
					if !errors.Is(err, ErrReissueFailed) || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
						t.Errorf("always hostile: Execute = %v, want ErrReissueFailed wrapping ErrProtocol and %q", err, tt.want)
					}
				} else {
					if err != nil || res.Status != 0 {
						t.Errorf("Execute = %+v, %v; want success after recovery", res, err)
					}
					if s.Info().Reconnects != 1 {
						t.Errorf("reconnects = %d, want 1", s.Info().Reconnects)
					}
					out := logs.String()
					if !strings.Contains(out, "protocol error") || !strings.Contains(out, tt.want) {
						t.Errorf("logs do not name the violation %q", tt.want)
					}
				}
				s.Close()
				tg.Close()
			}
		})
	}
}
