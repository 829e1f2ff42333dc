package handoff

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/distro"
)

// Shell is a root shell on a lab distribution's serial console.
type Shell struct {
	m *Machine
	n int
}

var (
	passwordPrompt = regexp.MustCompile(`Password: `)
	rootPrompt     = regexp.MustCompile(`root@lunboot-[\w-]+:~# `)
)

// Login logs in as root on the serial console (password
// distro.RootPassword), trying three times.
func (m *Machine) Login(ctx context.Context) (*Shell, error) {
	var err error
	for i := 0; i < 3; i++ {
		m.Send("root\n")
		if _, err = m.ExpectWithin(ctx, 20*time.Second, passwordPrompt); err != nil {
			continue
		}
		m.Send(distro.RootPassword + "\n")
		if _, err = m.ExpectWithin(ctx, 60*time.Second, rootPrompt); err == nil {
			return &Shell{m: m}, nil
		}
	}
	return nil, fmt.Errorf("logging in on %s's console: %w", m.System.Name, err)
}

// Run runs cmd and returns what it printed, within d. The markers around
// the output are computed by the shell, so the echoed command line cannot
// match them. A non-zero exit status ($? of cmd, i.e. of its last
// pipeline) is an *ExitError naming the command and the status; the
// output is returned with it. Callers that expect a non-zero status take
// it with errors.As.
func (s *Shell) Run(ctx context.Context, cmd string, d time.Duration) (string, error) {
	s.n++
	n := 1000 + s.n
	if err := s.m.Send(fmt.Sprintf("echo B$((%d+1)); %s; echo E$((%d+1))-$?\n", n-1, cmd, n-1)); err != nil {
		return "", err
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?s)B%d\r?\n(.*?)E%d-(\d+)\r?\n`, n, n))
	mt, err := s.m.ExpectWithin(ctx, d, re)
	if err != nil {
		return "", fmt.Errorf("running %q: %w", cmd, err)
	}
	return runResult(cmd, mt.Groups[1], mt.Groups[2])
}

// ExitError is a shell command that ended with a non-zero status.
type ExitError struct {
	Cmd    string
	Status int
	Output string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("running %q: exit status %d (output %q)", e.Cmd, e.Status, tail(e.Output, 400))
}

// runResult turns the text between Run's markers and the status the
// shell printed into Run's result.
func runResult(cmd, out, status string) (string, error) {
	out = strings.ReplaceAll(out, "\r", "")
	code, err := strconv.Atoi(status)
	if err != nil {
		return out, fmt.Errorf("running %q: exit status %q is not a number: %w", cmd, status, err)
	}
	if code != 0 {
		return out, &ExitError{Cmd: cmd, Status: code, Output: out}
	}
	return out, nil
}

// tail is the last n bytes of s, marked as cut when it is longer.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
