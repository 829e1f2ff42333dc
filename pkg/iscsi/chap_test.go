package iscsi

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// TestCHAPKnownAnswers checks H(id ‖ secret ‖ challenge) against values
// computed independently with Python's hashlib:
//
//	hashlib.<alg>(bytes([7]) + b"lunboot-secret-12" + bytes(range(16))).hexdigest()
func TestCHAPKnownAnswers(t *testing.T) {
	challenge := make([]byte, 16)
	for i := range challenge {
		challenge[i] = byte(i)
	}
	tests := []struct {
		alg  CHAPAlgorithm
		want string
	}{
		{CHAPMD5, "453688a56a0bdeff731ac66000f46c75"},
		{CHAPSHA1, "79872eefc00862e96b91e705593f2d3701dfa787"},
		{CHAPSHA256, "92320102648560c53a351bd1d79ee6a1b0cf33a4d8c773486262de19e0db668a"},
		{CHAPSHA3256, "32d02aed9353ddb71f1dce966bcd216167a16bc9d8bf5fa33eeee444db5c904b"},
	}
	for _, tt := range tests {
		got := wire.CHAPResponse(int(tt.alg), 7, []byte("lunboot-secret-12"), challenge)
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("CHAPResponse(%v) = %x, want %s", tt.alg, got, tt.want)
		}
		// The same through the initiator's answer, hex-encoded as sent.
		c := newCHAPAuth(&CHAP{Username: "u", Secret: "lunboot-secret-12", Algorithms: []CHAPAlgorithm{tt.alg}}, nil, nil)
		out, err := c.respond(map[string]string{"CHAP_A": string('0' + byte(tt.alg)), "CHAP_I": "7", "CHAP_C": wire.EncodeBase64(challenge)})
		if err != nil {
			t.Fatalf("respond(%v) = %v", tt.alg, err)
		}
		if out[0] != (wire.KV{Key: "CHAP_N", Value: "u"}) || out[1].Value != "0x"+tt.want {
			t.Errorf("respond(%v) = %v, want CHAP_N=u CHAP_R=0x%s", tt.alg, out, tt.want)
		}
	}
}

