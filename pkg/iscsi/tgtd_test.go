package iscsi

import (
	"bytes"
	"context"
				"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/pkg/scsi"
)

const tgtIQN = "iqn.2026-11.org.lunboot:iscsi-interop"
const initIQN = "iqn.2026-11.org.lunboot:initiator"

// tgtd starts a tgtd on a loopback portal with target 1 and the given
// number of LUNs (1..n), each a sparse file of size bytes.
type tgtdEnv struct {
	srv    *tgt.Server
	portal string
	dir    string
	luns   []string
}

func startTgtd(t *testing.T, luns int, size int64) *tgtdEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("tgtd interop test skipped in -short mode")
	}
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "tgtd", "tgtadm")
	dir := t.TempDir()
	e := &tgtdEnv{portal: tgt.FreeLoopbackPortal(t), dir: dir}
	e.start(t)
	if err := e.srv.AddTarget(1, tgtIQN); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= luns; i++ {
		p := filepath.Join(dir, "lun"+string(rune('0'+i))+".img")
		if err := os.Truncate(p, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := e.srv.AddLUN(1, i, p); err != nil {
			t.Fatal(err)
		}
		e.luns = append(e.luns, p)
	}
	return e
}

func (e *tgtdEnv) start(t *testing.T) {
	t.Helper()
	srv, err := tgt.Start(context.Background(), tgt.Options{Portal: e.portal, LogFile: filepath.Join(e.dir, "tgtd.log")})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(func() { srv.Stop() })
}

func TestTgtdBasic(t *testing.T) {
	e := startTgtd(t, 1, 64<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Login(ctx, Config{Portal: e.portal, TargetName: tgtIQN, InitiatorName: initIQN, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	defer s.Close()
	t.Logf("info: %+v", s.Info())
	tur := []byte{0, 0, 0, 0, 0, 0}
	for i := 0; i < 3; i++ {
		res, err := s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: tur})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == 0 {
			break
		}
	}
	data := make([]byte, 1<<20)
	copy(data, randBytes(len(data)))
	res, err := s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: write10(100, 2048), DataOut: data})
	if err != nil || res.Status != 0 {
		t.Fatalf("WRITE(10) = %+v, %v", res, err)
	}
	back := make([]byte, len(data))
	res, err = s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: read10(100, 2048), DataIn: back})
	if err != nil || res.Status != 0 || res.N != len(back) {
		t.Fatalf("READ(10) = %+v, %v", res, err)
	}
	if !bytes.Equal(back, data) {
		t.Fatalf("read back differs")
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	_ = exec.Command
}
