package iscsi

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// Answers a responder may give instead of a value (RFC 7143 §6.2).
const (
	valReject        = "Reject"
	valIrrelevant    = "Irrelevant"
	valNotUnderstood = "NotUnderstood"
)

// resultFn is how the two sides' values combine (RFC 7143 §6.2.2, §13).
type resultFn uint8

const (
	resMin  resultFn = iota // numerical, the smaller wins
	resMax                  // numerical, the larger wins
	resOr                   // boolean, Yes if either says Yes
	resAnd                  // boolean, Yes only if both say Yes
	resList                 // the first of the offerer's list the responder supports
)

// keyDef describes one negotiated operational key. get reads our offer
// from Params; set stores a result.
type keyDef struct {
	name   string
	fn     resultFn
	lo, hi uint64 // numerical range
	get    func(p *Params, c *negotiator) string
	set    func(p *Params, c *negotiator, v string)
}

func numGet(f func(*Params) *int) func(*Params, *negotiator) string {
	return func(p *Params, _ *negotiator) string { return strconv.Itoa(*f(p)) }
}

func numSet(f func(*Params) *int) func(*Params, *negotiator, string) {
	return func(p *Params, _ *negotiator, v string) {
		n, _ := strconv.Atoi(v)
		*f(p) = n
	}
}

func boolGet(f func(*Params) *bool) func(*Params, *negotiator) string {
	return func(p *Params, _ *negotiator) string { return yesNo(*f(p)) }
}