func TestCHAPRespondChecks(t *testing.T) {
	ok := map[string]string{"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": "0x0102030405060708090a0b0c0d0e0f10"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range ok {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name string
		keys map[string]string
		want error
	}{
		{"valid", ok, nil},
		{"CHAP_I 256", with("CHAP_I", "256"), ErrProtocol},
		{"CHAP_I -1", with("CHAP_I", "-1"), ErrProtocol},
		{"CHAP_I hex", with("CHAP_I", "0xff"), nil},
		{"no CHAP_I", with("CHAP_I", ""), ErrProtocol},
		{"no CHAP_C", with("CHAP_C", ""), ErrProtocol},
		{"no CHAP_A", with("CHAP_A", ""), ErrProtocol},
		{"CHAP_A not offered", with("CHAP_A", "9"), ErrProtocol},
		{"CHAP_A rejected", with("CHAP_A", "Reject"), ErrAuthenticationFailed},
		{"challenge too long", with("CHAP_C", "0x"+strings.Repeat("ab", 1025)), ErrProtocol},
		{"challenge not binary", with("CHAP_C", "hello"), ErrProtocol},
		{"reflected challenge", with("CHAP_C", "0x00112233445566778899aabbccddeeff"), ErrAuthenticationFailed},
	}
	issued := [][]byte{{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}}
	for _, tt := range tests {
		c := newCHAPAuth(&CHAP{Username: "u", Secret: "0123456789abcdef", Algorithms: []CHAPAlgorithm{CHAPMD5}}, nil, issued)
		_, err := c.respond(tt.keys)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: respond = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Our mutual challenge: digest-sized, at least 16 bytes, fresh each time.
	cfg := &CHAP{Username: "u", Secret: "0123456789abcdef", TargetUsername: "t", TargetSecret: "fedcba9876543210"}
	for _, tt := range []struct {
		alg  string
		size int
	}{{"5", 16}, {"6", 20}, {"7", 32}, {"8", 32}} {
		c1, c2 := newCHAPAuth(cfg, nil, nil), newCHAPAuth(cfg, nil, nil)
		o1, err1 := c1.respond(with("CHAP_A", tt.alg))
		_, err2 := c2.respond(with("CHAP_A", tt.alg))
		if err1 != nil || err2 != nil {
			t.Fatalf("mutual respond(CHAP_A=%s) = %v, %v", tt.alg, err1, err2)
		}
		if len(c1.ourChallenge) != tt.size || string(c1.ourChallenge) == string(c2.ourChallenge) {
			t.Errorf("CHAP_A=%s: challenge of %d bytes (want %d), equal in two logins: %v", tt.alg, len(c1.ourChallenge), tt.size, string(c1.ourChallenge) == string(c2.ourChallenge))
		}
		if len(o1) != 4 || o1[2].Key != "CHAP_I" || o1[3].Key != "CHAP_C" {
			t.Errorf("mutual answer = %v, want CHAP_N, CHAP_R, CHAP_I, CHAP_C", o1)
		}
	}
}

const (
	initSecret   = "init-secret-Zq8uX2"
	targetSecret = "target-secret-Kp4wR7"
)

func TestCHAPLogin(t *testing.T) {
	oneWay := &iscsitest.CHAP{Username: "alice", Secret: initSecret}
	mutual := &iscsitest.CHAP{Username: "alice", Secret: initSecret, TargetUsername: "tgt", TargetSecret: targetSecret}
	cfgOne := &CHAP{Username: "alice", Secret: initSecret}
	cfgMutual := &CHAP{Username: "alice", Secret: initSecret, TargetUsername: "tgt", TargetSecret: targetSecret}
	with := func(c iscsitest.CHAP, f func(*iscsitest.CHAP)) *iscsitest.CHAP { f(&c); return &c }
	tests := []struct {
		name     string
		target   *iscsitest.CHAP
		hooks    iscsitest.Hooks
		cfg      *CHAP
		want     error
		wantMode CHAPMode
		wantAlg  CHAPAlgorithm
		wantLog  string
		// wantSide is whose credentials a failure concerns
		// (FailedCHAPSide); checked when want is ErrAuthenticationFailed.
		wantSide CHAPSide
	}{
		{name: "one-way", target: oneWay, cfg: cfgOne, wantMode: CHAPOneWay, wantAlg: CHAPSHA3256},
		{name: "one-way MD5 only target", target: with(*oneWay, func(c *iscsitest.CHAP) { c.Algorithms = []int{5} }), cfg: cfgOne, wantMode: CHAPOneWay, wantAlg: CHAPMD5},
		{name: "one-way base64", target: with(*oneWay, func(c *iscsitest.CHAP) { c.Base64 = true; c.ChallengeLen = 1024 }), cfg: cfgOne, wantMode: CHAPOneWay, wantAlg: CHAPSHA3256},
		{name: "our SHA-1 preference", target: oneWay, cfg: &CHAP{Username: "alice", Secret: initSecret, Algorithms: []CHAPAlgorithm{CHAPSHA1, CHAPMD5}}, wantMode: CHAPOneWay, wantAlg: CHAPSHA1},
		{name: "mutual", target: mutual, cfg: cfgMutual, wantMode: CHAPMutual, wantAlg: CHAPSHA3256},
		{name: "mutual base64", target: with(*mutual, func(c *iscsitest.CHAP) { c.Base64 = true }), cfg: cfgMutual, wantMode: CHAPMutual, wantAlg: CHAPSHA3256},
		{name: "target needs no auth, one-way configured", target: nil, cfg: cfgOne, wantMode: CHAPNone},
		{name: "tgtd numbering (7 = SHA-1)", target: with(*oneWay, func(c *iscsitest.CHAP) { c.Algorithms = []int{5, 7}; c.SHA1As7 = true }),
			cfg: cfgOne, wantMode: CHAPOneWay, wantAlg: CHAPMD5, wantLog: "retrying without CHAP_A=7"},
		{name: "tgtd numbering, mutual", target: with(*mutual, func(c *iscsitest.CHAP) { c.Algorithms = []int{5, 7}; c.SHA1As7 = true }),
			cfg: cfgMutual, wantMode: CHAPMutual, wantAlg: CHAPMD5},
		// Offered SHA-256 only: tgtd's SHA-1-as-7 fails, and there is no
		// retry with MD5, which the user did not offer (a downgrade).
		{name: "tgtd numbering, SHA-256 only: no fallback", target: with(*oneWay, func(c *iscsitest.CHAP) { c.Algorithms = []int{5, 7}; c.SHA1As7 = true }),
			cfg: &CHAP{Username: "alice", Secret: initSecret, Algorithms: []CHAPAlgorithm{CHAPSHA256}}, want: ErrAuthenticationFailed, wantSide: CHAPInitiatorSide,
			wantLog: "no retry with another"},
		{name: "wrong secret", target: oneWay, cfg: &CHAP{Username: "alice", Secret: "not-the-secret-1"}, want: ErrAuthenticationFailed, wantSide: CHAPInitiatorSide},
		{name: "wrong user", target: oneWay, cfg: &CHAP{Username: "bob", Secret: initSecret}, want: ErrAuthenticationFailed, wantSide: CHAPInitiatorSide},
		{name: "no CHAP configured", target: oneWay, cfg: nil, want: ErrAuthenticationFailed, wantSide: CHAPInitiatorSide},
		{name: "mutual: wrong target response", target: with(*mutual, func(c *iscsitest.CHAP) { c.WrongMutualResponse = true }), cfg: cfgMutual, want: ErrAuthenticationFailed, wantSide: CHAPTargetSide},
		{name: "mutual: target skips proof", target: with(*mutual, func(c *iscsitest.CHAP) { c.SkipMutual = true }), cfg: cfgMutual, want: ErrAuthenticationFailed, wantSide: CHAPTargetSide},
		{name: "mutual: target skips authentication", target: with(*mutual, func(c *iscsitest.CHAP) { c.SkipAuth = true }), cfg: cfgMutual, want: ErrAuthenticationFailed, wantSide: CHAPTargetSide},
		{name: "mutual: target name differs", target: with(*mutual, func(c *iscsitest.CHAP) { c.TargetUsername = "mallory" }), cfg: cfgMutual, want: ErrAuthenticationFailed, wantSide: CHAPTargetSide},
		{name: "mutual: target without outgoing account", target: oneWay, cfg: cfgMutual, want: ErrAuthenticationFailed, wantSide: CHAPInitiatorSide}, // the target answers 02/01, as for a wrong secret,
		{name: "keys in another order", target: oneWay, cfg: cfgOne, wantMode: CHAPOneWay, wantAlg: CHAPSHA3256,
			hooks: iscsitest.Hooks{EditLoginKeys: func(stage int, kvs []iscsitest.KV) []iscsitest.KV {
				for i, j := 0, len(kvs)-1; i < j; i, j = i+1, j-1 {
					kvs[i], kvs[j] = kvs[j], kvs[i]
				}
				return kvs
			}}},
		{name: "CHAP_I out of range", target: oneWay, cfg: cfgOne, want: ErrProtocol, hooks: editKey("CHAP_I", "300")},
		{name: "CHAP_A not offered", target: oneWay, cfg: cfgOne, want: ErrProtocol, hooks: editKey("CHAP_A", "9")},
		{name: "challenge over 1024 bytes", target: oneWay, cfg: cfgOne, want: ErrProtocol, hooks: editKey("CHAP_C", "0x"+strings.Repeat("00", 1025))},
		{name: "CHAP_A repeated", target: oneWay, cfg: cfgOne, want: ErrProtocol, hooks: iscsitest.Hooks{EditLoginKeys: func(stage int, kvs []iscsitest.KV) []iscsitest.KV {
			for _, kv := range kvs {
				if kv.Key == "CHAP_A" {
					return append(kvs, kv)
				}
			}
			return kvs
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := startTarget(t, iscsitest.Options{CHAP: tt.target, Hooks: tt.hooks})
			cfg := config(t, tg)
			log, logs := newLog(t)
			cfg.Logger = log
			cfg.CHAP = tt.cfg
			s, err := Login(tctx(t), cfg)
			if err != nil {
				for _, secret := range []string{initSecret, targetSecret} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q reveals a secret", err)
					}
				}
			}
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Login = %v, want %v", err, tt.want)
				}
				if tt.want == ErrAuthenticationFailed {
					if got := FailedCHAPSide(err); got != tt.wantSide {
						t.Errorf("FailedCHAPSide(%v) = %v, want %v", err, got, tt.wantSide)
					}
				}
			} else {
				if err != nil {
					t.Fatalf("Login = %v", err)
				}
				info := s.Info()
				if info.CHAP != tt.wantMode || info.CHAPAlgorithm != tt.wantAlg {
					t.Errorf("Info() CHAP = %v/%v, want %v/%v", info.CHAP, info.CHAPAlgorithm, tt.wantMode, tt.wantAlg)
				}
				writeRead(t, s, 0, 0, randBytes(4096))
				s.Close()
			}
			out := logs.String()
			for _, secret := range []string{initSecret, targetSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("logs reveal a secret")
				}
			}
			if tt.wantLog != "" && !strings.Contains(out, tt.wantLog) {
				t.Errorf("logs lack %q", tt.wantLog)
			}
		})
	}
}

