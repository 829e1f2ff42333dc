package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
)

func TestNegotiatorAnswers(t *testing.T) {
	tests := []struct {
		key, answer string
		wantErr     bool
		check       func(p Params, n *negotiator) bool
	}{
		{"MaxBurstLength", "262144", false, func(p Params, _ *negotiator) bool { return p.MaxBurstLength == 262144 }},
		{"MaxBurstLength", "16776192", false, func(p Params, _ *negotiator) bool { return p.MaxBurstLength == 16776192 }},
		{"MaxBurstLength", "16777215", true, nil}, // above our offer: min violated
		{"MaxBurstLength", "100", true, nil},      // below the range
		{"MaxBurstLength", "lots", true, nil},
		{"FirstBurstLength", "65536", false, func(p Params, _ *negotiator) bool { return p.FirstBurstLength == 65536 }},
		{"DefaultTime2Wait", "5", false, func(p Params, _ *negotiator) bool { return p.DefaultTime2Wait == 5 }},
		{"DefaultTime2Wait", "1", true, nil}, // below our offer: max violated
		{"DefaultTime2Wait", "3601", true, nil},
		{"InitialR2T", "Yes", false, func(p Params, _ *negotiator) bool { return p.InitialR2T }},
		{"InitialR2T", "No", false, func(p Params, _ *negotiator) bool { return !p.InitialR2T }},
		{"InitialR2T", "Maybe", true, nil},
		{"ImmediateData", "No", false, func(p Params, _ *negotiator) bool { return !p.ImmediateData }},
		{"DataPDUInOrder", "No", true, nil}, // OR with our Yes
		{"ErrorRecoveryLevel", "1", true, nil},
		{"MaxConnections", "2", true, nil},
		{"HeaderDigest", "CRC32C", false, func(_ Params, n *negotiator) bool { return n.hd }},
		{"HeaderDigest", "None", false, func(_ Params, n *negotiator) bool { return !n.hd }},
		{"HeaderDigest", "MD5", true, nil},
		{"DataDigest", "Reject", false, func(_ Params, n *negotiator) bool { return !n.dd }},
		{"MaxBurstLength", "Reject", false, func(p Params, _ *negotiator) bool { return p.MaxBurstLength == 262144 }},
		{"InitialR2T", "NotUnderstood", false, func(p Params, _ *negotiator) bool { return p.InitialR2T }},
		{"FirstBurstLength", "Irrelevant", false, func(p Params, _ *negotiator) bool { return p.FirstBurstLength == 65536 }},
		{"MaxRecvDataSegmentLength", "4096", false, func(_ Params, n *negotiator) bool { return n.targetMRDSL == 4096 }},
		{"MaxRecvDataSegmentLength", "100", true, nil},
		{"MaxRecvDataSegmentLength", "16777216", true, nil},
		{"TargetPortalGroupTag", "7", false, func(_ Params, n *negotiator) bool { return n.tpgt == 7 }},
		{"TargetPortalGroupTag", "70000", true, nil},
		{"TargetName", "iqn.x", true, nil},
	}
	for _, tt := range tests {
		n := newNegotiator(slog.New(slog.DiscardHandler), DefaultParams(), DigestPrefer, DigestPrefer)
		n.offers()
		err := n.receive([]wire.KV{{Key: tt.key, Value: tt.answer}})
		var p Params
		if err == nil {
			p, err = n.finish()
		}
		if (err != nil) != tt.wantErr {
			t.Errorf("answer %s=%s: error = %v, want error %v", tt.key, tt.answer, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("answer %s=%s: error %v does not wrap ErrProtocol", tt.key, tt.answer, err)
		}
		if tt.check != nil && err == nil && !tt.check(p, n) {
			t.Errorf("answer %s=%s: negotiated %+v (hd %v dd %v mrdsl %d tpgt %d): wrong result", tt.key, tt.answer, p, n.hd, n.dd, n.targetMRDSL, n.tpgt)
		}
	}
}

// TestNegotiatorRequiredDigest: with DigestRequire the initiator offers
// CRC32C alone, and a target that does not agree fails the negotiation
// with a *DigestError naming the key (RFC 7143 §13.1), whichever way it
// refuses: answering Reject, proposing None only, or never answering.
func TestNegotiatorRequiredDigest(t *testing.T) {
	for _, tt := range []struct {
		name    string
		kvs     []wire.KV
		wantKey string // "" for success
	}{
		{"accepted", []wire.KV{{Key: "HeaderDigest", Value: "CRC32C"}, {Key: "DataDigest", Value: "None"}}, ""},
		{"rejected", []wire.KV{{Key: "HeaderDigest", Value: "Reject"}}, "HeaderDigest"},
		{"not understood", []wire.KV{{Key: "HeaderDigest", Value: "NotUnderstood"}}, "HeaderDigest"},
		{"answered None (tgtd)", []wire.KV{{Key: "HeaderDigest", Value: "None"}}, "HeaderDigest"},
		{"never answered", []wire.KV{{Key: "DataDigest", Value: "None"}}, "HeaderDigest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := newNegotiator(slog.New(slog.DiscardHandler), DefaultParams(), DigestRequire, DigestPrefer)
			for _, kv := range n.offers() {
				if kv.Key == "HeaderDigest" && kv.Value != "CRC32C" {
					t.Errorf("offer HeaderDigest=%s, want CRC32C alone", kv.Value)
				}
				if kv.Key == "DataDigest" && kv.Value != "CRC32C,None" {
					t.Errorf("offer DataDigest=%s, want CRC32C,None", kv.Value)
				}
			}
			err := n.receive(tt.kvs)
			if err == nil {
				_, err = n.finish()
			}
			var de *DigestError
			switch {
			case tt.wantKey == "" && err != nil:
				t.Errorf("negotiation = %v, want success", err)
			case tt.wantKey != "" && (!errors.As(err, &de) || de.Key != tt.wantKey):
				t.Errorf("negotiation = %v, want a *DigestError for %s", err, tt.wantKey)
			}
		})
	}
	// The target proposes first (RFC 7143 §6.2) and offers None only.
	n := newNegotiator(slog.New(slog.DiscardHandler), DefaultParams(), DigestPrefer, DigestRequire)
	var de *DigestError
	if err := n.receive([]wire.KV{{Key: "DataDigest", Value: "None"}}); !errors.As(err, &de) || de.Key != "DataDigest" || !de.Proposed {
		t.Errorf("target proposes DataDigest=None: %v, want a *DigestError (proposed) for DataDigest", err)
	}
}

