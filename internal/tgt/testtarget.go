package tgt

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

// Test is a tgtd started for one test: target 1 with a sparse file per LUN,
// on a free loopback portal, stopped when the test ends.
type Test struct {
	Srv    *Server
	Portal string
	Dir    string   // the test's directory: LUN files and tgtd.log
	LUNs   []string // LUN i+1 is backed by LUNs[i]
	iqn    string
}

// StartTest starts tgtd with target 1 named iqn and one sparse file LUN of
// each size (LUNs 1, 2, …). It skips the test in -short mode, and where
// root or tgtd is missing outside CI (see testenv).
func StartTest(t testing.TB, iqn string, sizes ...int64) *Test {
	t.Helper()
	if testing.Short() {
		t.Skip("tgtd interop test skipped in -short mode")
	}
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "tgtd", "tgtadm")
	e := &Test{Portal: FreeLoopbackPortal(t), Dir: t.TempDir(), iqn: iqn}
	for i, size := range sizes {
		p := filepath.Join(e.Dir, "lun"+strconv.Itoa(i+1)+".img")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		e.LUNs = append(e.LUNs, p)
	}
	e.Restart(t)
	return e
}

// Restart launches tgtd on the portal and configures target 1 with the
// LUN files again: after Srv.Kill, a target that comes back.
func (e *Test) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := Start(ctx, Options{Portal: e.Portal, LogFile: filepath.Join(e.Dir, "tgtd.log")})
	if err != nil {
		t.Fatalf("tgt.Start: %v", err)
	}
	e.Srv = srv
	t.Cleanup(func() { srv.Stop() })
	if err := srv.AddTarget(1, e.iqn); err != nil {
		t.Fatal(err)
	}
	for i, p := range e.LUNs {
		if err := srv.AddLUN(1, i+1, p); err != nil {
			t.Fatal(err)
		}
	}
}