func editKey(key, value string) iscsitest.Hooks {
	return iscsitest.Hooks{EditLoginKeys: func(stage int, kvs []iscsitest.KV) []iscsitest.KV {
		for i := range kvs {
			if kvs[i].Key == key {
				kvs[i].Value = value
			}
		}
		return kvs
	}}
}

// TestCHAPIdenticalSecrets: refused before anything is sent. It runs in a
// synctest bubble, so a dial on another goroutine would have happened by
// synctest.Wait.
func TestCHAPIdenticalSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var conns atomic.Int32
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return nil, errors.New("no target here")
		}
		cfg := Config{Portal: "192.0.2.1", Dial: dial, TargetName: "iqn.x:t", InitiatorName: "iqn.x:i",
			CHAP: &CHAP{Username: "a", Secret: initSecret, TargetUsername: "t", TargetSecret: initSecret}}
		_, err := Login(context.Background(), cfg)
		if err == nil || strings.Contains(err.Error(), initSecret) {
			t.Fatalf("Login with identical secrets = %v, want an error without the secret", err)
		}
		synctest.Wait()
		if n := conns.Load(); n != 0 {
			t.Errorf("Login with identical secrets opened %d connections, want 0", n)
		}
	})
}

func TestCHAPShortSecretWarning(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{CHAP: &iscsitest.CHAP{Username: "u", Secret: "short"}})
	cfg := config(t, tg)
	log, logs := newLog(t)
	cfg.Logger = log
	cfg.CHAP = &CHAP{Username: "u", Secret: "short"}
	mustLogin(t, cfg)
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "shorter than 12") || strings.Contains(out, "short\"") {
		t.Errorf("logs = %q, want a warning about the short secret that does not quote it", out)
	}
}

