package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/pkg/sam"
)

func TestTargetFlagsConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "chap")
	os.WriteFile(secretFile, []byte("file-secret-123\n"), 0o600)
	targetFile := filepath.Join(dir, "tchap")
	os.WriteFile(targetFile, []byte("target-secret-456"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	const rp = "iscsi:192.0.2.1::3261:1a:iqn.2026-01.org.example:disk"

	for _, tt := range []struct {
		name      string
		args      []string
		env       map[string]string
		target    string
		wantErr   string // substring; "" for success
		portal    string
		lun       uint64
		chap      [4]string // user, secret, target user, target secret
		warnInOut string
	}{
		{name: "root-path", target: rp, portal: "192.0.2.1:3261", lun: 26},
		{name: "URL with credentials", target: "iscsi://alice%s3cret-pass@192.0.2.1/iqn.2026-01.org.example:disk/3",
			portal: "192.0.2.1:3260", lun: 3, chap: [4]string{"alice", "s3cret-pass"}},
		{name: "secret file", args: []string{"--chap-user", "bob", "--chap-secret-file", secretFile}, target: rp,
			portal: "192.0.2.1:3261", lun: 26, chap: [4]string{"bob", "file-secret-123"}},
		{name: "secret from environment", args: []string{"--chap-user", "bob"}, env: map[string]string{envCHAPSecret: "env-secret-789"},
			target: rp, portal: "192.0.2.1:3261", lun: 26, chap: [4]string{"bob", "env-secret-789"}},
		{name: "mutual", args: []string{"--chap-user", "bob", "--chap-secret-file", secretFile, "--target-user", "tgt", "--target-secret-file", targetFile},
			target: rp, portal: "192.0.2.1:3261", lun: 26, chap: [4]string{"bob", "file-secret-123", "tgt", "target-secret-456"}},
		{name: "mutual secret from environment", args: []string{"--chap-user", "bob", "--target-user", "tgt"},
			env:    map[string]string{envCHAPSecret: "a-secret-0001", envTargetSecret: "b-secret-0002"},
			target: rp, portal: "192.0.2.1:3261", lun: 26, chap: [4]string{"bob", "a-secret-0001", "tgt", "b-secret-0002"}},
		{name: "secret on the command line warns", args: []string{"--chap-user", "bob", "--chap-secret", "visible-secret"},
			target: rp, portal: "192.0.2.1:3261", lun: 26, chap: [4]string{"bob", "visible-secret"}, warnInOut: "visible to every user"},
		{name: "options override the URL", args: []string{"--chap-user", "carol", "--chap-secret-file", secretFile},
			target: "iscsi://alice%s3cret-pass@192.0.2.1/iqn.2026-01.org.example:disk/0",
			portal: "192.0.2.1:3260", lun: 0, chap: [4]string{"carol", "file-secret-123"}},
		{name: "user without secret", args: []string{"--chap-user", "bob"}, target: rp, wantErr: "has no secret"},
		{name: "secret without user", env: map[string]string{envCHAPSecret: "x-secret-12345"}, target: rp, wantErr: "no user name"},
		{name: "mutual without its secret", args: []string{"--chap-user", "bob", "--chap-secret-file", secretFile, "--target-user", "t"},
			target: rp, wantErr: "mutual CHAP user"},
		{name: "empty secret file", args: []string{"--chap-user", "bob", "--chap-secret-file", empty}, target: rp, wantErr: "is empty"},
		{name: "missing secret file", args: []string{"--chap-user", "bob", "--chap-secret-file", filepath.Join(dir, "nope")}, target: rp, wantErr: "no such file"},
		{name: "bad initiator", args: []string{"--initiator", "not-an-iqn"}, target: rp, wantErr: "--initiator"},
		{name: "bad target", target: "iscsi:192.0.2.1::99999:1:iqn.2026-01.org.example:disk", wantErr: "port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{envCHAPSecret, envTargetSecret} {
				t.Setenv(k, tt.env[k])
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var out bytes.Buffer
			fs.SetOutput(&out)
			tf := addTargetFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			cfg, lun, err := tf.config(tt.target)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("config(%q) = %v, want an error containing %q", tt.target, err, tt.wantErr)
				}
				if !errors.Is(err, errUsage) && !strings.Contains(tt.name, "secret file") {
					t.Errorf("config(%q) = %v, want a usage error", tt.target, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("config(%q) = %v", tt.target, err)
			}
			if cfg.Portal != tt.portal || lun.Linux() != tt.lun || cfg.TargetName != "iqn.2026-01.org.example:disk" {
				t.Errorf("config(%q) = portal %s, LUN %d, target %s; want %s, %d", tt.target, cfg.Portal, lun.Linux(), cfg.TargetName, tt.portal, tt.lun)
			}
			var got [4]string
			if cfg.CHAP != nil {
				got = [4]string{cfg.CHAP.Username, cfg.CHAP.Secret, cfg.CHAP.TargetUsername, cfg.CHAP.TargetSecret}
			}
			if got != tt.chap {
				t.Errorf("config(%q) CHAP = %q, want %q", tt.target, got, tt.chap)
			}
			if cfg.InitiatorName == "" || cfg.LoginTimeout != 30*time.Second || cfg.Logger == nil {
				t.Errorf("config: initiator %q, login timeout %v, logger %v; want a name, 30s, a logger", cfg.InitiatorName, cfg.LoginTimeout, cfg.Logger)
			}
			if !strings.Contains(out.String(), tt.warnInOut) {
				t.Errorf("stderr = %q, want it to contain %q", out.String(), tt.warnInOut)
			}
		})
	}
}

