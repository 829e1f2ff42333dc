// Package netnstest ties package netns to a Go test: the namespaces a test
// creates are removed when it ends, pass or fail, a step that fails ends
// the test, and the prerequisites go through internal/testenv (skip with a
// reason locally, fail under CI=true).
package netnstest

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/internal/testenv"
)

// Set is one test's namespaces.
type Set struct {
	t     testing.TB
	h     netns.Harness
	label string
}

// New checks the prerequisites (root, ip), removes namespaces that killed
// runs left behind, and returns an empty set whose namespace names carry
// label.
func New(t testing.TB, label string) *Set {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "ip")
	s := &Set{t: t, label: label, h: netns.Harness{Logf: func(format string, args ...any) { t.Logf(format, args...) }}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.h.SweepStale(ctx); err != nil {
		t.Logf("removing stale namespaces: %v", err)
	}
	return s
}

// Add creates a namespace (loopback up, nothing else) that is deleted,
// with every process inside, when the test ends (unless the test deleted
// it already), and returns its name.
func (s *Set) Add(short string) string {
	s.t.Helper()
	name, _ := netns.NewName(s.label + "-" + short)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.h.Add(ctx, name)
	// Registered even when Add failed half-way: the namespace may exist.
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		names, lerr := netns.List()
		if lerr != nil {
			s.t.Errorf("%v", lerr)
			return
		}
		if !slices.Contains(names, name) {
			return
		}
		if derr := s.h.Delete(ctx, name); derr != nil {
			s.t.Errorf("%v", derr)
		}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return name
}

// Veth joins ifA (MAC macA, left down: the code under test raises it) in
// nsA to ifB in nsB; ifB is set up when peerUp, else it stays down and ifA
// never gets carrier.
func (s *Set) Veth(nsA, ifA string, macA net.HardwareAddr, nsB, ifB string, peerUp bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.h.AddVeth(ctx, netns.End{NS: nsA, Name: ifA, MAC: macA}, netns.End{NS: nsB, Name: ifB, Up: peerUp}); err != nil {
		s.t.Fatal(err)
	}
}

// Run runs a short command (bounded), failing the test if it fails.
func (s *Set) Run(argv ...string) string {
	s.t.Helper()
	out, err := netns.Run(context.Background(), argv...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}
