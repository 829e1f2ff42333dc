package iscsitest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// Conn is one initiator connection to the target. Hooks use it to inject
// raw PDUs or to drop the connection.
type Conn struct {
	t  *Target
	nc net.Conn
	r  wire.Reader

	wmu sync.Mutex // serialises writes and StatSN assignment
	hdr []byte

	mu        sync.Mutex
	hd, dd    bool // digests in use (from the end of login)
	negHD     bool // negotiated digests
	negDD     bool
	statSN    uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	window    int
	paused    bool
	inflight  int
	cmds      map[uint32]*tcmd
	ttts      map[uint32]*r2t
	nextTTT   uint32
	pings     map[uint32][]byte
	initiator string
	isid      [6]byte
	discovery bool
	sess      *session

	// Negotiated values.
	initMRDSL            int
	burst, first, maxR2T int
	initialR2T           bool
	immediate            bool

	ffp       atomic.Bool
	frozen    atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

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

func newConn(t *Target, nc net.Conn) *Conn {
	return &Conn{
		t: t, nc: nc, done: make(chan struct{}),
		r:    wire.Reader{R: bufio.NewReaderSize(nc, 64<<10), MaxData: 8192},
		cmds: map[uint32]*tcmd{}, ttts: map[uint32]*r2t{}, pings: map[uint32][]byte{},
		initMRDSL: 8192, nextTTT: 0x1000,
	}
}

// Close drops the connection.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// Seq returns the next StatSN and the current ExpCmdSN and MaxCmdSN, for
// crafting PDUs.
func (c *Conn) Seq() (statSN, expCmdSN, maxCmdSN uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statSN, c.expCmdSN, c.maxCmdSN
}

// WriteRaw writes bytes as they are: a hostile PDU built by the test.
func (c *Conn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// statMode says what a PDU does with StatSN.
type statMode uint8

const (
	statNone    statMode = iota // field not valid (Data-In without S)
	statPeek                    // carries the next StatSN without using it
	statAdvance                 // uses a StatSN
)

type corruption uint8

const (
	corruptNone corruption = iota
	corruptHeader
	corruptData
)

// send frames and writes a target PDU, filling StatSN, ExpCmdSN and
// MaxCmdSN (bytes 24–35, common to every target PDU) at the moment of
// sending so that StatSN follows the order on the wire.
func (c *Conn) send(h *wire.BHS, data []byte, mode statMode, bad corruption) error {
	if c.frozen.Load() {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	stat := c.statSN
	if mode == statAdvance {
		c.statSN++
	}
	exp, max := c.expCmdSN, c.maxCmdSN
	hd, dd := c.hd, c.dd
	c.mu.Unlock()
	if mode != statNone {
		binary.BigEndian.PutUint32(h[24:], stat)
	}
	binary.BigEndian.PutUint32(h[28:], exp)
	binary.BigEndian.PutUint32(h[32:], max)
	h.SetDataLen(len(data))
	b := append(c.hdr[:0], h[:]...)
	var d [4]byte
	if hd {
		wire.PutDigest(d[:], wire.HeaderDigest(h, nil))
		if bad == corruptHeader {
			d[0] ^= 0xff
		}
		b = append(b, d[:]...)
	}
	c.hdr = b
	bufs := net.Buffers{b}
	if len(data) > 0 {
		bufs = append(bufs, data)
		var tr []byte
		tr = append(tr, make([]byte, wire.Pad(len(data)))...)
		if dd {
			wire.PutDigest(d[:], wire.DataDigest(data))
			if bad == corruptData {
				d[0] ^= 0xff
			}
			tr = append(tr, d[:]...)
		}
		if len(tr) > 0 {
			bufs = append(bufs, tr)
		}
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

func (c *Conn) serve() {
	defer c.Close()
	if err := c.login(); err != nil {
		c.t.log.Debug("iscsitest: login ended", "err", err)
		return
	}
	if c.discovery {
		c.serveDiscovery()
		return
	}
	c.serveFFP()
}

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

// security is the target side of the security stage (RFC 7143 §12.1.3).
func (c *Conn) security(ls *loginState, req wire.LoginRequest, in []KV) ([]KV, bool, *[2]uint8) {
	t := c.t
	ch := t.opts.CHAP
	var out []KV
	m := map[string]string{}
	for _, kv := range in {
		m[kv.Key] = kv.Value
	}
	if v, ok := m["AuthMethod"]; ok && ls.auth == "" {
		offered := strings.Split(v, ",")
		switch {
		case ch != nil && ch.SkipAuth && !slices.Contains(offered, "None"):
			ls.auth = "None"
		case ch != nil && slices.Contains(offered, "CHAP"):
			ls.auth = "CHAP"
		case ch == nil && slices.Contains(offered, "None"):
			ls.auth = "None"
		default:
			return []KV{{"AuthMethod", "Reject"}}, false, &[2]uint8{2, 1}
		}
		out = append(out, KV{"AuthMethod", ls.auth})
	}
	if ls.auth == "" {
		if ch != nil {
			return nil, false, &[2]uint8{2, 1}
		}
		ls.auth = "None"
	}
	if ls.auth == "None" {
		return out, req.Transit, nil
	}
	switch ls.chapStage {
	case 0:
		av, ok := m["CHAP_A"]
		if !ok {
			return out, false, nil // AuthMethod round; CHAP_A comes next
		}
		accept := ch.Algorithms
		if accept == nil {
			accept = []int{wire.CHAPMD5, wire.CHAPSHA1, wire.CHAPSHA256, wire.CHAPSHA3256}
		}
		for _, s := range strings.Split(av, ",") {
			a, err := strconv.Atoi(s)
			if err == nil && slices.Contains(accept, a) {
				ls.alg, ls.hashAlg = a, a
				break
			}
		}
		if ls.alg == 0 {
			return append(out, KV{"CHAP_A", "Reject"}), false, &[2]uint8{2, 1}
		}
		if ch.SHA1As7 && ls.alg == wire.CHAPSHA256 {
			ls.hashAlg = wire.CHAPSHA1
		}
		n := ch.ChallengeLen
		if n == 0 {
			n = 16
		}
		ls.challenge = make([]byte, n)
		rand.Read(ls.challenge)
		var idb [1]byte
		rand.Read(idb[:])
		ls.id = idb[0]
		key := sessKey(c.initiator, c.isid)
		t.mu.Lock()
		if prev := t.reflected[key]; ch.ReflectChallenge && prev != nil {
			ls.challenge = prev
		}
		t.mu.Unlock()
		out = append(out, KV{"CHAP_A", strconv.Itoa(ls.alg)}, KV{"CHAP_I", strconv.Itoa(int(ls.id))},
			KV{"CHAP_C", encodeBin(ls.challenge, ch.Base64)})
		ls.chapStage = 1
		return out, false, nil
	case 1:
		name, okN := m["CHAP_N"]
		rv, okR := m["CHAP_R"]
		if !okN || !okR {
			t.violation("CHAP answer without CHAP_N/CHAP_R")
			return nil, false, &[2]uint8{2, 1}
		}
		got, err := wire.DecodeBinary(rv)
		want := wire.CHAPResponse(ls.hashAlg, ls.id, []byte(ch.Secret), ls.challenge)
		if err != nil || name != ch.Username || !bytes.Equal(got, want) {
			return nil, false, &[2]uint8{2, 1}
		}
		ls.chapStage = 2
		if iv, ok := m["CHAP_I"]; ok {
			cv := m["CHAP_C"]
			id, err1 := wire.ParseNumber(iv, 255)
			chal, err2 := wire.DecodeBinary(cv)
			if err1 != nil || err2 != nil {
				t.violation("bad mutual CHAP_I/CHAP_C")
				return nil, false, &[2]uint8{2, 1}
			}
			if bytes.Equal(chal, ls.challenge) {
				t.violation("initiator reflected our CHAP challenge")
				return nil, false, &[2]uint8{2, 1}
			}
			t.mu.Lock()
			t.reflected[sessKey(c.initiator, c.isid)] = chal
			t.mu.Unlock()
			if ch.TargetUsername == "" {
				return nil, false, &[2]uint8{2, 1}
			}
			if !ch.SkipMutual {
				secret := ch.TargetSecret
				if ch.WrongMutualResponse {
					secret += "-wrong"
				}
				resp := wire.CHAPResponse(ls.hashAlg, uint8(id), []byte(secret), chal)
				out = append(out, KV{"CHAP_N", ch.TargetUsername}, KV{"CHAP_R", encodeBin(resp, ch.Base64)})
			}
		}
		return out, req.Transit, nil
	}
	return out, req.Transit, nil
}

func encodeBin(b []byte, b64 bool) string {
	if b64 {
		return wire.EncodeBase64(b)
	}
	return wire.EncodeHex(b)
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
	t.stats.Logouts++
	if c.sess != nil && t.sessions[c.sess.key] == c.sess {
		delete(t.sessions, c.sess.key)
	}
	t.mu.Unlock()
	var rh wire.BHS
	(&wire.LogoutResponse{ITT: l.ITT, Time2Wait: uint16(t.opts.DefaultTime2Wait)}).Encode(&rh)
	c.send(&rh, nil, statAdvance, corruptNone)
}

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
