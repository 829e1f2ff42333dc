package distro

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// miniRoot makes a root holding the host's dash (with the libraries it
// needs) and the proof program: enough to look around inside the chroot
// the build runs package scripts in.
func miniRoot(t *testing.T) (root, boot, proof string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, "chroot", "mount", "ldd", "go")
	dir := t.TempDir()
	root, boot = filepath.Join(dir, "root"), filepath.Join(dir, "boot")
	for _, d := range []string{"proc", "sys", "dev", "run", "boot", "etc", "bin", "usr/local/sbin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(boot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, "vmlinuz-marker"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{sh}
	out, err := exec.Command("ldd", sh).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", sh, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(sh, filepath.Join(root, "bin", "sh")); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := &builder{dir: filepath.Join(dir, "cache"), r: &runner{log: slog.New(slog.DiscardHandler)}}
	bin, _, err := b.buildProof(ctx)
	if err != nil {
		t.Fatalf("buildProof: %v", err)
	}
	proof = "/usr/local/sbin/lunboot-proof"
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, proof), data, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, boot, proof
}

// mountsUnder lists this process's mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fs := strings.Fields(s.Text()); len(fs) > 4 && (fs[4] == dir || strings.HasPrefix(fs[4], dir+"/")) {
			out = append(out, fs[4])
		}
	}
	return out
}

// TestChroot runs commands the way the build runs package scripts and
// checks what they see: /proc, /sys, /dev, a fresh /run, the stage's boot
// folder on /boot, the host resolver only when asked, a clean environment,
// and no mount left behind afterwards, also when the command is killed.
func TestChroot(t *testing.T) {
	root, boot, proof := miniRoot(t)
	// A stand-in for the host's /etc/resolv.conf, so that a regression
	// cannot break this machine's name resolution.
	hostResolv := filepath.Join(t.TempDir(), "resolv.conf")
	const resolvData = "nameserver 192.0.2.53\n"
	if err := os.WriteFile(hostResolv, []byte(resolvData), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &runner{log: slog.New(slog.DiscardHandler), resolvConf: hostResolv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	script := `for m in /proc/cmdline /sys/class /dev/null /boot/vmlinuz-marker /etc/resolv.conf; do
	if [ -e "$m" ]; then echo "have $m"; else echo "lack $m"; fi
done
echo "run:$(while read -r a b c d; do [ "$b" = /run ] && echo "$c"; done < /proc/self/mounts)"
echo "env:$DEBIAN_FRONTEND:$LANG:$PATH:${http_proxy-unset}"
`
	for _, tc := range []struct {
		network bool
		want    []string
	}{
		{false, []string{"have /proc/cmdline", "have /sys/class", "have /dev/null", "have /boot/vmlinuz-marker", "lack /etc/resolv.conf", "run:tmpfs",
			"env:noninteractive:C.UTF-8:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:unset"}},
		{true, []string{"have /etc/resolv.conf"}},
	} {
		t.Setenv("http_proxy", "http://proxy.invalid:3128")
		out, err := r.chroot(ctx, root, boot, tc.network, "/bin/sh", "-c", script)
		if err != nil {
			t.Fatalf("chroot (network %v): %v", tc.network, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("chroot (network %v) output lacks %q:\n%s", tc.network, w, out)
			}
		}
		if m := mountsUnder(t, root); len(m) > 0 {
			t.Errorf("after chroot (network %v): mounts left under the root: %v", tc.network, m)
		}
	}
	// A package script rewriting the root's resolv.conf must not reach the
	// host's (it did through a bind mount once), and the copy is emptied
	// afterwards: the host's resolver never stays in the tree.
	out, err := r.chroot(ctx, root, boot, true, "/bin/sh", "-c", `read -r l < /etc/resolv.conf; echo "saw $l"; echo "nameserver 203.0.113.9" > /etc/resolv.conf`)
	if err != nil {
		t.Fatalf("chroot rewriting resolv.conf: %v", err)
	}
	if want := "saw " + resolvData; out != want {
		t.Errorf("chroot with network read resolv.conf as %q, want %q", out, want)
	}
	if data, err := os.ReadFile(hostResolv); err != nil || string(data) != resolvData {
		t.Errorf("host resolv.conf = %q, %v after a chroot rewrote its own; want it untouched (%q)", data, err, resolvData)
	}
	if data, err := os.ReadFile(filepath.Join(root, "etc/resolv.conf")); err != nil || len(data) != 0 {
		t.Errorf("root's resolv.conf = %q, %v after a network chroot; want it emptied", data, err)
	}

	// The proof program is static and runs in a bare root.
	out, err = r.chroot(ctx, root, boot, false, proof, "-console", "", "-wait", "5s")
	if err != nil {
		t.Fatalf("proof program in the chroot: %v", err)
	}
	p, err := osproof.Find(out)
	if err != nil {
		t.Fatalf("proof program output: %v\n%s", err, out)
	}
	host, _ := os.ReadFile("/proc/cmdline")
	if p.Cmdline != strings.TrimSpace(string(host)) {
		t.Errorf("proof cmdline = %q, want the host's %q", p.Cmdline, host)
	}

	// Killed by its context: the whole process group goes, and the
	// namespace's mounts with it.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	start := time.Now()
	_, err = r.chroot(short, root, boot, false, "/bin/sh", "-c", "while :; do :; done")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("chroot of an endless loop with a 1 s context = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancelled chroot returned after %s", d)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("after a cancelled chroot: mounts left under the root: %v", m)
	}
}
