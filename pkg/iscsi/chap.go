package iscsi

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// chapAuth runs the initiator side of CHAP in the security stage (RFC 7143
// §12.1.3, RFC 1994). It never puts a secret into an error or log.
type chapAuth struct {
	cfg  *CHAP
	algs []CHAPAlgorithm // offered, most preferred first
	alg  CHAPAlgorithm   // the target's choice

	// Mutual CHAP: what we sent, to check the target's answer.
	ourID        uint8
	ourChallenge []byte
	proved       bool
	// issued holds the challenges this session sent in earlier logins; a
	// target presenting one of them as its own challenge is reflecting it
	// to obtain our response.
	issued [][]byte
	rand   io.Reader
}

func newCHAPAuth(cfg *CHAP, exclude []CHAPAlgorithm, issued [][]byte) *chapAuth {
	offer := chapOffer(cfg, exclude)
	if len(offer) == 0 {
		// Everything configured was excluded: offer it all again rather
		// than anything the user did not list (no downgrade).
		offer = chapOffer(cfg, nil)
	}
	return &chapAuth{cfg: cfg, algs: offer, issued: issued, rand: rand.Reader}
}

// chapOffer is what cfg lets us offer (its Algorithms, else
// DefaultCHAPAlgorithms) without exclude, in order.
func chapOffer(cfg *CHAP, exclude []CHAPAlgorithm) []CHAPAlgorithm {
	algs := DefaultCHAPAlgorithms
	if cfg != nil && cfg.Algorithms != nil {
		algs = cfg.Algorithms
	}
	var offer []CHAPAlgorithm
	for _, a := range algs {
		if !slices.Contains(exclude, a) {
			offer = append(offer, a)
		}
	}
	return offer
}

// offerA is our CHAP_A list.
func (c *chapAuth) offerA() wire.KV {
	s := make([]string, len(c.algs))
	for i, a := range c.algs {
		s[i] = strconv.Itoa(int(a))
	}
	return wire.KV{Key: "CHAP_A", Value: strings.Join(s, ",")}
}

// authErr is an authentication failure we detect (the target did not
// prove itself or did something CHAP forbids); side is whose credentials it
// concerns.
func authErr(side CHAPSide, format string, args ...any) error {
	return &AuthError{Side: side, Reason: fmt.Sprintf(format, args...)}
}

// respond answers the target's challenge. keys holds every key of the
// target's (reassembled) response: all of them are collected before acting,
// so their order on the wire does not matter.
func (c *chapAuth) respond(keys map[string]string) ([]wire.KV, error) {
	av, ok := keys["CHAP_A"]
	if !ok {
		return nil, protoErr("target's CHAP challenge lacks CHAP_A")
	}
	if av == valReject || av == valNotUnderstood {
		return nil, authErr(0, "the target supports none of the CHAP algorithms we offered (CHAP_A=%s)", c.offerA().Value)
	}
	a, err := wire.ParseNumber(av, 255)
	if err != nil || !slices.Contains(c.algs, CHAPAlgorithm(a)) {
		return nil, protoErr("target chose CHAP_A=%q, which we did not offer (%s)", av, c.offerA().Value)
	}
	c.alg = CHAPAlgorithm(a)
	iv, ok := keys["CHAP_I"]
	if !ok {
		return nil, protoErr("target's CHAP challenge lacks CHAP_I")
	}
	id, err := wire.ParseNumber(iv, 255)
	if err != nil {
		return nil, protoErr("CHAP_I=%q: want an identifier 0..255", iv)
	}
	cv, ok := keys["CHAP_C"]
	if !ok {
		return nil, protoErr("target's CHAP challenge lacks CHAP_C")
	}
	challenge, err := wire.DecodeBinary(cv)
	if err != nil {
		return nil, protoErr("CHAP_C: %v", err)
	}
	for _, mine := range c.issued {
		if bytes.Equal(mine, challenge) {
			return nil, authErr(CHAPTargetSide, "the target sent back a challenge we issued (reflection attack); refusing to answer it")
		}
	}
	resp := wire.CHAPResponse(int(c.alg), uint8(id), []byte(c.cfg.Secret), challenge)
	out := []wire.KV{
		{Key: "CHAP_N", Value: c.cfg.Username},
		{Key: "CHAP_R", Value: wire.EncodeHex(resp)},
	}
	if c.cfg.mutual() {
		// Our challenge: as long as the digest, at least 16 bytes, from
		// the CSPRNG, and never equal to the target's.
		n := max(c.alg.digestSize(), 16)
		c.ourChallenge = make([]byte, n)
		for {
			var idb [1]byte
			if _, err := io.ReadFull(c.rand, idb[:]); err != nil {
				return nil, fmt.Errorf("iscsi: CHAP challenge: %w", err)
			}
			if _, err := io.ReadFull(c.rand, c.ourChallenge); err != nil {
				return nil, fmt.Errorf("iscsi: CHAP challenge: %w", err)
			}
			c.ourID = idb[0]
			if !bytes.Equal(c.ourChallenge, challenge) {
				break
			}
		}
		out = append(out,
			wire.KV{Key: "CHAP_I", Value: strconv.Itoa(int(c.ourID))},
			wire.KV{Key: "CHAP_C", Value: wire.EncodeHex(c.ourChallenge)})
	}
	return out, nil
}

// verify checks the target's answer to our challenge in mutual CHAP: the
// name must be the configured target user and the response must match, in
// constant time.
func (c *chapAuth) verify(keys map[string]string) error {
	name, okN := keys["CHAP_N"]
	rv, okR := keys["CHAP_R"]
	if !okN || !okR {
		return authErr(CHAPTargetSide, "mutual CHAP: the target did not answer our challenge (no CHAP_N/CHAP_R)")
	}
	if name != c.cfg.TargetUsername {
		return authErr(CHAPTargetSide, "mutual CHAP: the target identified as %q, we expect %q", name, c.cfg.TargetUsername)
	}
	got, err := wire.DecodeBinary(rv)
	if err != nil {
		return protoErr("target CHAP_R: %v", err)
	}
	want := wire.CHAPResponse(int(c.alg), c.ourID, []byte(c.cfg.TargetSecret), c.ourChallenge)
	if len(got) != len(want) || subtle.ConstantTimeCompare(got, want) != 1 {
		return authErr(CHAPTargetSide, "mutual CHAP: the target's response to our challenge is wrong (its secret is not the one we hold for it)")
	}
	c.proved = true
	return nil
}
