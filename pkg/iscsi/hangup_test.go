package iscsi

import (
	"errors"
	"io"
	"net"
	"testing"
)

// TestLoginHangupOnAuthNone: a target that hangs up on AuthMethod=None
// instead of answering (LIO with authentication=1, seen in the lab's
// qemu/interop suite) is reported as an authentication failure on our
// side, so that the advice asks for CHAP credentials; with CHAP configured
// the hang-up stays a plain connection error.
func TestLoginHangupOnAuthNone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the login request's header, then hang up.
			io.ReadFull(c, make([]byte, 48))
			c.Close()
		}
	}()
	cfg := Config{Portal: ln.Addr().String(), TargetName: "iqn.2026-11.org.lunboot:t", InitiatorName: "iqn.2026-11.org.lunboot:i", Logger: testLogger(t)}
	_, err = Login(tctx(t), cfg)
	var ae *AuthError
	if !errors.Is(err, ErrAuthenticationFailed) || !errors.As(err, &ae) || ae.Side != CHAPInitiatorSide {
		t.Errorf("Login without CHAP to a target that hangs up = %v, want an initiator-side authentication failure", err)
	}
	cfg.CHAP = &CHAP{Username: "u", Secret: "secret-secret"}
	_, err = Login(tctx(t), cfg)
	if err == nil || errors.Is(err, ErrAuthenticationFailed) {
		t.Errorf("Login with CHAP to a target that hangs up = %v, want a connection error, not an authentication failure", err)
	}
}
