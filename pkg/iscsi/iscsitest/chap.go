package iscsitest

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

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
