package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/version"
)

// runMain runs a command line as main does: its output, and the exit
// status with main's last stderr line.
func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb testenv.SyncBuffer
	code = report(&errb, run(ctx, args, &out, &errb))
	return out.String(), errb.String(), code
}

// TestExitStatus: 2 for how a command was called (unknown command or
// option, bad or missing argument or option value), 1 for a command called
// right that failed; the same mistake gets the same status in every
// subcommand, and the message names the option or field at fault and
// nothing else.
func TestExitStatus(t *testing.T) {
	const (
		iqn     = "iqn.2026-01.org.example:d"
		rp      = "iscsi:127.0.0.1::1::" + iqn // a closed port: the login fails at once
		badPort = "iscsi:127.0.0.1::99999::" + iqn
	)
	dir := t.TempDir()
	type row struct {
		args []string
		code int
		want []string // in main's message (exit 1 and 2) or stdout (0)
		not  []string
	}
	rows := []row{
		{args: nil, code: 2},
		{args: []string{"bogus"}, code: 2, want: []string{`unknown command "bogus"`}},
		{args: []string{"help"}, code: 0, want: []string{"usage: lunboot <command>", "lunboot help <command>"}},
		{args: []string{"--help"}, code: 0, want: []string{"usage: lunboot <command>"}},
		{args: []string{"help", "bogus"}, code: 2, want: []string{`unknown command "bogus"`}},
		{args: []string{"help", "read", "luns"}, code: 2, want: []string{"help takes one command"}},
		{args: []string{"version"}, code: 0, want: []string{"lunboot ", "(commit ", runtime.Version()}},
		{args: []string{"--version"}, code: 0, want: []string{"lunboot ", "(commit "}},
		{args: []string{"version", "extra"}, code: 2, want: []string{"version takes no arguments"}},
		{args: []string{"boot", "extra"}, code: 2, want: []string{"boot takes no arguments"}},
		{args: []string{"modules", "extra"}, code: 2, want: []string{"modules takes no arguments"}},
		{args: []string{"modules", "-j", "0"}, code: 2, want: []string{"-j 0"}},
		{args: []string{"modules", "-n", "--root", dir}, code: 1},
		{args: []string{"detach"}, code: 2, want: []string{"at least one device"}},
		{args: []string{"detach", "nbdx"}, code: 2, want: []string{`"nbdx" is not an NBD device`}},
		{args: []string{"detach", "--timeout", "0", "nbd0"}, code: 2, want: []string{"--timeout 0s: must be positive"}},
		{args: []string{"discover", "127.0.0.1:99999"}, code: 2, want: []string{`port "99999"`}},
		{args: []string{"discover", "iscsi://"}, code: 2, want: []string{"host after \"iscsi://\""}},
		{args: []string{"discover", "exämple.com"}, code: 2, want: []string{`character "ä"`}},
		{args: []string{"discover", "--timeout", "5s", "127.0.0.1:1"}, code: 1, want: []string{"discover 127.0.0.1:1: "}},
		{args: []string{"discover", "--timeout", "5s", "iscsi://127.0.0.1:1"}, code: 1, want: []string{"discover 127.0.0.1:1: "}},
		{args: []string{"discover", "--timeout", "5s", rp}, code: 1, want: []string{"discover 127.0.0.1:1: "}},
		{args: []string{"bench", "--depth", "0", rp}, code: 2, want: []string{"--depth 0"}, not: []string{"--duration", "--procs", "size"}},
		{args: []string{"bench", "--duration", "0s", rp}, code: 2, want: []string{"--duration 0s"}, not: []string{"--depth", "--procs"}},
		{args: []string{"bench", "--seq-size", "256", rp}, code: 2, want: []string{"--seq-size 256"}, not: []string{"--rand-size", "--depth"}},
		{args: []string{"bench", "--rand-size", "256", rp}, code: 2, want: []string{"--rand-size 256"}, not: []string{"--seq-size", "--depth"}},
		{args: []string{"bench", "--procs", "-1", rp}, code: 2, want: []string{"--procs -1"}, not: []string{"--depth"}},
		{args: []string{"read", "--inflight", "0", rp}, code: 2, want: []string{"--inflight 0"}, not: []string{"--request"}},
		{args: []string{"read", "--request", "100", rp}, code: 2, want: []string{"--request 100"}, not: []string{"--inflight"}},
		{args: []string{"read", "-o", filepath.Join(dir, "no", "such", "dir"), rp}, code: 1, want: []string{"read " + rp + ": -o: "}},
		{args: []string{"attach", "--nbd", "-5", rp}, code: 2, want: []string{"--nbd", `"-5"`}},
		{args: []string{"attach", "--connections", "-1", rp}, code: 2, want: []string{"--connections -1"}},
	}
	// The same mistakes in every command that takes a target.
	for _, cmd := range []string{"luns", "inquiry", "read", "bench", "attach"} {
		rows = append(rows,
			row{args: []string{cmd}, code: 2, want: []string{cmd + " takes one target"}},
			row{args: []string{cmd, "--bogus", rp}, code: 2, want: []string{"flag provided but not defined: --bogus"}},
			row{args: []string{cmd, "--timeout", "0", rp}, code: 2, want: []string{"--timeout 0s: must be positive"}},
			row{args: []string{cmd, "--timeout", "x", rp}, code: 2, want: []string{`invalid value "x" for flag --timeout`}},
			row{args: []string{cmd, badPort}, code: 2, want: []string{`port "99999"`}},
			row{args: []string{cmd, "iscsi://"}, code: 2, want: []string{"host after \"iscsi://\""}},
			row{args: []string{cmd, "--initiator", "not-an-iqn", rp}, code: 2, want: []string{"--initiator"}},
		)
		if cmd != "attach" { // attach needs the NBD driver before it logs in
			row := row{args: []string{cmd, "--timeout", "5s", rp}, code: 1, want: []string{cmd + " " + rp + ": ", "nothing listens on 127.0.0.1:1"}}
			if cmd == "read" {
				row.args = append(row.args, "-o", filepath.Join(dir, "out"))
			}
			rows = append(rows, row)
		}
	}
	for _, cmd := range []string{"discover", "detach", "modules", "boot", "version"} {
		rows = append(rows, row{args: []string{cmd, "--bogus"}, code: 2, want: []string{"flag provided but not defined: --bogus"}})
	}
	for _, tt := range rows {
		stdout, stderr, code := runMain(t, tt.args...)
		if code != tt.code {
			t.Errorf("lunboot %q: exit %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.code, stdout, stderr)
			continue
		}
		msg := stdout
		if code != 0 {
			// main's message: its "lunboot: " line and any hint lines.
			msg = stderr[max(0, strings.LastIndex(stderr, "\nlunboot: ")):]
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("lunboot %q said %q, want it to contain %q", tt.args, msg, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(msg, n) {
				t.Errorf("lunboot %q said %q, want no %q (name only the option at fault)", tt.args, msg, n)
			}
		}
	}
}

// TestBareUsage: `lunboot` alone prints the usage on stderr, exits 2, and
// adds no "lunboot: usage" line after it.
func TestBareUsage(t *testing.T) {
	stdout, stderr, code := runMain(t)
	if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "usage: lunboot <command>") {
		t.Fatalf("lunboot = exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", code, stdout, stderr)
	}
	if strings.Contains(stderr, "lunboot: usage") {
		t.Errorf("lunboot printed %q, want the usage without a \"lunboot: usage\" line", stderr)
	}
}

// TestHelpCommand: `lunboot help <command>` prints on stdout what
// `lunboot <command> --help` prints on stderr, for every command, and spells
// every option --name (one-letter ones -x).
func TestHelpCommand(t *testing.T) {
	singleDash := regexp.MustCompile("(^|[ (`'/])-[a-z][a-z-]+")
	for name := range commands {
		help, stderr, code := runMain(t, "help", name)
		if code != 0 || stderr != "" || !strings.HasPrefix(help, "usage: lunboot "+name) {
			t.Errorf("lunboot help %s = exit %d, stdout %q, stderr %q; want its usage on stdout", name, code, help, stderr)
			continue
		}
		stdout, usage, code := runMain(t, name, "--help")
		if code != 0 || stdout != "" || usage != help {
			t.Errorf("lunboot %s --help = exit %d, stderr %q; want exit 0 and what lunboot help %s prints:\n%s", name, code, usage, name, help)
		}
		// A bad option: the usage once, then the error.
		_, stderr, code = runMain(t, name, "--bogus")
		if n := strings.Count(stderr, "usage: lunboot "+name); code != 2 || n != 1 || !strings.HasSuffix(stderr, "lunboot: usage: flag provided but not defined: --bogus\n") {
			t.Errorf("lunboot %s --bogus = exit %d, stderr with %d usages:\n%s\nwant exit 2, one usage, then the error", name, code, n, stderr)
		}
		if m := singleDash.FindString(help); m != "" {
			t.Errorf("lunboot help %s spells an option %q; want --name", name, m)
		}
	}
}

// TestVersionStamp builds lunboot with the link-time stamp the build uses
// (version.LDFlags) and checks that `lunboot version`, `--version` and the
// boot's first console line name that version and commit: a renamed
// variable would otherwise leave every build saying "devel".
func TestVersionStamp(t *testing.T) {
	gobin := testenv.RequireBinaries(t, "go")[0]
	i := version.Info{Version: "v9.8.7-1-g0123456789ab+dirty", Commit: "0123456789abcdef0123456789abcdef01234567", Modified: true}
	bin := filepath.Join(t.TempDir(), "lunboot")
	build := exec.Command(gobin, "build", "-ldflags", version.LDFlags(i), "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", version.LDFlags(i), err, out)
	}
	want := "lunboot v9.8.7-1-g0123456789ab+dirty (commit 0123456789abcdef0123456789abcdef01234567, modified) " + runtime.Version() + " linux/amd64\n"
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil || string(out) != want {
			t.Errorf("stamped lunboot %s = %q, %v; want %q", arg, out, err, want)
		}
	}
	// The boot's first line, from the same binary: with a command line
	// naming no target the boot fails in its config stage, after the line.
	out, _ := exec.Command(bin, "boot", "-n", "--skip-modules", "--cmdline", "lunboot.rescue=1 lunboot.target=bogus").Output()
	first, _, _ := strings.Cut(string(out), "\n")
	if wantLine := "lunboot: iSCSI boot starting, version v9.8.7-1-g0123456789ab+dirty (commit 0123456789ab, modified)"; first != wantLine {
		t.Errorf("stamped lunboot boot's first line = %q, want %q", first, wantLine)
	}
}

func TestStartLine(t *testing.T) {
	for _, tt := range []struct {
		i    version.Info
		want string
	}{
		{version.Info{Version: "v1.2.0", Commit: "8b8cfae97891376eb7d04a4226260e8bf48ad21f"}, "lunboot: iSCSI boot starting, version v1.2.0 (commit 8b8cfae97891)"},
		{version.Info{Version: "v0.0.0-20261121105958-8b8cfae97891+dirty", Commit: "8b8cfae97891376eb7d04a4226260e8bf48ad21f", Modified: true},
			"lunboot: iSCSI boot starting, version v0.0.0-20261121105958-8b8cfae97891+dirty (commit 8b8cfae97891, modified)"},
		{version.Get(), "lunboot: iSCSI boot starting, version devel (commit unknown)"},
	} {
		if got := startLine(tt.i); got != tt.want {
			t.Errorf("startLine(%+v) = %q, want %q", tt.i, got, tt.want)
		}
		// qemu/bootlog finds the boot by this prefix.
		if !strings.HasPrefix(startLine(tt.i), "lunboot: iSCSI boot starting") {
			t.Errorf("startLine(%+v) lost the prefix qemu/bootlog.StartLine", tt.i)
		}
	}
}
