package iscsitest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// loginState accumulates one login's progress.
type loginState struct {
	n          int
	itt        uint32
	firstDone  bool
	keys       []KV
	auth       string // chosen AuthMethod
	chapStage  int    // 0 none, 1 challenge sent, 2 done
	alg        int    // answered CHAP_A
	hashAlg    int    // what we compute with
	id         byte
	challenge  []byte
	sentTPGT   bool
	sentMRDSL  bool
	proposed   map[string]bool
	tsih       uint16
	reqTSIH    uint16
	normal     bool
	targetName string
}

func (c *Conn) loginStatus(ls *loginState, class, detail uint8, keys []KV) error {
	c.t.count(func(s *Stats) { s.FailedLogins++ })
	rsp := wire.LoginResponse{ITT: ls.itt, ISID: c.isid, StatusClass: class, StatusDetail: detail}
	var h wire.BHS
	rsp.Encode(&h)
	c.send(&h, textOf(keys), statAdvance, corruptNone)
	return fmt.Errorf("login failed with status %02x/%02x", class, detail)
}

func textOf(kvs []KV) []byte {
	var b []byte
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}

// login runs the target side of the login phase.
func (c *Conn) login() error {
	t := c.t
	t.mu.Lock()
	t.logins++
	ls := &loginState{n: t.logins, proposed: map[string]bool{}}
	t.mu.Unlock()
	c.statSN = 1
	var text []byte
	for {
		var h wire.BHS
		if err := c.r.ReadHeader(&h); err != nil {
			if errors.Is(err, wire.ErrDataTooLong) {
				t.violation("login PDU longer than 8192 bytes: %v", err)
			}
			return err
		}
		if h.Opcode() != wire.OpLogin {
			t.violation("%v during login", h.Opcode())
			return fmt.Errorf("unexpected %v during login", h.Opcode())
		}
		if !h.Immediate() {
			t.violation("Login Request without the I bit")
		}
		req, _ := wire.DecodeLoginRequest(&h)
		data := make([]byte, req.DataLen)
		if err := c.r.ReadData(&h, data); err != nil {
			return err
		}
		if !ls.firstDone {
			ls.itt = req.ITT
			c.isid = req.ISID
			ls.reqTSIH = req.TSIH
			c.mu.Lock()
			c.expCmdSN = req.CmdSN
			c.maxCmdSN = req.CmdSN
			c.mu.Unlock()
			if op := t.opts.Hooks.LoginOpcode; op != 0 {
				var bad wire.BHS
				(&wire.SCSIResponse{ITT: req.ITT}).Encode(&bad)
				bad.SetOpcode(wire.Opcode(op), false)
				c.send(&bad, nil, statAdvance, corruptNone)
				return errors.New("answered login with a wrong opcode")
			}
		}
		text = append(text, data...)
		if req.Continue {
			t.count(func(s *Stats) { s.ContinuedLoginPDUs++ })
			if req.Transit {
				t.violation("Login Request with both T and C set")
			}
			rsp := wire.LoginResponse{CSG: req.CSG, ITT: req.ITT, ISID: c.isid}
			var rh wire.BHS
			rsp.Encode(&rh)
			c.send(&rh, nil, statAdvance, corruptNone)
			continue
		}
		kvs, err := wire.ParseText(text, 1024)
		text = nil
		if err != nil {
			t.violation("login text: %v", err)
			return c.loginStatus(ls, 2, 0, nil)
		}
		in := make([]KV, len(kvs))
		for i, kv := range kvs {
			in[i] = KV(kv)
		}
		ls.keys = append(ls.keys, in...)
		out, transit, status, err := c.loginStep(ls, req, in)
		if err != nil {
			return err
		}
		if status != nil {
			return c.loginStatus(ls, status[0], status[1], out)
		}
		nsg := req.NSG
		if !transit {
			nsg = 0
		}
		if transit && nsg == wire.StageFullFeature {
			if err := c.finishLogin(ls); err != nil {
				return err
			}
		}
		if hook := t.opts.Hooks.EditLoginKeys; hook != nil {
			out = hook(int(req.CSG), out)
		}
		if err := c.sendLoginText(ls, req, textOf(out), transit, nsg); err != nil {
			return err
		}
		if transit && nsg == wire.StageFullFeature {
			t.count(func(s *Stats) {
				s.Logins++
				s.LastKeys = slices.Clone(ls.keys)
			})
			return nil
		}
	}
}

