package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// Login limits: text a target may send in one login response sequence, pairs
// in it, and rounds of a negotiation stage before we give up on a target
// that never moves on.
const (
	maxLoginText   = 64 << 10
	maxLoginPairs  = 512
	maxStageRounds = 8
	maxRedirects   = 5
	loginSendLimit = 8192 // RFC 7143 §13.12: the default MaxRecvDataSegmentLength holds during login
)

// loginInput is what one login attempt needs.
type loginInput struct {
	cfg       *Config
	params    Params
	cmdSN     uint32
	discovery bool
	portal    string
	// CHAP state carried across attempts of the same session.
	chapExclude []CHAPAlgorithm
	issued      [][]byte
	// challenge is set to the challenge we send in mutual CHAP, even if
	// the login then fails, so the session remembers every one it issued.
	challenge []byte
	// chapAlg is the algorithm the target chose, kept for the SHA-256
	// numbering fallback when the login then fails.
	chapAlg CHAPAlgorithm
}

// loginResult is a successful login.
type loginResult struct {
	params      Params
	hd, dd      bool
	targetMRDSL int
	tsih        uint16
	tpgt        uint16
	alias       string
	expStatSN   uint32
	expCmdSN    uint32
	maxCmdSN    uint32
	chap        CHAPMode
	chapAlg     CHAPAlgorithm
	challenge   []byte // the challenge we issued (mutual CHAP)
	// rd holds what the target sent after the final Login Response
	// (nothing, normally): the connection keeps reading through it.
	rd *wire.Reader
}

// redirectError is a class-1 login status: the target lives elsewhere.
type redirectError struct {
	addr      TargetAddress
	permanent bool
	le        *LoginError
}

func (e *redirectError) Error() string {
	kind := "temporarily"
	if e.permanent {
		kind = "permanently"
	}
	return fmt.Sprintf("iscsi: target moved %s to %s", kind, e.addr)
}

func (e *redirectError) Unwrap() error { return e.le }

// loginConn exchanges Login PDUs on one TCP connection.
type loginConn struct {
	nc        net.Conn
	r         *wire.Reader
	in        *loginInput
	itt       uint32
	expStatSN uint32
	gotStat   bool
	chunk     int
	out       []byte
	last      wire.LoginResponse
	log       *slog.Logger
}

func (lc *loginConn) loginErr(class, detail uint8) *LoginError {
	return &LoginError{Class: class, Detail: detail, Target: lc.in.cfg.TargetName, Portal: lc.in.portal, Initiator: lc.in.cfg.InitiatorName}
}

// send writes one Login Request.
func (lc *loginConn) send(csg, nsg wire.Stage, transit, cont bool, data []byte) error {
	req := wire.LoginRequest{
		Transit: transit, Continue: cont, CSG: csg, NSG: nsg,
		ISID: lc.in.cfg.ISID, ITT: lc.itt, CID: 0,
		CmdSN: lc.in.cmdSN, ExpStatSN: lc.expStatSN, DataLen: len(data),
	}
	if !transit {
		req.NSG = 0
	}
	var h wire.BHS
	req.Encode(&h)
	lc.out = wire.AppendPDU(lc.out[:0], &h, data, false, false)
	if _, err := lc.nc.Write(lc.out); err != nil {
		return fmt.Errorf("iscsi: login to %s: send: %w", lc.in.portal, err)
	}
	return nil
}

