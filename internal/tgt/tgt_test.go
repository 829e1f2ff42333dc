package tgt

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

func TestStartConfigureStop(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "tgtd", "tgtadm", "iscsi-ls")
	dir := t.TempDir()
	portal := FreeLoopbackPortal(t)
	s, err := Start(context.Background(), Options{Portal: portal, LogFile: filepath.Join(dir, "tgtd.log")})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Stop()
	img := filepath.Join(dir, "disk.img")
	if err := exec.Command("truncate", "-s", "16M", img).Run(); err != nil {
		t.Fatal(err)
	}
	const iqn = "iqn.2026-11.org.lunboot:tgt-selftest"
	if err := s.AddTarget(1, iqn); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLUN(1, 1, img); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCHAP(1, "user", "secret-of-12chars", false); err != nil {
		t.Fatal(err)
	}
	if err := s.Admin("--op", "new", "--mode", "account", "--user", "x", "--password", "hunter2hunter2"); err != nil {
		t.Fatal(err)
	}
	// A second account with the same name fails; the error must not carry the password.
	err = s.Admin("--op", "new", "--mode", "account", "--user", "x", "--password", "hunter2hunter2")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("duplicate account: err = %v, want an error without the password", err)
	}
	out, err := exec.Command("iscsi-ls", "iscsi://"+portal).CombinedOutput()
	if err != nil || !strings.Contains(string(out), iqn) {
		t.Errorf("iscsi-ls = %q, %v; want target %s listed", out, err, iqn)
	}
	n, err := s.Sessions(1)
	if err != nil || n != 0 {
		t.Errorf("Sessions(1) = %d, %v; want 0, nil", n, err)
	}
	s.Stop()
	if c, err := net.DialTimeout("tcp", portal, time.Second); err == nil {
		c.Close()
		t.Errorf("portal %s still accepts connections after Stop", portal)
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.log")
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(big, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.log")
	if err := os.WriteFile(short, []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{big, big + ": line 19995 | line 19996 | line 19997 | line 19998 | line 19999"},
		{short, short + ": one | two"},
		{"", "(no log file configured)"},
	}
	for _, tt := range tests {
		if got := logTail(tt.path); got != tt.want {
			t.Errorf("logTail(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	if got := logTail(filepath.Join(dir, "missing")); !strings.Contains(got, "no such file") {
		t.Errorf("logTail(missing) = %q, want the open error", got)
	}
}