// sendLoginText sends a Login Response, split with the C bit when
// TextSplit asks for it; each continuation waits for an empty request.
func (c *Conn) sendLoginText(ls *loginState, req wire.LoginRequest, text []byte, transit bool, nsg wire.Stage) error {
	split := c.t.opts.TextSplit
	for split > 0 && len(text) > split {
		rsp := wire.LoginResponse{Continue: true, CSG: req.CSG, ITT: ls.itt, ISID: c.isid, TSIH: ls.tsih}
		var h wire.BHS
		rsp.Encode(&h)
		if err := c.send(&h, text[:split], statAdvance, corruptNone); err != nil {
			return err
		}
		text = text[split:]
		var rh wire.BHS
		if err := c.r.ReadHeader(&rh); err != nil {
			return err
		}
		if rh.Opcode() != wire.OpLogin || rh.DataLen() != 0 {
			c.t.violation("answer to a continued Login Response is not an empty Login Request")
			return errors.New("bad continuation")
		}
		if err := c.r.ReadData(&rh, nil); err != nil {
			return err
		}
	}
	rsp := wire.LoginResponse{Transit: transit, CSG: req.CSG, NSG: nsg, ITT: ls.itt, ISID: c.isid}
	if transit && nsg == wire.StageFullFeature {
		rsp.TSIH = ls.tsih
	}
	var h wire.BHS
	rsp.Encode(&h)
	return c.send(&h, text, statAdvance, corruptNone)
}

// loginStep processes the keys of one (reassembled) Login Request and
// returns the response keys, whether to transit, or a failure status.
func (c *Conn) loginStep(ls *loginState, req wire.LoginRequest, in []KV) ([]KV, bool, *[2]uint8, error) {
	t := c.t
	var out []KV
	get := func(k string) (string, bool) {
		for _, kv := range in {
			if kv.Key == k {
				return kv.Value, true
			}
		}
		return "", false
	}
	fail := func(class, detail uint8) ([]KV, bool, *[2]uint8, error) {
		return nil, false, &[2]uint8{class, detail}, nil
	}
	if !ls.firstDone {
		ls.firstDone = true
		name, ok := get("InitiatorName")
		if !ok || name == "" {
			return fail(2, 7)
		}
		c.initiator = name
		st, _ := get("SessionType")
		c.discovery = st == "Discovery"
		ls.normal = !c.discovery
		if hook := t.opts.Hooks.LoginStatus; hook != nil {
			if class, detail := hook(ls.n); class != 0 {
				return fail(class, detail)
			}
		}
		if ls.normal {
			tn, _ := get("TargetName")
			ls.targetName = tn
			t.mu.Lock()
			t.normal++
			n := t.normal
			t.mu.Unlock()
			if hook := t.opts.Hooks.Redirect; hook != nil {
				if addr, perm := hook(n); addr != "" {
					t.count(func(s *Stats) { s.Redirects++ })
					detail := uint8(1)
					if perm {
						detail = 2
					}
					rsp := wire.LoginResponse{ITT: ls.itt, ISID: c.isid, StatusClass: 1, StatusDetail: detail}
					var h wire.BHS
					rsp.Encode(&h)
					c.send(&h, textOf([]KV{{"TargetAddress", addr}}), statAdvance, corruptNone)
					return nil, false, nil, errors.New("redirected")
				}
			}
			if tn != t.opts.Name {
				return fail(2, 3)
			}
		}
		out = append(out, KV{"TargetPortalGroupTag", strconv.Itoa(int(t.opts.TPGT))})
		if t.opts.Alias != "" && ls.normal {
			out = append(out, KV{"TargetAlias", t.opts.Alias})
		}
	}
	switch req.CSG {
	case wire.StageSecurity:
		keys, transit, status := c.security(ls, req, in)
		if status != nil {
			return fail(status[0], status[1])
		}
		return append(out, keys...), transit, nil, nil
	case wire.StageOperational:
		if t.opts.CHAP != nil && ls.chapStage != 2 && !(t.opts.CHAP.SkipAuth && ls.auth == "None") {
			// Skipping the security stage when authentication is required.
			return fail(2, 1)
		}
		keys := c.operational(ls, in)
		out = append(out, keys...)
		pending := false
		for k := range ls.proposed {
			if ls.proposed[k] {
				pending = true
			}
		}
		return out, req.Transit && !pending, nil, nil
	}
	t.violation("login request in stage %v", req.CSG)
	return fail(2, 0)
}

func sessKey(initiator string, isid [6]byte) string { return fmt.Sprintf("%s/%x", initiator, isid) }