func boolSet(f func(*Params) *bool) func(*Params, *negotiator, string) {
	return func(p *Params, _ *negotiator, v string) { *f(p) = v == "Yes" }
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// opKeys is the declarative table of the operational keys we negotiate, in
// the order we send them. MaxRecvDataSegmentLength is declarative and
// handled apart; markers and RDMA keys were dropped by RFC 7143 and are not
// offered.
var opKeys = []keyDef{
	{name: "HeaderDigest", fn: resList,
		get: func(_ *Params, c *negotiator) string { return c.headerDigest.offer() },
		set: func(_ *Params, c *negotiator, v string) { c.hd = v == "CRC32C" }},
	{name: "DataDigest", fn: resList,
		get: func(_ *Params, c *negotiator) string { return c.dataDigest.offer() },
		set: func(_ *Params, c *negotiator, v string) { c.dd = v == "CRC32C" }},
	{name: "MaxConnections", fn: resMin, lo: 1, hi: 65535,
		get: numGet(func(p *Params) *int { return &p.MaxConnections }), set: numSet(func(p *Params) *int { return &p.MaxConnections })},
	{name: "InitialR2T", fn: resOr,
		get: boolGet(func(p *Params) *bool { return &p.InitialR2T }), set: boolSet(func(p *Params) *bool { return &p.InitialR2T })},
	{name: "ImmediateData", fn: resAnd,
		get: boolGet(func(p *Params) *bool { return &p.ImmediateData }), set: boolSet(func(p *Params) *bool { return &p.ImmediateData })},
	{name: "MaxBurstLength", fn: resMin, lo: 512, hi: wire.MaxDataSegment,
		get: numGet(func(p *Params) *int { return &p.MaxBurstLength }), set: numSet(func(p *Params) *int { return &p.MaxBurstLength })},
	{name: "FirstBurstLength", fn: resMin, lo: 512, hi: wire.MaxDataSegment,
		get: numGet(func(p *Params) *int { return &p.FirstBurstLength }), set: numSet(func(p *Params) *int { return &p.FirstBurstLength })},
	{name: "DefaultTime2Wait", fn: resMax, lo: 0, hi: 3600,
		get: numGet(func(p *Params) *int { return &p.DefaultTime2Wait }), set: numSet(func(p *Params) *int { return &p.DefaultTime2Wait })},
	{name: "DefaultTime2Retain", fn: resMin, lo: 0, hi: 3600,
		get: numGet(func(p *Params) *int { return &p.DefaultTime2Retain }), set: numSet(func(p *Params) *int { return &p.DefaultTime2Retain })},
	{name: "MaxOutstandingR2T", fn: resMin, lo: 1, hi: 65535,
		get: numGet(func(p *Params) *int { return &p.MaxOutstandingR2T }), set: numSet(func(p *Params) *int { return &p.MaxOutstandingR2T })},
	{name: "DataPDUInOrder", fn: resOr,
		get: boolGet(func(p *Params) *bool { return &p.DataPDUInOrder }), set: boolSet(func(p *Params) *bool { return &p.DataPDUInOrder })},
	{name: "DataSequenceInOrder", fn: resOr,
		get: boolGet(func(p *Params) *bool { return &p.DataSequenceInOrder }), set: boolSet(func(p *Params) *bool { return &p.DataSequenceInOrder })},
	{name: "ErrorRecoveryLevel", fn: resMin, lo: 0, hi: 2,
		get: numGet(func(p *Params) *int { return &p.ErrorRecoveryLevel }), set: numSet(func(p *Params) *int { return &p.ErrorRecoveryLevel })},
}

func findKey(name string) *keyDef {
	for i := range opKeys {
		if opKeys[i].name == name {
			return &opKeys[i]
		}
	}
	return nil
}

// negotiator runs the operational text negotiation of one login attempt:
// it produces our offers, checks each answer against the key's result
// function, answers keys the target proposes, and records the target's
// declarations.
type negotiator struct {
	log                      *slog.Logger
	offer                    Params // what we propose
	result                   Params // starts at RFC defaults, updated by results
	headerDigest, dataDigest Digest // our policies
	hd, dd                   bool   // negotiated digests

	offered map[string]string // key → value we sent, awaiting an answer
	done    map[string]bool   // keys whose negotiation finished
	seen    map[string]bool   // keys the target sent (each at most once)
	answers []wire.KV         // our answers to target proposals, to send next

	targetMRDSL int
	tpgt        int // -1 until declared
	alias       string
	address     string // TargetAddress (redirection)
}

func newNegotiator(log *slog.Logger, offer Params, hd, dd Digest) *negotiator {
	return &negotiator{
		log: log, offer: offer, result: rfcDefaults(),
		headerDigest: hd, dataDigest: dd,
		offered: map[string]string{}, done: map[string]bool{}, seen: map[string]bool{},
		targetMRDSL: 8192, tpgt: -1,
	}
}

// offers returns every operational key we propose, each explicitly, even
// at its RFC default: some targets misread omitted keys (iPXE history:
// QNAP needed MaxConnections and ImmediateData spelled out).
func (n *negotiator) offers() []wire.KV {
	kvs := make([]wire.KV, 0, len(opKeys)+1)
	for i := range opKeys {
		k := &opKeys[i]
		v := k.get(&n.offer, n)
		n.offered[k.name] = v
		kvs = append(kvs, wire.KV{Key: k.name, Value: v})
	}
	// Declarative: what we can receive (RFC 7143 §13.12).
	kvs = append(kvs, wire.KV{Key: "MaxRecvDataSegmentLength", Value: strconv.Itoa(n.offer.MaxRecvDataSegmentLength)})
	n.result.MaxRecvDataSegmentLength = n.offer.MaxRecvDataSegmentLength
	return kvs
}

// markSeen enforces that the target sends each key at most once per login
// (RFC 7143 §6.2: a key negotiated twice is a protocol error).
func (n *negotiator) markSeen(key string) error {
	if n.seen[key] {
		return protoErr("target sent key %s more than once during login", key)
	}
	n.seen[key] = true
	return nil
}

// receive processes the target's keys that are not authentication keys.
func (n *negotiator) receive(kvs []wire.KV) error {
	for _, kv := range kvs {
		if err := n.receiveOne(kv); err != nil {
			return err
		}
	}
	return nil
}

func (n *negotiator) receiveOne(kv wire.KV) error {
	switch kv.Key {
	case "TargetPortalGroupTag":
		v, err := wire.ParseNumber(kv.Value, 65535)
		if err != nil {
			return protoErr("TargetPortalGroupTag=%q: %v", kv.Value, err)
		}
		n.tpgt = int(v)
		return nil
	case "TargetAlias":
		n.alias = kv.Value
		return nil
	case "TargetAddress":
		n.address = kv.Value
		return nil
	case "MaxRecvDataSegmentLength":
		switch kv.Value {
		case valReject, valIrrelevant, valNotUnderstood:
			// An answer to our declaration; nothing to record.
			n.log.Debug("iscsi: target answered our MaxRecvDataSegmentLength declaration", "value", kv.Value)
			return nil
		}
		v, err := wire.ParseNumber(kv.Value, wire.MaxDataSegment)
		if err != nil || v < 512 {
			return protoErr("target declared MaxRecvDataSegmentLength=%q (want 512..%d)", kv.Value, wire.MaxDataSegment)
		}
		n.targetMRDSL = int(v)
		return nil
	case "InitiatorName", "TargetName", "SessionType", "InitiatorAlias":
		return protoErr("target sent initiator-only key %s", kv.Key)
	}
	k := findKey(kv.Key)
	if k == nil {
		// Not a key we know: say so (RFC 7143 §6.2), unless it is itself
		// an answer word, which we cannot answer again.
		switch kv.Value {
		case valReject, valIrrelevant, valNotUnderstood:
			n.log.Debug("iscsi: target answered a key we did not send", "key", kv.Key, "value", kv.Value)
		default:
			n.log.Debug("iscsi: target proposed an unknown key", "key", kv.Key)
			n.answers = append(n.answers, wire.KV{Key: kv.Key, Value: valNotUnderstood})
		}
		return nil
	}
	if offered, ok := n.offered[k.name]; ok && !n.done[k.name] {
		return n.answer(k, offered, kv.Value)
	}
	if n.done[k.name] {
		return protoErr("target renegotiated %s=%s", kv.Key, kv.Value)
	}
	return n.propose(k, kv.Value)
}

// answer checks the target's answer to our offer against the key's result
// function (RFC 7143 §6.2.2): a min-key answer above our offer, a list
// answer we did not offer, or a boolean answer the function forbids is a
// protocol error.
func (n *negotiator) answer(k *keyDef, offered, got string) error {
	n.done[k.name] = true
	if n.required(k.name) && got != "CRC32C" {
		// RFC 7143 §6.2: a responder that supports none of the offered
		// values answers Reject, and the key keeps its default, None,
		// which the policy does not accept. tgtd answers None instead,
		// a value we did not offer; it is the same refusal.
		return &DigestError{Key: k.name, Answer: got}
	}
	switch got {
	case valReject, valNotUnderstood:
		// The key keeps its RFC default (stgt rejects digests and goes on).
		n.log.Warn("iscsi: target did not accept a key; using the RFC default", "key", k.name, "offered", offered, "answer", got)
		return nil
	case valIrrelevant:
		n.log.Debug("iscsi: target says key is irrelevant", "key", k.name)
		return nil
	}
	bad := func(why string) error {
		return protoErr("target answered %s=%s to our offer %s: %s", k.name, got, offered, why)
	}
	switch k.fn {
	case resMin, resMax:
		v, err := wire.ParseNumber(got, k.hi)
		if err != nil || v < k.lo {
			return bad(fmt.Sprintf("not a number in %d..%d", k.lo, k.hi))
		}
		o, _ := strconv.ParseUint(offered, 10, 64)
		if k.fn == resMin && v > o {
			return bad("larger than offered, but the result function is min")
		}
		if k.fn == resMax && v < o {
			return bad("smaller than offered, but the result function is max")
		}
		k.set(&n.result, n, strconv.FormatUint(v, 10))
	case resOr, resAnd:
		if got != "Yes" && got != "No" {
			return bad("want Yes or No")
		}
		if k.fn == resOr && offered == "Yes" && got != "Yes" {
			return bad("OR with our Yes must be Yes")
		}
		if k.fn == resAnd && offered == "No" && got != "No" {
			return bad("AND with our No must be No")
		}
		k.set(&n.result, n, got)
	case resList:
		if !slices.Contains(strings.Split(offered, ","), got) {
			return bad("not one of the values offered")
		}
		k.set(&n.result, n, got)
	}
	return nil
}

// propose answers a key the target offers first (LIO proposes
// FirstBurstLength, iPXE commit 785389c2b): we combine its value with ours
// by the key's result function and send the outcome.
func (n *negotiator) propose(k *keyDef, theirs string) error {
	n.done[k.name] = true
	ours := k.get(&n.offer, n)
	reply := func(v string) {
		n.answers = append(n.answers, wire.KV{Key: k.name, Value: v})
	}
	switch k.fn {
	case resMin, resMax:
		v, err := wire.ParseNumber(theirs, k.hi)
		if err != nil || v < k.lo {
			reply(valReject)
			return nil
		}
		o, _ := strconv.ParseUint(ours, 10, 64)
		r := min(v, o)
		if k.fn == resMax {
			r = max(v, o)
		}
		s := strconv.FormatUint(r, 10)
		k.set(&n.result, n, s)
		reply(s)
	case resOr, resAnd:
		if theirs != "Yes" && theirs != "No" {
			reply(valReject)
			return nil
		}
		r := theirs == "Yes" || ours == "Yes"
		if k.fn == resAnd {
			r = theirs == "Yes" && ours == "Yes"
		}
		k.set(&n.result, n, yesNo(r))
		reply(yesNo(r))
	case resList:
		acceptable := strings.Split(ours, ",")
		for _, v := range strings.Split(theirs, ",") {
			if slices.Contains(acceptable, v) {
				k.set(&n.result, n, v)
				reply(v)
				return nil
			}
		}
		if n.required(k.name) {
			return &DigestError{Key: k.name, Answer: theirs, Proposed: true}
		}
		reply(valReject)
	}
	return nil
}

// required reports whether key is a digest our policy requires.
func (n *negotiator) required(key string) bool {
	switch key {
	case "HeaderDigest":
		return n.headerDigest == DigestRequire
	case "DataDigest":
		return n.dataDigest == DigestRequire
	}
	return false
}

// takeAnswers returns and clears the answers owed to the target.
func (n *negotiator) takeAnswers() []wire.KV {
	a := n.answers
	n.answers = nil
	return a
}

// finish returns the negotiated values. Offers the target never answered
// keep their RFC defaults.
func (n *negotiator) finish() (Params, error) {
	for name := range n.offered {
		if !n.done[name] {
			n.log.Debug("iscsi: target did not answer a key; using the RFC default", "key", name)
		}
	}
	// A required digest the target never answered keeps the RFC default,
	// None.
	if n.headerDigest == DigestRequire && !n.hd {
		return n.result, &DigestError{Key: "HeaderDigest"}
	}
	if n.dataDigest == DigestRequire && !n.dd {
		return n.result, &DigestError{Key: "DataDigest"}
	}
	p := n.result
	if p.ErrorRecoveryLevel != 0 {
		return p, protoErr("negotiated ErrorRecoveryLevel=%d, only 0 is supported", p.ErrorRecoveryLevel)
	}
	if !p.DataPDUInOrder || !p.DataSequenceInOrder {
		return p, protoErr("negotiated out-of-order data (DataPDUInOrder=%s, DataSequenceInOrder=%s)",
			yesNo(p.DataPDUInOrder), yesNo(p.DataSequenceInOrder))
	}
	if p.MaxConnections != 1 {
		return p, protoErr("negotiated MaxConnections=%d, only 1 is supported", p.MaxConnections)
	}
	// RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength.
	if p.FirstBurstLength > p.MaxBurstLength {
		n.log.Debug("iscsi: FirstBurstLength above MaxBurstLength; using MaxBurstLength", "first", p.FirstBurstLength, "max", p.MaxBurstLength)
		p.FirstBurstLength = p.MaxBurstLength
	}
	return p, nil
}
