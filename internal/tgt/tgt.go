// Package tgt starts and configures tgtd, the Linux SCSI target framework
// daemon, for lunboot's interop tests, benchmarks and lab. Every setting is
// applied through tgtadm, the way an administrator would.
//
// Several tgtd instances can run at once: each gets its own control port
// (tgtd -C N, socket /var/run/tgtd/socket.N). tgtd in the foreground ignores
// SIGTERM, so Stop sends SIGKILL after a short grace period.
package tgt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/sbin"
)

// Options configures a tgtd instance.
type Options struct {
	// Portal is the listening address, host:port ("127.0.0.1:3260",
	// "[::1]:3260"). Required.
	Portal string
	// NetNS, when set, runs tgtd inside that network namespace
	// (`ip netns exec NetNS tgtd …`). tgtadm talks over a unix socket and
	// needs no namespace.
	NetNS string
	// LogFile receives tgtd's stdout and stderr; empty discards them.
	LogFile string
	// Debug turns on tgtd's protocol debug output (-d 1).
	Debug bool
}

// Server is a running tgtd.
type Server struct {
	opts    Options
	control int
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	mu      sync.Mutex
	stopped bool
}

// ErrNotInstalled is returned by Start when tgtd or tgtadm is not on PATH
// (Debian package tgt).
var ErrNotInstalled = errors.New("tgtd/tgtadm not installed (Debian package tgt)")

// Start launches tgtd and waits until its control socket answers.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Portal == "" {
		return nil, errors.New("tgt: start: Options.Portal is required")
	}
	tgtd, err := sbin.Look("tgtd")
	if err != nil {
		return nil, ErrNotInstalled
	}
	if _, err := sbin.Look("tgtadm"); err != nil {
		return nil, ErrNotInstalled
	}
	control, err := pickControlPort()
	if err != nil {
		return nil, fmt.Errorf("tgt: start: %w", err)
	}
	args := []string{"-f", "-C", strconv.Itoa(control), "--iscsi", "portal=" + opts.Portal}
	if opts.Debug {
		args = append(args, "-d", "1")
	}
	name := tgtd
	if opts.NetNS != "" {
		args = append([]string{"netns", "exec", opts.NetNS, tgtd}, args...)
		name = "ip"
	}
	cmd := exec.Command(name, args...)
	// If the test binary dies without cleaning up, tgtd must die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if opts.LogFile != "" {
		f, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("tgt: start: log file: %w", err)
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tgt: start %s: %w", tgtd, err)
	}
	s := &Server{opts: opts, control: control, cmd: cmd, done: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); close(s.done) }()

	// Wait for the management socket: tgtadm succeeds once tgtd is ready.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.Admin("--op", "show", "--mode", "sys"); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("tgt: tgtd exited during start-up (%v): %s", s.waitErr, logTail(opts.LogFile))
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("tgt: waiting for tgtd: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("tgt: tgtd control port %d did not answer within 10s: %s", control, logTail(opts.LogFile))
		}
	}
}

// Portal returns the address tgtd listens on.
func (s *Server) Portal() string { return s.opts.Portal }

// Pid returns tgtd's process ID, which is also the ID of its main thread:
// the one that runs every iSCSI connection's event loop.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// ControlPort returns the -C number of this instance (for running tgtadm by hand).
func (s *Server) ControlPort() int { return s.control }

// Stop kills tgtd (SIGTERM, then SIGKILL after 500ms: tgtd -f ignores
// SIGTERM) and waits for it. It is safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	// With `ip netns exec`, ip execs tgtd in place, so the pid is tgtd's.
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(500 * time.Millisecond):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d", s.control))
	_ = os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d.lock", s.control))
	return nil
}

// Kill stops tgtd abruptly (SIGKILL), as a crashed or power-cycled target
// would go; Restart brings a new instance back on the same portal.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Kill()
	<-s.done
}

// adminTimeout bounds one tgtadm run: tgtd answers its control socket at
// once, so a run this long means tgtd is stuck.
const adminTimeout = 30 * time.Second

// Admin runs `tgtadm -C <port> --lld iscsi <args>` and returns its error
// output as part of the error.
func (s *Server) Admin(args ...string) error {
	_, err := s.AdminOutput(args...)
	return err
}

