package iscsitest

import (
	"fmt"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// serveDiscovery answers SendTargets (RFC 7143 appendix C) and Logout.
func (c *Conn) serveDiscovery() {
	t := c.t
	c.mu.Lock()
	c.hd, c.dd = c.negHD, c.negDD
	c.r.MaxData = t.opts.MaxRecvDataSegmentLength
	c.r.HeaderDigest, c.r.DataDigest = c.hd, c.dd
	c.mu.Unlock()
	var pending []byte
	var pendingTTT uint32
	for {
		var h wire.BHS
		if err := c.r.ReadHeader(&h); err != nil {
			c.readFailed(err)
			return
		}
		switch h.Opcode() {
		case wire.OpText:
			req, _ := wire.DecodeTextRequest(&h)
			data := make([]byte, req.DataLen)
			if err := c.r.ReadData(&h, data); err != nil {
				return
			}
			if req.TTT == wire.ReservedTag {
				kvs, err := wire.ParseText(data, 16)
				if err != nil || len(kvs) != 1 || kvs[0].Key != "SendTargets" {
					t.violation("discovery text request %q", data)
					pending = nil
				} else {
					pending = c.sendTargets(kvs[0].Value)
				}
			} else if req.TTT != pendingTTT {
				t.violation("text continuation with TTT 0x%08x, want 0x%08x", req.TTT, pendingTTT)
			}
			part := pending
			rsp := wire.TextResponse{Final: true, ITT: req.ITT, TTT: wire.ReservedTag}
			if s := t.opts.TextSplit; s > 0 && len(pending) > s {
				part = pending[:s]
				c.mu.Lock()
				c.nextTTT++
				pendingTTT = c.nextTTT
				c.mu.Unlock()
				rsp = wire.TextResponse{Continue: true, ITT: req.ITT, TTT: pendingTTT}
			}
			pending = pending[len(part):]
			var rh wire.BHS
			rsp.Encode(&rh)
			if err := c.send(&rh, part, statAdvance, corruptNone); err != nil {
				return
			}
		case wire.OpLogout:
			c.onLogout(&h)
			return
		case wire.OpNOPOut:
			if c.onNOPOut(&h) != nil {
				return
			}
		default:
			t.violation("%v in a discovery session", h.Opcode())
			c.reject(&h, wire.RejectProtocolError)
			return
		}
	}
}

func (c *Conn) sendTargets(which string) []byte {
	t := c.t
	addr := t.Addr()
	if addr == "" {
		addr = "127.0.0.1:3260"
	}
	var kvs []KV
	if which == "All" || which == t.opts.Name {
		kvs = append(kvs, KV{"TargetName", t.opts.Name}, KV{"TargetAddress", fmt.Sprintf("%s,%d", addr, t.opts.TPGT)})
	}
	for _, d := range t.opts.DiscoveryExtra {
		if which != "All" && which != d.Name {
			continue
		}
		kvs = append(kvs, KV{"TargetName", d.Name})
		for _, a := range d.Addresses {
			kvs = append(kvs, KV{"TargetAddress", a})
		}
	}
	return textOf(kvs)
}
