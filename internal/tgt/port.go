package tgt

import (
	"net"
	"testing"
)

// FreeLoopbackPortal returns a 127.0.0.1:port on which nothing listens now.
// The port is released before returning, so there is a small window in which
// another process could take it; tests accept that.
func FreeLoopbackPortal(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