// recv reads one Login Response and checks what every response must
// satisfy; a non-success status becomes a *LoginError (or a
// *redirectError for class 1).
func (lc *loginConn) recv() (wire.LoginResponse, []byte, error) {
	var h wire.BHS
	if err := lc.r.ReadHeader(&h); err != nil {
		return wire.LoginResponse{}, nil, lc.readErr(err)
	}
	if op := h.Opcode(); op != wire.OpLoginResponse {
		if op == wire.OpReject {
			rj, _ := wire.DecodeReject(&h)
			return wire.LoginResponse{}, nil, protoErr("target rejected our Login Request (%s)", wire.RejectReasonString(rj.Reason))
		}
		return wire.LoginResponse{}, nil, protoErr("unexpected %v during login (want Login Response)", op)
	}
	rsp, _ := wire.DecodeLoginResponse(&h)
	data := make([]byte, rsp.DataLen)
	if err := lc.r.ReadData(&h, data); err != nil {
		return rsp, nil, lc.readErr(err)
	}
	lc.last = rsp
	if rsp.ITT != lc.itt {
		return rsp, nil, protoErr("Login Response for ITT 0x%08x, we sent 0x%08x", rsp.ITT, lc.itt)
	}
	if rsp.StatusClass != 0 {
		le := lc.loginErr(rsp.StatusClass, rsp.StatusDetail)
		if rsp.StatusClass == 1 {
			return rsp, nil, lc.redirect(le, data)
		}
		return rsp, nil, le
	}
	if rsp.VersionActive != 0 {
		return rsp, nil, protoErr("target chose iSCSI version %d; we support only 0", rsp.VersionActive)
	}
	if rsp.ISID != lc.in.cfg.ISID {
		return rsp, nil, protoErr("Login Response for ISID %x, we sent %s", rsp.ISID, lc.in.cfg.ISID)
	}
	// RFC 7143 §11.13.4: the first response starts the StatSN sequence.
	lc.expStatSN = rsp.StatSN + 1
	lc.gotStat = true
	return rsp, data, nil
}

func (lc *loginConn) readErr(err error) error {
	if errors.Is(err, wire.ErrDataTooLong) || errors.Is(err, wire.ErrHeaderDigest) || errors.Is(err, wire.ErrDataDigest) {
		return fmt.Errorf("%w: login: %w", ErrProtocol, err)
	}
	return fmt.Errorf("iscsi: login to %s: %w", lc.in.portal, err)
}

// redirect turns a class-1 response into a redirectError carrying the
// parsed TargetAddress.
func (lc *loginConn) redirect(le *LoginError, data []byte) error {
	kvs, err := wire.ParseText(data, maxLoginPairs)
	if err != nil {
		return fmt.Errorf("%w: redirection: %w", ErrProtocol, err)
	}
	for _, kv := range kvs {
		if kv.Key == "TargetAddress" {
			a, err := parseTargetAddress(kv.Value)
			if err != nil {
				return protoErr("redirection: %v", err)
			}
			return &redirectError{addr: a, permanent: le.Detail == 2, le: le}
		}
	}
	return protoErr("redirection (status %02x/%02x) without TargetAddress", le.Class, le.Detail)
}

// exchange sends kvs in stage csg — split over several PDUs with the C bit
// when longer than what one login PDU may carry — and returns the target's
// complete answer, reassembling responses sent with the C bit (RFC 7143
// §11.12.2, §11.13.2). transit asks to move to nsg.
func (lc *loginConn) exchange(csg, nsg wire.Stage, transit bool, kvs []wire.KV) (wire.LoginResponse, []wire.KV, error) {
	data := wire.AppendText(nil, kvs...)
	for len(data) > lc.chunk {
		if err := lc.send(csg, nsg, false, true, data[:lc.chunk]); err != nil {
			return wire.LoginResponse{}, nil, err
		}
		data = data[lc.chunk:]
		rsp, d, err := lc.recv()
		if err != nil {
			return rsp, nil, err
		}
		if rsp.CSG != csg || rsp.Transit || rsp.Continue || len(d) > 0 {
			return rsp, nil, protoErr("target answered a partial Login Request (C=1) with more than an empty response")
		}
	}
	if err := lc.send(csg, nsg, transit, false, data); err != nil {
		return wire.LoginResponse{}, nil, err
	}
	var text []byte
	var rsp wire.LoginResponse
	for {
		var d []byte
		var err error
		rsp, d, err = lc.recv()
		if err != nil {
			return rsp, nil, err
		}
		if rsp.CSG != csg {
			return rsp, nil, protoErr("Login Response in stage %v, we are in %v", rsp.CSG, csg)
		}
		if len(text)+len(d) > maxLoginText {
			return rsp, nil, protoErr("login response text longer than %d bytes", maxLoginText)
		}
		text = append(text, d...)
		if !rsp.Continue {
			break
		}
		if rsp.Transit {
			return rsp, nil, protoErr("Login Response with both T and C bits set")
		}
		// Ask for the rest of the target's text with an empty request.
		if err := lc.send(csg, nsg, transit, false, nil); err != nil {
			return rsp, nil, err
		}
	}
	if rsp.Transit {
		if !transit {
			return rsp, nil, protoErr("target moved from %v to %v though we did not ask to leave the stage", csg, rsp.NSG)
		}
		if rsp.NSG <= csg || rsp.NSG > nsg || rsp.NSG == 2 {
			return rsp, nil, protoErr("target moved from %v to %v; we asked for %v", csg, rsp.NSG, nsg)
		}
	}
	kvs, err := wire.ParseText(text, maxLoginPairs)
	if err != nil {
		return rsp, nil, fmt.Errorf("%w: login response: %w", ErrProtocol, err)
	}
	return rsp, kvs, nil
}

