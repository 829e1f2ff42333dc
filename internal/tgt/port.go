package tgt

import (
	"fmt"
	"net"
	"testing"
)

// FreeLoopbackAddr returns a 127.0.0.1:port on which nothing listens now.
// The port is released before returning, so there is a small window in
// which another process could take it; tests and the benchmark accept that.
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreeLoopbackPortal is FreeLoopbackAddr for tests: failing to find a port
// fails the test.
func FreeLoopbackPortal(t testing.TB) string {
	t.Helper()
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