// operational answers operational keys with the target's preferences and
// result functions, and makes the target's own proposals and declarations.
func (c *Conn) operational(ls *loginState, in []KV) []KV {
	t := c.t
	o := &t.opts
	var out []KV
	if !ls.sentMRDSL {
		ls.sentMRDSL = true
		out = append(out, KV{"MaxRecvDataSegmentLength", strconv.Itoa(o.MaxRecvDataSegmentLength)})
		for _, p := range o.Propose {
			ls.proposed[p.Key] = true
			out = append(out, p)
		}
	}
	if c.burst == 0 {
		c.burst, c.first, c.maxR2T = 262144, 65536, 1
		c.initialR2T, c.immediate = true, true
	}
	num := func(v string) int { n, _ := strconv.Atoi(v); return n }
	for _, kv := range in {
		if ls.proposed[kv.Key] {
			ls.proposed[kv.Key] = false
			c.apply(kv.Key, kv.Value)
			continue
		}
		var ans string
		switch kv.Key {
		case "HeaderDigest", "DataDigest":
			ans = "Reject"
			for _, v := range strings.Split(kv.Value, ",") {
				if slices.Contains(strings.Split(o.Digests, ","), v) {
					ans = v
					break
				}
			}
		case "MaxConnections":
			ans = strconv.Itoa(min(num(kv.Value), 1))
		case "InitialR2T":
			ans = yesNo(kv.Value == "Yes" || o.InitialR2T)
		case "ImmediateData":
			ans = yesNo(kv.Value == "Yes" && !o.NoImmediateData)
		case "MaxBurstLength":
			ans = strconv.Itoa(min(num(kv.Value), o.MaxBurstLength))
		case "FirstBurstLength":
			ans = strconv.Itoa(min(num(kv.Value), o.FirstBurstLength))
		case "DefaultTime2Wait":
			ans = strconv.Itoa(max(num(kv.Value), o.DefaultTime2Wait))
		case "DefaultTime2Retain":
			ans = strconv.Itoa(min(num(kv.Value), 20))
		case "MaxOutstandingR2T":
			ans = strconv.Itoa(min(num(kv.Value), o.MaxOutstandingR2T))
		case "DataPDUInOrder", "DataSequenceInOrder":
			ans = "Yes"
		case "ErrorRecoveryLevel":
			ans = "0"
		case "MaxRecvDataSegmentLength":
			c.initMRDSL = num(kv.Value)
			continue
		case "InitiatorName", "SessionType", "TargetName", "InitiatorAlias", "AuthMethod":
			continue
		default:
			ans = "NotUnderstood"
		}
		if v, ok := o.Answers[kv.Key]; ok {
			ans = v
		}
		c.apply(kv.Key, ans)
		out = append(out, KV{kv.Key, ans})
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// apply records a negotiated value.
func (c *Conn) apply(key, v string) {
	n, err := strconv.Atoi(v)
	isNum := err == nil
	switch key {
	case "HeaderDigest":
		c.negHD = v == "CRC32C"
	case "DataDigest":
		c.negDD = v == "CRC32C"
	case "InitialR2T":
		if v == "Yes" || v == "No" {
			c.initialR2T = v == "Yes"
		}
	case "ImmediateData":
		if v == "Yes" || v == "No" {
			c.immediate = v == "Yes"
		}
	case "MaxBurstLength":
		if isNum {
			c.burst = n
		}
	case "FirstBurstLength":
		if isNum {
			c.first = n
		}
	case "MaxOutstandingR2T":
		if isNum {
			c.maxR2T = n
		}
	}
}

// finishLogin assigns the TSIH and handles session reinstatement (RFC 7143
// §6.3.5): a leading login with TSIH 0 and an ISID in use replaces the
// old session.
func (c *Conn) finishLogin(ls *loginState) error {
	t := c.t
	t.mu.Lock()
	window := t.opts.Window
	c.ffp.Store(!c.discovery)
	t.mu.Unlock()
	c.mu.Lock()
	c.window = window
	if c.first > c.burst {
		c.first = c.burst
	}
	if c.window == 0 {
		c.paused = true
		c.maxCmdSN = c.expCmdSN - 1
	}
	c.updateMaxLocked()
	c.mu.Unlock()
	if !ls.normal {
		ls.tsih = 1
		return nil
	}
	key := sessKey(c.initiator, c.isid)
	t.mu.Lock()
	old := t.sessions[key]
	t.nextTSIH++
	ls.tsih = t.nextTSIH
	s := &session{key: key, tsih: ls.tsih, conn: c, uaDone: map[int]bool{}}
	t.sessions[key] = s
	if old != nil {
		t.stats.Reinstatements++
	}
	t.mu.Unlock()
	c.sess = s
	if old != nil && old.conn != nil && old.conn != c {
		old.conn.Close()
	}
	if ls.reqTSIH != 0 {
		t.violation("login with TSIH %d (connection addition is not supported)", ls.reqTSIH)
	}
	return nil
}