func TestDefaultInitiatorName(t *testing.T) {
	n := defaultInitiatorName()
	if n != defaultInitiatorName() {
		t.Errorf("defaultInitiatorName() is not stable: %q then %q", n, defaultInitiatorName())
	}
	if !strings.HasPrefix(n, "iqn.") {
		t.Errorf("defaultInitiatorName() = %q, want an iqn. name", n)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "initiatorname.iscsi")
	os.WriteFile(p, []byte("## comment\nInitiatorName=iqn.1993-08.org.debian:01:ABC123\n"), 0o644)
	if got := openISCSIName(p); got != "iqn.1993-08.org.debian:01:abc123" {
		t.Errorf("openISCSIName = %q, want the normalised name from the file", got)
	}
	os.WriteFile(p, []byte("InitiatorName=garbage\n"), 0o644)
	if got := openISCSIName(p); got != "" {
		t.Errorf("openISCSIName(invalid name) = %q, want empty", got)
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	v := fs.Bool("v", false, "")
	var n int64
	fs.Var(sizeValue{&n}, "length", "")
	pos, err := parseArgs(fs, []string{"a", "--length", "4K", "b", "-v", "--", "-c"})
	if err != nil || !*v || n != 4096 || strings.Join(pos, " ") != "a b -c" {
		t.Errorf("parseArgs = %q, %v (v=%v, length=%d), want [a b -c], v, 4096", pos, err, *v, n)
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false}, {"512", 512, false}, {"4K", 4096, false}, {"1M", 1 << 20, false},
		{"2MiB", 2 << 20, false}, {"3g", 3 << 30, false}, {"1T", 1 << 40, false},
		{"", 0, true}, {"-1", 0, true}, {"1X", 0, true}, {"0x10", 0, true}, {"99999999T", 0, true},
	} {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v, want %d (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"discover"}, {"discover", "a", "b"}, {"luns"}, {"inquiry"}, {"read"}, {"bench"},
		{"read", "--length", "x", "iscsi:192.0.2.1::::iqn.2026-01.org.example:d"},
		{"bench", "--tests", "seq-write", "iscsi:192.0.2.1::::iqn.2026-01.org.example:d"},
		{"inquiry", "iscsi:192.0.2.1:::zz:iqn.2026-01.org.example:d"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}

// The interop tests below run the commands against tgtd on loopback, the
// way a user types them.

const (
	labIQN        = "iqn.2026-11.org.lunboot:cmds"
	labInitiator  = "iqn.2026-11.org.lunboot:cmds-initiator"
	labUser       = "lunboot-user"
	labSecret     = "chap-secret-0123"
	labTargetUser = "lunboot-target"
	labTargetSec  = "target-secret-4567"
)

type lab struct{ *tgt.Test }

// newLab starts tgtd with target 1 (labIQN) and one sparse LUN per size,
// with one-way CHAP (labUser, labSecret) if chap.
func newLab(t *testing.T, chap bool, sizes ...int64) *lab {
	t.Helper()
	l := &lab{tgt.StartTest(t, labIQN, sizes...)}
	if chap {
		if err := l.Srv.AddCHAP(1, labUser, labSecret, false); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// rootPath is the RFC 4173 form of the lab target at lun.
func (l *lab) rootPath(lun int) string {
	host, port, _ := strings.Cut(l.Portal, ":")
	return "iscsi:" + host + "::" + port + ":" + sam.LUNFromLinux(uint64(lun)).String() + ":" + labIQN
}

// run runs a lunboot command line with a bound, as main would.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// pkg/iscsi may still log from a connection goroutine as the session
	// winds down.
	var out, errb testenv.SyncBuffer
	err = run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCHAPInterop(t *testing.T) {
	l := newLab(t, true, 16<<20)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(labSecret+"\n"), 0o600)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte("wrong-secret-999\n"), 0o600)
	if err := l.Srv.AddCHAP(1, labTargetUser, labTargetSec, true); err != nil {
		t.Fatal(err)
	}
	targetFile := filepath.Join(dir, "target")
	os.WriteFile(targetFile, []byte(labTargetSec), 0o600)
	host, port, _ := strings.Cut(l.Portal, ":")
	url := "iscsi://" + labUser + "%" + labSecret + "@" + host + ":" + port + "/" + labIQN + "/1"

	for _, tt := range []struct {
		name    string
		env     string
		args    []string
		wantErr string
	}{
		{name: "secret file", args: []string{"inquiry", "--initiator", labInitiator, "--chap-user", labUser, "--chap-secret-file", secretFile, l.rootPath(1)}},
		{name: "environment", env: labSecret, args: []string{"inquiry", "--chap-user", labUser, l.rootPath(1)}},
		{name: "URL", args: []string{"inquiry", url}},
		{name: "digests", args: []string{"inquiry", "--header-digest", "--data-digest", "--chap-user", labUser, "--chap-secret-file", secretFile, l.rootPath(1)}},
		{name: "mutual", args: []string{"inquiry", "--chap-user", labUser, "--chap-secret-file", secretFile,
			"--target-user", labTargetUser, "--target-secret-file", targetFile, l.rootPath(1)}},
		{name: "mutual, target proves a wrong secret", env: labSecret, args: []string{"inquiry", "--chap-user", labUser,
			"--target-user", labTargetUser, "--target-secret-file", wrongFile, l.rootPath(1)},
			wantErr: "hint: the target failed to prove itself (mutual CHAP): check --target-user and --target-secret-file"},
		{name: "URL naming an absent LUN", args: []string{"inquiry", strings.TrimSuffix(url, "/1") + "/7"}, wantErr: "iscsi://" + labUser + "%***@"},
		{name: "URL with a wrong password", args: []string{"luns", strings.Replace(url, labSecret, "wrong-secret-999", 1)}, wantErr: "authentication failed"},
		{name: "wrong secret", args: []string{"inquiry", "-v", "--chap-user", labUser, "--chap-secret-file", wrongFile, l.rootPath(1)}, wantErr: "hint: check the CHAP user name and secret (--chap-user"},
		{name: "no CHAP", args: []string{"inquiry", l.rootPath(1)}, wantErr: "authentication failed\n  hint: the target requires CHAP: add --chap-user"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envCHAPSecret, tt.env)
			out, errOut, err := runCmd(t, tt.args...)
			for _, secret := range []string{labSecret, "wrong-secret-999"} {
				if strings.Contains(out+errOut, secret) || (err != nil && strings.Contains(err.Error(), secret)) {
					t.Errorf("lunboot %q printed the CHAP secret", tt.args)
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("lunboot %q = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				// The advice is given once, in the host tools' terms.
				if n := strings.Count(err.Error(), "hint:"); n > 1 || strings.Contains(err.Error(), "rd.iscsi.") || strings.Count(err.Error(), "check") > 1 {
					t.Errorf("lunboot %q = %v, want at most one hint, naming options, not kernel command-line keys", tt.args, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("lunboot %q = %v\nstderr: %s", tt.args, err, errOut)
			}
			if !strings.Contains(out, "VIRTUAL-DISK") || !strings.Contains(out, "16.0 MiB") {
				t.Errorf("lunboot %q printed %q, want the disk's product and size", tt.args, out)
			}
		})
	}
}
