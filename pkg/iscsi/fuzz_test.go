package iscsi

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// loginScript is a minimal valid login conversation from the target's
// side: security stage without authentication, then operational stage to
// full feature phase, for ITT 0 and CmdSN 1.
func loginScript(isid ISID) []byte {
	var out []byte
	var h wire.BHS
	sec := wire.AppendText(nil, wire.KV{Key: "AuthMethod", Value: "None"}, wire.KV{Key: "TargetPortalGroupTag", Value: "1"})
	(&wire.LoginResponse{Transit: true, CSG: 0, NSG: 1, ISID: isid, StatSN: 1, ExpCmdSN: 1, MaxCmdSN: 1}).Encode(&h)
	out = wire.AppendPDU(out, &h, sec, false, false)
	op := wire.AppendText(nil, wire.KV{Key: "MaxRecvDataSegmentLength", Value: "8192"}, wire.KV{Key: "InitialR2T", Value: "Yes"})
	(&wire.LoginResponse{Transit: true, CSG: 1, NSG: 3, ISID: isid, TSIH: 5, StatSN: 2, ExpCmdSN: 1, MaxCmdSN: 16}).Encode(&h)
	return wire.AppendPDU(out, &h, op, false, false)
}

var fuzzISID = ISID{0x80, 1, 2, 3, 4, 5}

// pipeDial returns a Dial that connects to a peer writing script and
// discarding everything the initiator sends; the peer hangs up when the
// script is written.
func pipeDial(script []byte) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		go io.Copy(io.Discard, b)
		go func() {
			b.Write(script)
			time.Sleep(time.Millisecond)
			b.Close()
		}()
		return a, nil
	}
}

// sessionDial returns a Dial to a peer that answers the login with
// loginScript and, once the initiator's first SCSI Command arrived, writes
// ffp as the target's full-feature PDUs, then hangs up.
func sessionDial(ffp []byte) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		a, b := net.Pipe()
		script := loginScript(fuzzISID)
		// Split the login script into its two responses.
		var first wire.BHS
		copy(first[:], script)
		n := wire.BHSLen + first.DataLen() + wire.Pad(first.DataLen())
		responses := [][]byte{script[:n], script[n:]}
		go func() {
			defer b.Close()
			for {
				h, _, err := readPDU(b)
				if err != nil {
					return
				}
				switch h.Opcode() {
				case wire.OpLogin:
					if len(responses) == 0 {
						return
					}
					b.Write(responses[0])
					responses = responses[1:]
				case wire.OpSCSICommand:
					b.Write(ffp)
					go io.Copy(io.Discard, b)
					time.Sleep(time.Millisecond)
					return
				}
			}
		}()
		return a, nil
	}
}

// FuzzLogin plays arbitrary bytes as the target's side of a login. Login
// must fail cleanly (or succeed) without panic or hang.
func FuzzLogin(f *testing.F) {
	f.Add(loginScript(fuzzISID))
	var h wire.BHS
	(&wire.LoginResponse{Continue: true, ISID: fuzzISID}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, []byte("TargetAlias=x"), false, false))
	(&wire.LoginResponse{StatusClass: 1, StatusDetail: 1, ISID: fuzzISID}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, []byte("TargetAddress=[::1]:3260,1\x00"), false, false))
	(&wire.LoginResponse{ISID: fuzzISID}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, []byte("AuthMethod=CHAP\x00CHAP_A=5\x00CHAP_I=1\x00CHAP_C=0x01\x00"), false, false))
	f.Fuzz(func(t *testing.T, script []byte) {
		cfg := Config{Portal: "192.0.2.1", TargetName: "iqn.x:t", InitiatorName: "iqn.x:i", ISID: fuzzISID,
			Dial: pipeDial(script), LoginTimeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler), RecoveryTimeout: -1, KeepAlive: -1}
		s, err := Login(context.Background(), cfg)
		if err == nil {
			s.Close()
		}
	})
}