// TestCHAPReflectedOnReconnect: after a drop, the target presents the
// challenge we issued in the first login as its own; the initiator must
// not answer it, so the commands waiting for the reconnect time out.
func TestCHAPReflectedOnReconnect(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{CHAP: &iscsitest.CHAP{Username: "alice", Secret: initSecret, TargetUsername: "tgt",
		TargetSecret: targetSecret, ReflectChallenge: true}})
	cfg := config(t, tg)
	log, logs := newLog(t)
	cfg.Logger = log
	cfg.CHAP = &CHAP{Username: "alice", Secret: initSecret, TargetUsername: "tgt", TargetSecret: targetSecret}
	cfg.RecoveryTimeout = 1500 * time.Millisecond
	p := DefaultParams()
	p.DefaultTime2Wait = 0
	cfg.Params = &p
	s := mustLogin(t, cfg)
	tg.DropConnections()
	_, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
	if !errors.Is(err, ErrRecoveryTimeout) || !errors.Is(err, ErrAuthenticationFailed) {
		t.Fatalf("Execute after a reflecting reconnect = %v, want ErrRecoveryTimeout wrapping ErrAuthenticationFailed", err)
	}
	if !strings.Contains(logs.String(), "reflection") {
		t.Errorf("logs do not mention the reflection")
	}
}

// TestCHAPFormatHidesSecrets: CHAP is the one credentials type across
// lunboot (command line, login, hand-off); no way of printing it, or a
// Config holding it, shows a secret.
func TestCHAPFormatHidesSecrets(t *testing.T) {
	c := CHAP{Username: "alice", Secret: initSecret, TargetUsername: "tgt", TargetSecret: targetSecret}
	cfg := Config{Portal: "192.0.2.1", TargetName: "iqn.x:y", InitiatorName: "iqn.x:i", CHAP: &c}
	var outs []string
	for _, v := range []any{c, &c, cfg, &cfg, CHAP{Secret: initSecret}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
		outs = append(outs, buf.String())
	}
	js, err := json.Marshal(struct{ C CHAP }{c})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(js))
	for _, out := range outs {
		for _, s := range []string{initSecret, targetSecret} {
			if strings.Contains(out, s) {
				t.Errorf("output shows a secret: %s", out)
			}
		}
	}
	if got, want := c.String(), `mutual user "alice" target user "tgt"`; got != want {
		t.Errorf("CHAP.String() = %q, want %q", got, want)
	}
}