func TestNegotiatorOffersEveryKey(t *testing.T) {
	n := newNegotiator(slog.New(slog.DiscardHandler), DefaultParams(), DigestNone, DigestNone)
	var keys []string
	for _, kv := range n.offers() {
		keys = append(keys, kv.Key)
	}
	want := []string{"HeaderDigest", "DataDigest", "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
		"FirstBurstLength", "DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder",
		"DataSequenceInOrder", "ErrorRecoveryLevel", "MaxRecvDataSegmentLength"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("offered keys (-want +got):\n%s", diff)
	}
}

func TestNegotiatorProposals(t *testing.T) {
	n := newNegotiator(slog.New(slog.DiscardHandler), DefaultParams(), DigestPrefer, DigestNone)
	n.offers()
	// Each key answered once; then the target proposes new ones.
	for _, k := range []string{"HeaderDigest", "DataDigest", "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength",
		"DefaultTime2Wait", "DefaultTime2Retain", "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder", "ErrorRecoveryLevel"} {
		n.done[k] = true
	}
	delete(n.offered, "FirstBurstLength")
	err := n.receive([]wire.KV{{Key: "FirstBurstLength", Value: "4096"}, {Key: "X-com.example.Vendor", Value: "1"}, {Key: "OFMarker", Value: "Yes"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.KV{{Key: "FirstBurstLength", Value: "4096"}, {Key: "X-com.example.Vendor", Value: valNotUnderstood}, {Key: "OFMarker", Value: valNotUnderstood}}
	if diff := cmp.Diff(want, n.takeAnswers()); diff != "" {
		t.Errorf("answers to proposals (-want +got):\n%s", diff)
	}
	if err := n.receive([]wire.KV{{Key: "FirstBurstLength", Value: "512"}}); !errors.Is(err, ErrProtocol) {
		t.Errorf("repeated key: error = %v, want ErrProtocol", err)
	}
}

func TestLoginNegotiationWithTarget(t *testing.T) {
	tests := []struct {
		name    string
		o       iscsitest.Options
		cfg     func(*Config)
		wantErr error
		check   func(t *testing.T, info SessionInfo, st iscsitest.Stats, logs string)
	}{
		{name: "target splits its text (C bit)", o: iscsitest.Options{TextSplit: 7, Alias: "test-alias", TPGT: 9},
			check: func(t *testing.T, info SessionInfo, _ iscsitest.Stats, _ string) {
				if info.TPGT != 9 || info.TargetAlias != "test-alias" || info.TargetMaxRecvDataSegmentLength != 8192 {
					t.Errorf("Info() = TPGT %d alias %q MRDSL %d, want 9, test-alias, 8192", info.TPGT, info.TargetAlias, info.TargetMaxRecvDataSegmentLength)
				}
			}},
		{name: "we split our text (C bit)", o: iscsitest.Options{}, cfg: func(c *Config) { c.loginChunk = 40 },
			check: func(t *testing.T, _ SessionInfo, st iscsitest.Stats, _ string) {
				if st.ContinuedLoginPDUs < 5 {
					t.Errorf("target saw %d continued Login Requests, want several", st.ContinuedLoginPDUs)
				}
			}},
		{name: "both split", o: iscsitest.Options{TextSplit: 5}, cfg: func(c *Config) { c.loginChunk = 13 }},
		{name: "every key sent with its value", check: func(t *testing.T, _ SessionInfo, st iscsitest.Stats, _ string) {
			got := map[string]string{}
			for _, kv := range st.LastKeys {
				got[kv.Key] = kv.Value
			}
			for k, v := range map[string]string{"MaxConnections": "1", "ErrorRecoveryLevel": "0", "DataPDUInOrder": "Yes",
				"DefaultTime2Wait": "2", "DefaultTime2Retain": "20", "MaxOutstandingR2T": "1", "HeaderDigest": "None",
				"InitialR2T": "No", "ImmediateData": "Yes", "SessionType": "Normal", "AuthMethod": "None"} {
				if got[k] != v {
					t.Errorf("initiator sent %s=%q, want %q", k, got[k], v)
				}
			}
		}},
		{name: "target proposes keys (LIO FirstBurstLength)", o: iscsitest.Options{Propose: []iscsitest.KV{{Key: "FirstBurstLength", Value: "4096"}, {Key: "X-com.example.Thing", Value: "on"}}},
			check: func(t *testing.T, info SessionInfo, _ iscsitest.Stats, _ string) {
				if info.Params.FirstBurstLength != 4096 {
					t.Errorf("FirstBurstLength = %d, want 4096", info.Params.FirstBurstLength)
				}
			}},
		{name: "digest rejected", o: iscsitest.Options{Answers: map[string]string{"HeaderDigest": "Reject"}},
			cfg: func(c *Config) { c.HeaderDigest, c.DataDigest = DigestPrefer, DigestPrefer },
			check: func(t *testing.T, info SessionInfo, _ iscsitest.Stats, logs string) {
				if info.HeaderDigest || !info.DataDigest {
					t.Errorf("digests = %v/%v, want header off (rejected), data on", info.HeaderDigest, info.DataDigest)
				}
				if !strings.Contains(logs, "HeaderDigest") {
					t.Errorf("no warning about the rejected HeaderDigest")
				}
			}},
		{name: "target prefers no digests", o: iscsitest.Options{Digests: "None"}, cfg: func(c *Config) { c.HeaderDigest = DigestPrefer },
			check: func(t *testing.T, info SessionInfo, _ iscsitest.Stats, _ string) {
				if info.HeaderDigest {
					t.Errorf("HeaderDigest negotiated on against a target that accepts None only")
				}
			}},
		{name: "min answer above offer", o: iscsitest.Options{Answers: map[string]string{"MaxBurstLength": "16777215"}}, wantErr: ErrProtocol},
		{name: "max answer below offer", o: iscsitest.Options{Answers: map[string]string{"DefaultTime2Wait": "0"}}, wantErr: ErrProtocol},
		{name: "list answer not offered", o: iscsitest.Options{Answers: map[string]string{"DataDigest": "CRC32C"}}, wantErr: ErrProtocol},
		{name: "key repeated", o: iscsitest.Options{Hooks: iscsitest.Hooks{EditLoginKeys: func(stage int, kvs []iscsitest.KV) []iscsitest.KV {
			if stage == 1 {
				kvs = append(kvs, iscsitest.KV{Key: "MaxBurstLength", Value: "4096"})
			}
			return kvs
		}}}, wantErr: ErrProtocol},
		{name: "wrong opcode during login", o: iscsitest.Options{Hooks: iscsitest.Hooks{LoginOpcode: 0x21}}, wantErr: ErrProtocol},
		{name: "authentication failure", o: iscsitest.Options{Hooks: iscsitest.Hooks{LoginStatus: func(int) (uint8, uint8) { return 2, 1 }}}, wantErr: ErrAuthenticationFailed},
		{name: "not authorised", o: iscsitest.Options{Hooks: iscsitest.Hooks{LoginStatus: func(int) (uint8, uint8) { return 2, 2 }}}, wantErr: ErrAuthorizationFailed},
		{name: "target removed", o: iscsitest.Options{Hooks: iscsitest.Hooks{LoginStatus: func(int) (uint8, uint8) { return 2, 4 }}}, wantErr: ErrTargetRemoved},
		{name: "service unavailable", o: iscsitest.Options{Hooks: iscsitest.Hooks{LoginStatus: func(int) (uint8, uint8) { return 3, 1 }}}, wantErr: ErrTargetUnavailable},
		{name: "wrong target name", cfg: func(c *Config) { c.TargetName = "iqn.2026-01.org.lunboot:nothere" }, wantErr: ErrTargetNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := startTarget(t, tt.o)
			cfg := config(t, tg)
			log, logs := newLog(t)
			cfg.Logger = log
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s, err := Login(tctx(t), cfg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Login = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login = %v", err)
			}
			defer s.Close()
			writeRead(t, s, 0, 0, randBytes(128<<10))
			if tt.check != nil {
				tt.check(t, s.Info(), tg.Stats(), logs.String())
			}
			noViolations(t, tg)
		})
	}
}

// TestLoginErrorMessages: a LoginError states the status and its meaning;
// advice ("check …") is pkg/advice's, so the console does not print it
// twice.
func TestLoginErrorMessages(t *testing.T) {
	tests := []struct {
		class, detail uint8
		want          string
	}{
		{2, 1, "authentication failed"},
		{2, 2, "initiator iqn.2026-11.org.lunboot:me not authorized"},
		{2, 3, "target or LUN not found"},
		{3, 1, "service unavailable"},
		{3, 2, "out of resources"},
		{2, 0x0b, "invalid during login"},
	}
	for _, tt := range tests {
		e := &LoginError{Class: tt.class, Detail: tt.detail, Target: "iqn.x:t", Portal: "192.0.2.1:3260", Initiator: "iqn.2026-11.org.lunboot:me"}
		msg := e.Error()
		if !strings.Contains(msg, tt.want) || !strings.Contains(msg, "iqn.x:t") || !strings.Contains(msg, "192.0.2.1:3260") ||
			!strings.Contains(msg, fmt.Sprintf("%02x/%02x", tt.class, tt.detail)) {
			t.Errorf("LoginError{%02x/%02x}.Error() = %q, want it to name target, portal, status and %q", tt.class, tt.detail, msg, tt.want)
		}
		if strings.Contains(msg, "check") {
			t.Errorf("LoginError{%02x/%02x}.Error() = %q gives advice; the caller does", tt.class, tt.detail, msg)
		}
	}
}

func TestParseTargetAddress(t *testing.T) {
	tests := []struct {
		in      string
		want    TargetAddress
		wantErr bool
	}{
		{"10.0.0.1:3261,2", TargetAddress{"10.0.0.1", 3261, 2}, false},
		{"10.0.0.1,2", TargetAddress{"10.0.0.1", 3260, 2}, false},
		{"10.0.0.1", TargetAddress{"10.0.0.1", 3260, 0}, false},
		{"[2001:db8::1]:3262,5", TargetAddress{"2001:db8::1", 3262, 5}, false},
		{"[2001:db8::1],5", TargetAddress{"2001:db8::1", 3260, 5}, false},
		{"[fe80::1%eth0]:3260,1", TargetAddress{"fe80::1%eth0", 3260, 1}, false},
		{"san.example.com:3260,1", TargetAddress{"san.example.com", 3260, 1}, false},
		{"san.example.com", TargetAddress{"san.example.com", 3260, 0}, false},
		{"2001:db8::1", TargetAddress{"2001:db8::1", 3260, 0}, false},
		{"2001:db8::1:3260,1", TargetAddress{"2001:db8::1:3260", 3260, 1}, false}, // ambiguous: read as an address
		{"[2001:db8::1", TargetAddress{}, true},
		{"[nothost]:3260", TargetAddress{}, true},
		{"10.0.0.1:0", TargetAddress{}, true},
		{"10.0.0.1:70000", TargetAddress{}, true},
		{"10.0.0.1:32x", TargetAddress{}, true},
		{"10.0.0.1:3260,x", TargetAddress{}, true},
		{"10.0.0.1:3260,70000", TargetAddress{}, true},
		{":3260", TargetAddress{}, true},
		{"", TargetAddress{}, true},
	}
	for _, tt := range tests {
		got, err := parseTargetAddress(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("parseTargetAddress(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRedirect(t *testing.T) {
	final := startTarget(t, iscsitest.Options{TPGT: 4})
	_, port, _ := net.SplitHostPort(final.Addr())
	forms := []string{
		final.Addr() + ",4",
		"localhost:" + port + ",4",
		final.Addr(),
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6 := iscsitest.NewTarget(iscsitest.Options{TPGT: 4})
		go v6.Serve(ln)
		t.Cleanup(func() { v6.Close() })
		forms = append(forms, ln.Addr().String()+",4")
	}
	for _, addr := range forms {
		t.Run(addr, func(t *testing.T) {
			for _, permanent := range []bool{false, true} {
				hops := 0
				first := startTarget(t, iscsitest.Options{Hooks: iscsitest.Hooks{Redirect: func(n int) (string, bool) {
					hops++
					return addr, permanent
				}}})
				cfg := config(t, first)
				s := mustLogin(t, cfg)
				info := s.Info()
				want := addr
				if i := strings.LastIndexByte(addr, ','); i > 0 {
					want = addr[:i]
				}
				if strings.HasPrefix(want, "localhost:") {
					want = "127.0.0.1:" + port
				}
				if a, _ := parseTargetAddress(addr); info.Portal != a.Portal() && info.Portal != want {
					t.Errorf("permanent=%v: Info().Portal = %s, want %s", permanent, info.Portal, a.Portal())
				}
				if hops != 1 || info.TPGT != 4 {
					t.Errorf("permanent=%v: redirects = %d, TPGT = %d; want 1, 4", permanent, hops, info.TPGT)
				}
				writeRead(t, s, 0, 0, randBytes(4096))
				s.Close()
			}
		})
	}
	t.Run("loop", func(t *testing.T) {
		var self *iscsitest.Target
		self = startTarget(t, iscsitest.Options{Hooks: iscsitest.Hooks{Redirect: func(int) (string, bool) { return self.Addr(), false }}})
		_, err := Login(tctx(t), config(t, self))
		if err == nil || !strings.Contains(err.Error(), "redirections") {
			t.Errorf("Login through a redirect loop = %v, want a too-many-redirections error", err)
		}
	})
}

// readPDU reads one PDU (no digests) from c.
func readPDU(c net.Conn) (wire.BHS, []byte, error) {
	var h wire.BHS
	if _, err := ioReadFull(c, h[:]); err != nil {
		return h, nil, err
	}
	data := make([]byte, h.DataLen()+wire.Pad(h.DataLen()))
	_, err := ioReadFull(c, data)
	return h, data[:h.DataLen()], err
}

// TestLoginHostile runs in a synctest bubble over net.Pipe, so the silent
// target's wait for the LoginTimeout is virtual.
func TestLoginHostile(t *testing.T) {
	loginRsp := func(mod func(*wire.LoginResponse)) func(c net.Conn) {
		return func(c net.Conn) {
			h, _, err := readPDU(c)
			if err != nil {
				return
			}
			req, _ := wire.DecodeLoginRequest(&h)
			r := wire.LoginResponse{CSG: req.CSG, ITT: req.ITT, ISID: req.ISID, ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN}
			mod(&r)
			var b wire.BHS
			r.Encode(&b)
			c.Write(b[:])
			time.Sleep(100 * time.Millisecond)
		}
	}
	tests := []struct {
		name  string
		serve func(c net.Conn)
		want  error
	}{
		{"giant DataSegmentLength", loginRsp(func(r *wire.LoginResponse) { r.DataLen = wire.MaxDataSegment }), ErrProtocol},
		{"wrong ITT", loginRsp(func(r *wire.LoginResponse) { r.ITT++ }), ErrProtocol},
		{"wrong ISID", loginRsp(func(r *wire.LoginResponse) { r.ISID[5]++ }), ErrProtocol},
		{"version 5", loginRsp(func(r *wire.LoginResponse) { r.VersionActive = 5 }), ErrProtocol},
		{"transit to FFP from security", loginRsp(func(r *wire.LoginResponse) { r.Transit, r.NSG = true, 3 }), ErrProtocol},
		{"T and C", loginRsp(func(r *wire.LoginResponse) { r.Transit, r.Continue, r.NSG = true, true, 1 }), ErrProtocol},
		{"redirect without address", loginRsp(func(r *wire.LoginResponse) { r.StatusClass, r.StatusDetail = 1, 1 }), ErrProtocol},
		// Takes the request (as a socket buffer would) and does not
		// answer for 3s.
		{"silent target", func(c net.Conn) { go io.Copy(io.Discard, c); time.Sleep(3 * time.Second) }, context.DeadlineExceeded},
		{"closes at once", func(c net.Conn) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var served sync.WaitGroup
				defer served.Wait() // the bubble must end with no goroutine left
				dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
					a, b := net.Pipe()
					served.Go(func() {
						defer b.Close()
						tt.serve(b)
					})
					return a, nil
				}
				cfg := Config{Portal: "192.0.2.1", Dial: dial, TargetName: "iqn.x:t", InitiatorName: "iqn.x:i", LoginTimeout: 500 * time.Millisecond, Logger: testLogger(t)}
				start := time.Now()
				_, err := Login(context.Background(), cfg)
				if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
					t.Fatalf("Login = %v, want %v", err, tt.want)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("Login took %v despite a 500ms LoginTimeout", d)
				}
			})
		})
	}
}

