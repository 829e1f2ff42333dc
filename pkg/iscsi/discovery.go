package iscsi

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// SendTargets limits: total text of one answer and the number of
// continuation rounds.
const (
	maxSendTargetsText   = 1 << 20
	maxSendTargetsRounds = 1024
)

// Discover opens a discovery session on cfg.Portal (cfg.TargetName is
// ignored), asks SendTargets=All (RFC 7143 §12.3, appendix C), following
// continuations, logs out and returns the targets with their portals.
func Discover(ctx context.Context, cfg Config) ([]Target, error) {
	cfg.TargetName = ""
	cfg, params, err := cfg.normalize(true)
	if err != nil {
		return nil, err
	}
	in := &loginInput{cfg: &cfg, params: params, cmdSN: 1, discovery: true, portal: cfg.Portal}
	nc, res, portal, _, err := loginWithFallback(ctx, in, nil)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.LoginTimeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	res.rd.HeaderDigest, res.rd.DataDigest, res.rd.MaxData = res.hd, res.dd, params.MaxRecvDataSegmentLength
	d := &textConn{nc: nc, r: res.rd,
		hd: res.hd, dd: res.dd, cmdSN: in.cmdSN, expStatSN: res.expStatSN}
	text, err := d.sendTargets()
	if err != nil {
		return nil, fmt.Errorf("iscsi: discovery on %s: %w", portal, err)
	}
	targets, err := parseSendTargets(text)
	if err != nil {
		return nil, fmt.Errorf("iscsi: discovery on %s: %w", portal, err)
	}
	// A target listed without an address is reachable where we asked.
	if host, port, err := splitPortal(portal); err == nil {
		for i := range targets {
			if len(targets[i].Addresses) == 0 {
				targets[i].Addresses = []TargetAddress{{Host: host, Port: port, TPGT: res.tpgt}}
			}
		}
	}
	if err := d.logout(); err != nil {
		cfg.Logger.Debug("iscsi: discovery logout", "err", err)
	}
	return targets, nil
}

// textConn runs the discovery session's requests synchronously.
type textConn struct {
	nc               net.Conn
	r                *wire.Reader
	hd, dd           bool
	cmdSN, expStatSN uint32
	itt              uint32
	out              []byte
}

func (d *textConn) write(h *wire.BHS, data []byte) error {
	d.out = wire.AppendPDU(d.out[:0], h, data, d.hd, d.dd)
	_, err := d.nc.Write(d.out)
	return err
}

// next reads PDUs until one with opcode want, answering pings on the way.
func (d *textConn) next(want wire.Opcode) (*wire.BHS, []byte, error) {
	for {
		var h wire.BHS
		if err := d.r.ReadHeader(&h); err != nil {
			return nil, nil, wrapFraming(err)
		}
		data := make([]byte, h.DataLen())
		if err := d.r.ReadData(&h, data); err != nil {
			return nil, nil, wrapFraming(err)
		}
		switch op := h.Opcode(); op {
		case want:
			return &h, data, nil
		case wire.OpNOPIn:
			n, _ := wire.DecodeNOPIn(&h)
			if n.TTT != wire.ReservedTag {
				o := wire.NOPOut{Immediate: true, LUN: n.LUN, ITT: wire.ReservedTag, TTT: n.TTT, CmdSN: d.cmdSN, ExpStatSN: d.expStatSN}
				var b wire.BHS
				o.Encode(&b)
				if err := d.write(&b, data); err != nil {
					return nil, nil, err
				}
			}
		case wire.OpAsyncMessage:
			// Nothing to do in a discovery session; the next read fails if
			// the target drops the connection.
		case wire.OpReject:
			rj, _ := wire.DecodeReject(&h)
			return nil, nil, protoErr("target rejected our request (%s)", wire.RejectReasonString(rj.Reason))
		default:
			return nil, nil, protoErr("unexpected %v in a discovery session", op)
		}
	}
}

func wrapFraming(err error) error {
	return fmt.Errorf("%w: %w", ErrProtocol, err)
}

// sendTargets asks SendTargets=All and collects the answer, sending an empty
// Text Request with the target's TTT for as long as it has more to say (C
// bit, or F clear).
func (d *textConn) sendTargets() ([]byte, error) {
	d.itt++
	payload := wire.AppendText(nil, wire.KV{Key: "SendTargets", Value: "All"})
	ttt := uint32(wire.ReservedTag)
	var text []byte
	for round := 0; ; round++ {
		if round >= maxSendTargetsRounds {
			return nil, protoErr("SendTargets answer did not end after %d continuations", round)
		}
		req := wire.TextRequest{Immediate: true, Final: true, ITT: d.itt, TTT: ttt, CmdSN: d.cmdSN, ExpStatSN: d.expStatSN}
		var h wire.BHS
		req.Encode(&h)
		if err := d.write(&h, payload); err != nil {
			return nil, err
		}
		payload = nil
		rh, data, err := d.next(wire.OpTextResponse)
		if err != nil {
			return nil, err
		}
		rsp, _ := wire.DecodeTextResponse(rh)
		if rsp.ITT != d.itt {
			return nil, protoErr("Text Response for ITT 0x%08x, we sent 0x%08x", rsp.ITT, d.itt)
		}
		d.expStatSN = rsp.StatSN + 1
		if len(text)+len(data) > maxSendTargetsText {
			return nil, protoErr("SendTargets answer longer than %d bytes", maxSendTargetsText)
		}
		text = append(text, data...)
		if rsp.Final && rsp.Continue {
			return nil, protoErr("Text Response with both F and C set")
		}
		if rsp.Final {
			return text, nil
		}
		if rsp.TTT == wire.ReservedTag {
			return nil, protoErr("Text Response to be continued without a Target Transfer Tag")
		}
		ttt = rsp.TTT
	}
}

// logout closes the discovery session politely.
func (d *textConn) logout() error {
	d.itt++
	req := wire.LogoutRequest{Immediate: true, Reason: wire.LogoutCloseSession, ITT: d.itt, CmdSN: d.cmdSN, ExpStatSN: d.expStatSN}
	var h wire.BHS
	req.Encode(&h)
	if err := d.write(&h, nil); err != nil {
		return err
	}
	_, _, err := d.next(wire.OpLogoutResponse)
	return err
}

// parseSendTargets turns a SendTargets answer into targets: each
// TargetName starts a target, the TargetAddress keys after it are its
// portals (RFC 7143 appendix C). Unknown keys are ignored.
func parseSendTargets(text []byte) ([]Target, error) {
	kvs, err := wire.ParseText(text, maxSendTargetsText/4)
	if err != nil {
		return nil, fmt.Errorf("%w: SendTargets answer: %w", ErrProtocol, err)
	}
	var targets []Target
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetName":
			if kv.Value == "" {
				return nil, protoErr("SendTargets answer has an empty TargetName")
			}
			targets = append(targets, Target{Name: kv.Value})
		case "TargetAddress":
			if len(targets) == 0 {
				return nil, protoErr("SendTargets answer has TargetAddress %q before any TargetName", kv.Value)
			}
			a, err := parseTargetAddress(kv.Value)
			if err != nil {
				return nil, protoErr("SendTargets: %v", err)
			}
			t := &targets[len(targets)-1]
			t.Addresses = append(t.Addresses, a)
		}
	}
	return targets, nil
}
