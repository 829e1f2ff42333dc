package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/proc"
	"github.com/lunboot/lunboot/qemu/bootlog"
)

// commandTimeout bounds every short command the lab runs (ip, mkfs…).
const commandTimeout = 30 * time.Second

// cmdLog is commands.log: every command the lab runs, when, how long it
// took and how it ended, so a failure can be replayed by hand.
type cmdLog struct {
	mu    sync.Mutex
	f     *os.File
	start time.Time
}

func openCmdLog(path string) (*cmdLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &cmdLog{f: f, start: time.Now()}, nil
}

func (c *cmdLog) printf(format string, args ...any) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return
	}
	fmt.Fprintf(c.f, "%s [+%7.3fs] %s\n", time.Now().Format("15:04:05.000"),
		time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

func (c *cmdLog) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

var (
	// passwordParam matches the value of a kernel or tool parameter whose
	// name says it is a secret (iscsi_password=, rd.iscsi.in.password=,
	// chap-secret=…).
	passwordParam = regexp.MustCompile(`(?i)((?:password|secret)[\w.-]*=)([^\s'"]+)`)
	// rootPathCreds matches dracut's iscsi:user:pass[:ruser:rpass]@ prefix.
	rootPathCreds = regexp.MustCompile(`(iscsi:[^:@\s]*:)[^:@\s]*((?::[^:@\s]*:)[^:@\s]*)?@`)
)

// maskSecrets replaces the given secrets and password-like parameters in s
// with "***".
func maskSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	s = passwordParam.ReplaceAllString(s, "${1}***")
	return rootPathCreds.ReplaceAllStringFunc(s, func(m string) string {
		sub := rootPathCreds.FindStringSubmatch(m)
		out := sub[1] + "***"
		if sub[2] != "" {
			out += sub[2][:strings.LastIndexByte(sub[2], ':')+1] + "***"
		}
		return out + "@"
	})
}

// quoteArgs renders argv as a shell would need it, for the command log.
func quoteArgs(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]{}!#~") {
			b.WriteString(a)
			continue
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(a, "'", `'\''`))
		b.WriteByte('\'')
	}
	return b.String()
}

// run executes a short command, bounded by commandTimeout, and records it in
// the command log. The error names the command and carries its output.
func (l *Lab) run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	status := "ok"
	if err != nil {
		status = err.Error()
	}
	l.cmds.printf("$ %s  -> %s (%s)", l.mask(quoteArgs(argv)), status, time.Since(start).Round(time.Millisecond))
	if text != "" && err != nil {
		l.cmds.printf("  output: %s", l.mask(strings.ReplaceAll(text, "\n", "\n  output: ")))
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (gave up after %s)", ctx.Err(), commandTimeout)
		}
		return text, fmt.Errorf("%s: %w: %s (see %s)", l.mask(quoteArgs(argv)), err, l.mask(text), l.cmdsPath)
	}
	return text, nil
}

// process is a long-running child (dnsmasq, QEMU, a client tool), run by
// package proc: in its own process group, so stop reaches anything it
// forks, and with PDEATHSIG, so it dies with the test binary even when that
// is SIGKILLed.
type process struct {
	component string
	logPath   string
	*proc.Process
}

// startProcess starts argv with stderr (and stdout, unless given) appended to
// logPath.
func (l *Lab) startProcess(component, logPath string, stdin io.Reader, stdout io.Writer, argv []string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", component, err)
	}
	defer f.Close() // the child holds its own descriptor
	stdio := proc.IO{Stdin: stdin, Stdout: f, Stderr: f, OnExit: func(pid int, err error) {
		l.cmds.printf("  %s (pid %d) exited: %v", component, pid, exitText(err))
	}}
	if stdout != nil {
		stdio.Stdout = stdout
	}
	pp, err := proc.Start(argv, stdio)
	if err != nil {
		l.cmds.printf("& %s  -> %v", l.mask(quoteArgs(argv)), err)
		return nil, fmt.Errorf("%s: %w", component, err)
	}
	l.cmds.printf("& %s  -> pid %d, log %s", l.mask(quoteArgs(argv)), pp.Pid(), logPath)
	p := &process{component: component, logPath: logPath, Process: pp}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// stop ends the process group: SIGTERM, then SIGKILL after grace. It waits
// (bounded) for the process to be reaped and is safe to call more than once.
func (p *process) stop(grace time.Duration) error {
	if err := p.Stop(grace); err != nil {
		return fmt.Errorf("%s: %w", p.component, err)
	}
	return nil
}

// tailFile returns the last n lines of a log file for an error message.
func tailFile(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("(cannot read %s: %v)", path, err)}
	}
	return bootlog.LastLines(string(b), n)
}

// componentError names the failing component and its log, with the log's
// last lines, which is what a reader needs first.
func componentError(component, logPath string, err error) error {
	tail := tailFile(logPath, 12)
	return &ComponentError{Component: component, LogFile: logPath, Tail: tail, Err: err}
}

// ComponentError is a failure of one lab component (dnsmasq, tgtd, QEMU…),
// with the log file to read and its last lines.
type ComponentError struct {
	Component string
	LogFile   string
	Tail      []string
	Err       error
}

// Error formats the failure with the log's last lines indented below it.
func (e *ComponentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v (log %s)", e.Component, e.Err, e.LogFile)
	for _, l := range e.Tail {
		b.WriteString("\n    | ")
		b.WriteString(l)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *ComponentError) Unwrap() error { return e.Err }

// errClosed is returned by operations on a closed lab.
var errClosed = errors.New("lab is closed")