func TestDiscover(t *testing.T) {
	extra := []iscsitest.DiscoveryTarget{
		{Name: "iqn.2026-01.org.lunboot:other", Addresses: []string{"192.0.2.7:3260,1", "[2001:db8::7]:3261,2"}},
		{Name: "iqn.2026-01.org.lunboot:bare"},
	}
	for _, split := range []int{0, 10} {
		t.Run(fmt.Sprintf("split %d", split), func(t *testing.T) {
			tg := startTarget(t, iscsitest.Options{DiscoveryExtra: extra, TextSplit: split, TPGT: 3})
			cfg := config(t, tg)
			cfg.TargetName = ""
			got, err := Discover(tctx(t), cfg)
			if err != nil {
				t.Fatalf("Discover = %v", err)
			}
			host, p, _ := net.SplitHostPort(tg.Addr())
			var port uint16
			fmt.Sscan(p, &port)
			want := []Target{
				{Name: tg.Name(), Addresses: []TargetAddress{{host, port, 3}}},
				{Name: "iqn.2026-01.org.lunboot:other", Addresses: []TargetAddress{{"192.0.2.7", 3260, 1}, {"2001:db8::7", 3261, 2}}},
				{Name: "iqn.2026-01.org.lunboot:bare", Addresses: []TargetAddress{{host, port, 3}}},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Discover (-want +got):\n%s", diff)
			}
			if st := tg.Stats(); st.DiscoveryLogouts != 1 {
				t.Errorf("discovery logouts = %d, want 1", st.DiscoveryLogouts)
			}
			noViolations(t, tg)
		})
	}
}