// AdminOutput is Admin returning tgtadm's standard output.
func (s *Server) AdminOutput(args ...string) (string, error) {
	tgtadm, err := sbin.Look("tgtadm")
	if err != nil {
		return "", ErrNotInstalled
	}
	full := append([]string{"-C", strconv.Itoa(s.control), "--lld", "iscsi"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tgtadm, full...)
	cmd.WaitDelay = time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v (tgtd on control port %d hung?): %w", adminTimeout, s.control, ctx.Err())
		}
		return out.String(), fmt.Errorf("tgtadm %s: %w: %s", redact(args), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// AddTarget creates target tid with the given IQN and allows every initiator.
func (s *Server) AddTarget(tid int, iqn string) error {
	if err := s.Admin("--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "-T", iqn); err != nil {
		return err
	}
	return s.Admin("--op", "bind", "--mode", "target", "--tid", strconv.Itoa(tid), "-I", "ALL")
}

// AddLUN exports the file or block device at path as lun of target tid
// (LUN 0 is tgtd's controller; use 1 and up for disks).
func (s *Server) AddLUN(tid, lun int, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return s.Admin("--op", "new", "--mode", "logicalunit", "--tid", strconv.Itoa(tid),
		"--lun", strconv.Itoa(lun), "-b", abs)
}

// SetLUNParams applies logical-unit parameters such as "thin_provisioning=1"
// (which makes tgtd advertise UNMAP) or "readonly=1".
func (s *Server) SetLUNParams(tid, lun int, params string) error {
	return s.Admin("--op", "update", "--mode", "logicalunit", "--tid", strconv.Itoa(tid),
		"--lun", strconv.Itoa(lun), "--params", params)
}

// SetParam sets a target-wide iSCSI key (MaxRecvDataSegmentLength,
// HeaderDigest, DataDigest, ImmediateData, InitialR2T, …) for new sessions.
func (s *Server) SetParam(tid int, key, value string) error {
	return s.Admin("--op", "update", "--mode", "target", "--tid", strconv.Itoa(tid),
		"--name", key, "--value", value)
}

// AddCHAP creates an account and binds it to target tid. outgoing=false is
// the account initiators authenticate with; outgoing=true is the target's
// own identity for mutual CHAP.
func (s *Server) AddCHAP(tid int, user, secret string, outgoing bool) error {
	if err := s.Admin("--op", "new", "--mode", "account", "--user", user, "--password", secret); err != nil {
		return err
	}
	args := []string{"--op", "bind", "--mode", "account", "--tid", strconv.Itoa(tid), "--user", user}
	if outgoing {
		args = append(args, "--outgoing")
	}
	return s.Admin(args...)
}

// DeleteTarget removes target tid, forcing its sessions closed.
func (s *Server) DeleteTarget(tid int) error {
	return s.Admin("--op", "delete", "--force", "--mode", "target", "--tid", strconv.Itoa(tid))
}

// Sessions returns the number of I_T nexuses (logged-in sessions) target
// tid reports, for checking that an initiator logged out.
func (s *Server) Sessions(tid int) (int, error) {
	out, err := s.AdminOutput("--op", "show", "--mode", "target")
	if err != nil {
		return 0, err
	}
	// The listing is per target: "Target <tid>: <iqn>" then an
	// "I_T nexus information:" block with one "I_T nexus: N" line each.
	n, in := 0, false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Target ") {
			in = strings.HasPrefix(line, fmt.Sprintf("Target %d:", tid))
			continue
		}
		if in && strings.Contains(line, "I_T nexus:") {
			n++
		}
	}
	return n, nil
}

// pickControlPort chooses a control port whose socket does not exist yet.
// Parallel test processes pick at random, so collisions are unlikely; the
// lock file tgtd creates makes a collision fail loudly rather than share.
func pickControlPort() (int, error) {
	for range 100 {
		// tgtd accepts control ports up to 32767.
		n := 1000 + rand.IntN(31000)
		if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", n)); errors.Is(err, os.ErrNotExist) {
			return n, nil
		}
	}
	return 0, errors.New("no free tgtd control port")
}

// redact hides account passwords from error messages: secrets never reach logs.
func redact(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if i > 0 && args[i-1] == "--password" {
			a = "<redacted>"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// logTail returns the last lines of tgtd's log for an error message.
func logTail(path string) string {
	if path == "" {
		return "(no log file configured)"
	}
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	// The last lines are in the last few KiB; a debug log can be large.
	const window = 8 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		f.Seek(st.Size()-window, io.SeekStart)
	}
	b, err := io.ReadAll(io.LimitReader(f, window))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return path + ": " + strings.Join(lines, " | ")
}