// FuzzSessionPDUs logs in with a valid script, then plays arbitrary bytes as
// the target's full-feature PDUs while a READ(10) runs: the session must
// not panic, must not write outside the buffer, and Execute must return.
func FuzzSessionPDUs(f *testing.F) {
	var h wire.BHS
	(&wire.DataIn{Final: true, HasStatus: true, ITT: 1, StatSN: 3, ExpCmdSN: 2, MaxCmdSN: 17}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, make([]byte, 512), false, false))
	(&wire.SCSIResponse{Status: 2, ITT: 1, StatSN: 3, ExpCmdSN: 2, MaxCmdSN: 17}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, []byte{0, 4, 0x70, 0, 5, 0}, false, false))
	(&wire.NOPIn{ITT: wire.ReservedTag, TTT: 7, StatSN: 3, ExpCmdSN: 1, MaxCmdSN: 17}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, []byte("ping"), false, false))
	(&wire.AsyncMessage{Event: 1, StatSN: 3, ExpCmdSN: 2, MaxCmdSN: 17}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, nil, false, false))
	(&wire.R2T{ITT: 1, TTT: 3, DesiredLength: 512, ExpCmdSN: 2, MaxCmdSN: 17}).Encode(&h)
	f.Add(wire.AppendPDU(nil, &h, nil, false, false))
	f.Fuzz(func(t *testing.T, ffp []byte) {
		cfg := Config{Portal: "192.0.2.1", TargetName: "iqn.x:t", InitiatorName: "iqn.x:i", ISID: fuzzISID,
			Dial: sessionDial(ffp), Logger: slog.New(slog.DiscardHandler), RecoveryTimeout: -1, KeepAlive: -1}
		s, err := Login(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Login with the fixed script = %v", err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		buf := make([]byte, 512)
		res, err := s.Execute(ctx, &scsi.Command{CDB: read10(0, 1), DataIn: buf})
		if err == nil && (res.N > len(buf) || res.N < 0) {
			t.Fatalf("Execute reported %d bytes for a %d-byte buffer", res.N, len(buf))
		}
	})
}

// FuzzSendTargets parses arbitrary SendTargets answers.
func FuzzSendTargets(f *testing.F) {
	f.Add([]byte("TargetName=iqn.a:b\x00TargetAddress=10.0.0.1:3260,1\x00TargetAddress=[fe80::1]:3261,2\x00"))
	f.Add([]byte("TargetAddress=x\x00"))
	f.Add([]byte("TargetName=a\x00TargetAddress=host,65535\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		targets, err := parseSendTargets(b)
		if err != nil {
			return
		}
		for _, tg := range targets {
			if tg.Name == "" {
				t.Fatalf("target without a name")
			}
			for _, a := range tg.Addresses {
				if a.Host == "" || a.Port == 0 {
					t.Fatalf("address %+v has no host or port", a)
				}
			}
		}
	})
}

// FuzzTargetAddress parses arbitrary TargetAddress values; a parsed
// address printed back parses to itself.
func FuzzTargetAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.1:3260,1", "[2001:db8::1]:3262,5", "san.example.com", "[fe80::1%eth0],2", "a:b:c", "[", "x:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseTargetAddress(s)
		if err != nil {
			return
		}
		b, err := parseTargetAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("parseTargetAddress(%q) = %+v; printed %q parses to %+v, %v", s, a, a.String(), b, err)
		}
	})
}

// TestFuzzScript checks the fuzzers' scripted target really reaches full
// feature phase and completes a read, so that FuzzSessionPDUs explores the
// session and not just the login.
func TestFuzzScript(t *testing.T) {
	var h wire.BHS
	(&wire.DataIn{Final: true, HasStatus: true, ITT: 1, StatSN: 3, ExpCmdSN: 2, MaxCmdSN: 17}).Encode(&h)
	ffp := wire.AppendPDU(nil, &h, []byte("0123456789"), false, false)
	cfg := Config{Portal: "192.0.2.1", TargetName: "iqn.x:t", InitiatorName: "iqn.x:i", ISID: fuzzISID,
		Dial: sessionDial(ffp), Logger: testLogger(t), RecoveryTimeout: -1, KeepAlive: -1}
	s, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Login with the fuzz script = %v", err)
	}
	defer s.Close()
	buf := make([]byte, 10)
	res, err := s.Execute(tctx(t), &scsi.Command{CDB: read10(0, 1), DataIn: buf})
	if err != nil || res.Status != 0 || res.N != 10 || string(buf) != "0123456789" {
		t.Fatalf("Execute = %+v, %v, data %q; want the scripted Data-In", res, err, buf)
	}
}
