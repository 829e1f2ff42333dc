package distro

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cmdSpec is a command to run during a build.
type cmdSpec struct {
	argv []string
	dir  string
	// env replaces the environment when set.
	env []string
	// privateMounts runs the command in a mount namespace of its own
	// (unshare(CLONE_NEWNS), and Go marks / recursively private in the
	// child): whatever it mounts disappears when its last process exits,
	// even when the build is killed.
	privateMounts bool
	// stdin feeds the command.
	stdin string
}

// runner runs commands, appending their output to a log file and keeping
// the last lines for error messages.
type runner struct {
	log     *slog.Logger
	logFile io.Writer
	// resolvConf is the host resolver configuration copied into a root
	// for apt; default /etc/resolv.conf.
	resolvConf string
}

// tail keeps the last n lines written to it.
type tail struct {
	mu    sync.Mutex
	n     int
	lines []string
	part  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, p...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(bytes.TrimRight(t.part[:i], "\r")))
		t.part = t.part[i+1:]
		if len(t.lines) > t.n {
			t.lines = t.lines[len(t.lines)-t.n:]
		}
	}
	if len(t.part) > 4096 {
		t.part = t.part[len(t.part)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.part) > 0 {
		lines = append(append([]string(nil), lines...), string(t.part))
	}
	return strings.Join(lines, "\n")
}

// run runs the command with its own process group, killed as a whole when
// ctx ends and reaped of stragglers when it exits (a package script that
// left a daemon behind would otherwise keep the build's mount namespace
// alive). It returns the standard output.
func (r *runner) run(ctx context.Context, c cmdSpec) (string, error) {
	start := time.Now()
	r.log.Debug("run", "cmd", strings.Join(c.argv, " "))
	if r.logFile != nil {
		fmt.Fprintf(r.logFile, "\n$ %s\n", strings.Join(c.argv, " "))
	}
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Dir = c.dir
	if c.env != nil {
		cmd.Env = c.env
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.privateMounts {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if c.stdin != "" {
		cmd.Stdin = strings.NewReader(c.stdin)
	}
	var out bytes.Buffer
	t := &tail{n: 25}
	logw := io.Discard
	if r.logFile != nil {
		logw = r.logFile
	}
	cmd.Stdout = io.MultiWriter(&out, t, logw)
	cmd.Stderr = io.MultiWriter(t, logw)
	err := cmd.Run()
	if cmd.Process != nil {
		// Stragglers in the group (daemons a maintainer script started).
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	r.log.Debug("done", "cmd", c.argv[0], "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.String(), &CmdError{Argv: c.argv, Err: err, Tail: t.String()}
	}
	return out.String(), nil
}

// CmdError is a failed build command, with the last lines it printed.
type CmdError struct {
	Argv []string
	Err  error
	Tail string
}

func (e *CmdError) Error() string {
	s := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Tail != "" {
		s += "\n    " + strings.ReplaceAll(e.Tail, "\n", "\n    ")
	}
	return s
}

// Unwrap returns the cause.
func (e *CmdError) Unwrap() error { return e.Err }

// chrootEnv is the environment of commands run in a root: no host
// variables leak in (proxies, locales the root lacks), and Debian's
// maintainer scripts run without questions.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"DEBIAN_FRONTEND=noninteractive",
	"DEBCONF_NONINTERACTIVE_SEEN=true",
}

// chrootScript mounts what package scripts need inside the root — /proc,
// /sys, the host's /dev, a fresh /run, the stage's boot folder on /boot (a
// separate /boot, as on the disk) — puts a copy of the host's resolv.conf
// in place when apt needs the network (replaced by an empty file
// afterwards), and runs the command chrooted. It runs in a private mount
// namespace, so every mount ends with it.
const chrootScript = `set -e
R=$1 B=$2 NET=$3 RESOLV=$4
shift 4
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount --bind "$B" "$R/boot"
if [ "$NET" = 1 ]; then
	# A copy, never a bind mount: package scripts that rewrite the root's
	# resolv.conf would otherwise truncate the build host's (seen here).
	rm -f "$R/etc/resolv.conf"
	cp "$RESOLV" "$R/etc/resolv.conf"
fi
set +e
chroot "$R" "$@"
rc=$?
# Replace rather than truncate: a package may have made it a symlink,
# which outside the chroot could point at a host file.
if [ "$NET" = 1 ]; then rm -f "$R/etc/resolv.conf"; : > "$R/etc/resolv.conf"; fi
exit $rc
`

// policyRCD stops maintainer scripts from starting services in the root
// (invoke-rc.d policy interface, /usr/share/doc/init-system-helpers/README.policy-rc.d).
const policyRCD = "#!/bin/sh\n# lunboot distro build: no service starts while packages are installed.\nexit 101\n"

// chroot runs argv inside root with boot as its /boot.
func (r *runner) chroot(ctx context.Context, root, boot string, network bool, argv ...string) (string, error) {
	netFlag := "0"
	if network {
		netFlag = "1"
	}
	resolv := r.resolvConf
	if resolv == "" {
		resolv = "/etc/resolv.conf"
	}
	args := append([]string{"/bin/sh", "-c", chrootScript, "chroot-run", root, boot, netFlag, resolv}, argv...)
	return r.run(ctx, cmdSpec{argv: args, env: chrootEnv, privateMounts: true})
}

// withPolicy runs fn with policy-rc.d in place in root.
func withPolicy(root string, fn func() error) error {
	p := root + "/usr/sbin/policy-rc.d"
	if err := os.WriteFile(p, []byte(policyRCD), 0o755); err != nil {
		return fmt.Errorf("write policy-rc.d: %w", err)
	}
	err := fn()
	if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}