func TestParseSendTargets(t *testing.T) {
	tests := []struct {
		in      string
		want    []Target
		wantErr bool
	}{
		{"TargetName=a\x00TargetAddress=1.2.3.4:3260,1\x00TargetName=b\x00", []Target{{Name: "a", Addresses: []TargetAddress{{"1.2.3.4", 3260, 1}}}, {Name: "b"}}, false},
		{"TargetAlias=x\x00", nil, false},
		{"TargetAddress=1.2.3.4:3260,1\x00", nil, true},
		{"TargetName=\x00", nil, true},
		{"TargetName=a\x00TargetAddress=[::1\x00", nil, true},
		{"TargetName=a", nil, true},
	}
	for _, tt := range tests {
		got, err := parseSendTargets([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("parseSendTargets(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("parseSendTargets(%q) error %v does not wrap ErrProtocol", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
			t.Errorf("parseSendTargets(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	base := Config{Portal: "127.0.0.1", TargetName: "iqn.x:t", InitiatorName: "iqn.x:i"}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no initiator", func(c *Config) { c.InitiatorName = "" }},
		{"no target", func(c *Config) { c.TargetName = "" }},
		{"bad portal", func(c *Config) { c.Portal = "[::1" }},
		{"unbracketed v6 with port", func(c *Config) { c.Portal = "fe80::1%eth0:3260" }},
		{"CHAP without secret", func(c *Config) { c.CHAP = &CHAP{Username: "u"} }},
		{"mutual half set", func(c *Config) { c.CHAP = &CHAP{Username: "u", Secret: "s", TargetUsername: "t"} }},
		{"bad algorithm", func(c *Config) { c.CHAP = &CHAP{Username: "u", Secret: "s", Algorithms: []CHAPAlgorithm{4}} }},
		{"ERL 1", func(c *Config) { p := DefaultParams(); p.ErrorRecoveryLevel = 1; c.Params = &p }},
		{"FirstBurst > MaxBurst", func(c *Config) { p := DefaultParams(); p.FirstBurstLength = p.MaxBurstLength + 1; c.Params = &p }},
		{"MRDSL too small", func(c *Config) { p := DefaultParams(); p.MaxRecvDataSegmentLength = 100; c.Params = &p }},
	}
	for _, tt := range tests {
		c := base
		tt.mod(&c)
		if _, err := Login(context.Background(), c); err == nil {
			t.Errorf("%s: Login = nil error, want a configuration error", tt.name)
		}
	}
}