// isAuthKey says whether a key belongs to the security stage's
// authentication exchange.
func isAuthKey(k string) bool { return k == "AuthMethod" || strings.HasPrefix(k, "CHAP_") }

// login runs one complete login on nc: security stage, operational stage,
// full feature phase. The caller closes nc on error.
func login(ctx context.Context, nc net.Conn, in *loginInput) (*loginResult, error) {
	cfg := in.cfg
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rd := &wire.Reader{R: nc, MaxData: max(in.params.MaxRecvDataSegmentLength, loginSendLimit)}
	lc := &loginConn{nc: nc, in: in, itt: 0, chunk: loginSendLimit, log: cfg.Logger, r: rd}
	if cfg.loginChunk > 0 {
		lc.chunk = cfg.loginChunk
	}
	neg := newNegotiator(cfg.Logger, in.params, cfg.HeaderDigest, cfg.DataDigest)
	res := &loginResult{rd: rd}

	// collect splits a response into its authentication keys (as a map:
	// CHAP acts on all keys of a PDU at once, in no particular order) and
	// the rest, which the negotiator handles. Every key counts once.
	collect := func(kvs []wire.KV, authAllowed bool) (map[string]string, error) {
		auth := map[string]string{}
		var rest []wire.KV
		for _, kv := range kvs {
			if err := neg.markSeen(kv.Key); err != nil {
				return nil, err
			}
			if isAuthKey(kv.Key) {
				if !authAllowed {
					return nil, protoErr("target sent %s outside the security stage", kv.Key)
				}
				auth[kv.Key] = kv.Value
				continue
			}
			rest = append(rest, kv)
		}
		err := neg.receive(rest)
		// Text we send later in this login must also fit what the target
		// declared it can receive.
		lc.chunk = min(lc.chunk, neg.targetMRDSL)
		return auth, err
	}
	fail := func(err error) (*loginResult, error) {
		if errors.As(err, new(*LoginError)) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("iscsi: login to %s: %w (%w)", in.portal, context.Cause(ctx), err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket deadline (the context's) fired first.
			return nil, fmt.Errorf("iscsi: login to %s: no answer in time: %w (%w)", in.portal, context.DeadlineExceeded, err)
		}
		return nil, err
	}

	// Security stage (RFC 7143 §6.3.1, §12).
	first := []wire.KV{{Key: "InitiatorName", Value: cfg.InitiatorName}}
	if in.discovery {
		first = append(first, wire.KV{Key: "SessionType", Value: "Discovery"})
	} else {
		first = append(first, wire.KV{Key: "SessionType", Value: "Normal"}, wire.KV{Key: "TargetName", Value: cfg.TargetName})
	}
	offerAuth := "None"
	switch {
	case cfg.CHAP.mutual():
		offerAuth = "CHAP" // a target that may skip authentication is not acceptable
	case cfg.CHAP != nil:
		offerAuth = "CHAP,None"
	}
	first = append(first, wire.KV{Key: "AuthMethod", Value: offerAuth})
	// closedOnNone names the likely cause when the target hangs up on
	// AuthMethod=None instead of answering: LIO does so when its TPG
	// requires CHAP (authentication=1; seen in the lab, qemu/interop
	// "CHAP no credentials"), where tgtd answers 02/01.
	closedOnNone := func(err error) error {
		if cfg.CHAP == nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return authErr(CHAPInitiatorSide, "the target closed the connection when we offered AuthMethod=None (%v): it probably requires CHAP", err)
		}
		return err
	}
	rsp, kvs, err := lc.exchange(wire.StageSecurity, wire.StageOperational, cfg.CHAP == nil, first)
	if err != nil {
		return fail(closedOnNone(err))
	}
	auth, err := collect(kvs, true)
	if err != nil {
		return fail(err)
	}
	method, answered := auth["AuthMethod"]
	delete(auth, "AuthMethod")
	if len(auth) > 0 {
		return fail(protoErr("target sent CHAP keys before we offered CHAP_A"))
	}
	if !answered {
		// The target did not negotiate; that means None, which is only
		// acceptable if we offered it.
		method = "None"
	}
	switch method {
	case "None":
		if !strings.Contains(offerAuth, "None") {
			return fail(authErr(CHAPTargetSide, "the target offers no authentication (AuthMethod=None) but mutual CHAP is configured; refusing to continue"))
		}
	case "CHAP":
		if cfg.CHAP == nil {
			return fail(protoErr("target chose AuthMethod=CHAP, which we did not offer"))
		}
	case valReject, valNotUnderstood:
		return fail(authErr(CHAPInitiatorSide, "the target refused AuthMethod=%s", offerAuth))
	default:
		return fail(protoErr("target chose AuthMethod=%q; we offered %s", method, offerAuth))
	}
	if method == "None" {
		for i := 0; !rsp.Transit; i++ {
			if i >= maxStageRounds {
				return fail(protoErr("target stays in the security stage after %d rounds", i))
			}
			rsp, kvs, err = lc.exchange(wire.StageSecurity, wire.StageOperational, true, neg.takeAnswers())
			if err != nil {
				return fail(closedOnNone(err))
			}
			if auth, err = collect(kvs, true); err != nil {
				return fail(err)
			}
			if len(auth) > 0 {
				return fail(protoErr("target sent authentication keys after choosing AuthMethod=None"))
			}
		}
	} else {
		ca := newCHAPAuth(cfg.CHAP, in.chapExclude, in.issued)
		rsp, kvs, err = lc.exchange(wire.StageSecurity, wire.StageOperational, false, append([]wire.KV{ca.offerA()}, neg.takeAnswers()...))
		if err != nil {
			return fail(err)
		}
		if auth, err = collect(kvs, true); err != nil {
			return fail(err)
		}
		answer, err := ca.respond(auth)
		in.chapAlg = ca.alg
		if err != nil {
			return fail(err)
		}
		res.chapAlg = ca.alg
		res.challenge = ca.ourChallenge
		in.challenge = ca.ourChallenge
		rsp, kvs, err = lc.exchange(wire.StageSecurity, wire.StageOperational, true, append(answer, neg.takeAnswers()...))
		for i := 0; ; i++ {
			if err != nil {
				return fail(err)
			}
			if auth, err = collect(kvs, true); err != nil {
				return fail(err)
			}
			if _, ok := auth["CHAP_R"]; ok || auth["CHAP_N"] != "" {
				if !cfg.CHAP.mutual() {
					return fail(protoErr("target sent CHAP_N/CHAP_R though we did not ask it to authenticate"))
				}
				if err := ca.verify(auth); err != nil {
					return fail(err)
				}
			} else if len(auth) > 0 {
				return fail(protoErr("unexpected authentication keys after our CHAP response"))
			}
			if rsp.Transit {
				break
			}
			if i >= maxStageRounds {
				return fail(protoErr("target stays in the security stage after %d rounds", i))
			}
			rsp, kvs, err = lc.exchange(wire.StageSecurity, wire.StageOperational, true, neg.takeAnswers())
		}
		if cfg.CHAP.mutual() && !ca.proved {
			return fail(authErr(CHAPTargetSide, "the target left the security stage without proving its identity (mutual CHAP); refusing to continue"))
		}
		res.chap = CHAPOneWay
		if cfg.CHAP.mutual() {
			res.chap = CHAPMutual
		}
	}

	// Operational stage (RFC 7143 §6.3.2).
	var offer []wire.KV
	if in.discovery {
		offer = []wire.KV{
			{Key: "HeaderDigest", Value: cfg.HeaderDigest.offer()},
			{Key: "DataDigest", Value: cfg.DataDigest.offer()},
			{Key: "MaxRecvDataSegmentLength", Value: fmt.Sprint(in.params.MaxRecvDataSegmentLength)},
		}
		neg.offered["HeaderDigest"] = offer[0].Value
		neg.offered["DataDigest"] = offer[1].Value
		neg.result.MaxRecvDataSegmentLength = in.params.MaxRecvDataSegmentLength
	} else {
		offer = neg.offers()
	}
	rsp, kvs, err = lc.exchange(wire.StageOperational, wire.StageFullFeature, true, append(offer, neg.takeAnswers()...))
	for i := 0; ; i++ {
		if err != nil {
			return fail(err)
		}
		if _, err := collect(kvs, false); err != nil {
			return fail(err)
		}
		if rsp.Transit {
			if a := neg.takeAnswers(); len(a) > 0 {
				cfg.Logger.Debug("iscsi: target finished login while proposing keys", "keys", len(a))
			}
			break
		}
		if i >= maxStageRounds {
			return fail(protoErr("operational negotiation did not finish after %d rounds", i))
		}
		rsp, kvs, err = lc.exchange(wire.StageOperational, wire.StageFullFeature, true, neg.takeAnswers())
	}
	p, err := neg.finish()
	if err != nil {
		return fail(err)
	}
	if !in.discovery && rsp.TSIH == 0 {
		return fail(protoErr("target finished login without assigning a TSIH"))
	}
	if neg.tpgt < 0 {
		if !in.discovery {
			cfg.Logger.Debug("iscsi: target did not declare TargetPortalGroupTag", "portal", in.portal)
		}
	} else {
		res.tpgt = uint16(neg.tpgt)
	}
	if rsp.ExpCmdSN != in.cmdSN {
		return fail(protoErr("login ExpCmdSN %d, we sent CmdSN %d", rsp.ExpCmdSN, in.cmdSN))
	}
	if wire.SerialLess(rsp.MaxCmdSN, rsp.ExpCmdSN-1) {
		return fail(protoErr("login MaxCmdSN %d below ExpCmdSN-1 (%d)", rsp.MaxCmdSN, rsp.ExpCmdSN-1))
	}
	res.params = p
	res.hd, res.dd = neg.hd, neg.dd
	res.targetMRDSL = neg.targetMRDSL
	res.tsih = rsp.TSIH
	res.alias = neg.alias
	res.expStatSN = lc.expStatSN
	res.expCmdSN, res.maxCmdSN = rsp.ExpCmdSN, rsp.MaxCmdSN
	nc.SetDeadline(time.Time{})
	return res, nil
}

// dialLogin dials a portal and logs in, following redirections (RFC 7143
// §11.13.5 class 1) up to maxRedirects. It returns the connection, the
// result and the portal finally used; permanent tells whether the last
// redirection was permanent.
func dialLogin(ctx context.Context, in *loginInput) (net.Conn, *loginResult, string, bool, error) {
	cfg := in.cfg
	portal := in.portal
	permanent := false
	for hop := 0; ; hop++ {
		actx, cancel := context.WithTimeout(ctx, cfg.LoginTimeout)
		host, port, err := splitPortal(portal)
		if err != nil {
			cancel()
			return nil, nil, portal, permanent, err
		}
		addr := portalString(host, port)
		nc, err := cfg.Dial(actx, "tcp", addr)
		if err != nil {
			cancel()
			return nil, nil, portal, permanent, fmt.Errorf("iscsi: connect to %s: %w", addr, err)
		}
		in.portal = addr
		res, err := login(actx, nc, in)
		cancel()
		if err == nil {
			return nc, res, addr, permanent, nil
		}
		nc.Close()
		var re *redirectError
		if !errors.As(err, &re) {
			return nil, nil, addr, permanent, err
		}
		if hop >= maxRedirects {
			return nil, nil, addr, permanent, fmt.Errorf("iscsi: login: more than %d redirections (last to %s): %w", maxRedirects, re.addr, re.le)
		}
		cfg.Logger.Info("iscsi: login redirected", "from", addr, "to", re.addr.Portal(), "permanent", re.permanent)
		portal = re.addr.Portal()
		permanent = re.permanent
	}
}
