// Package proc runs the long-lived children of the test harnesses — QEMU
// guests, dnsmasq, tgtd — so that none outlives its owner: each runs in its
// own process group, so a stop reaches whatever it forks, and with
// PDEATHSIG, so it dies with the test binary even when that is SIGKILLed
// and no cleanup runs. Every stop is bounded.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// reapTimeout bounds the wait for a process to be reaped after SIGKILL; a
// process in uninterruptible sleep (D state) can outlast it.
const reapTimeout = 10 * time.Second

// waitDelay bounds how long Wait copies output after the process has
// exited, when a forked child still holds its pipes.
const waitDelay = 5 * time.Second

// IO is a process's standard streams; nil ones are /dev/null. Writers
// that are not *os.File are fed by goroutines of os/exec until the process
// and its group end.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// OnExit, if set, is called with the PID and exit error once the process has
	// been reaped, before Done is closed: a log line it writes comes
	// before anything that waited for the process.
	OnExit func(pid int, err error)
}

// Process is a running child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
	once sync.Once
	stop error
}

// Start starts argv.
func Start(argv []string, stdio IO) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("proc: empty command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if stdio.OnExit != nil {
			stdio.OnExit(cmd.Process.Pid, p.err)
		}
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process ID, which is also its process group's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process ended (nil for exit status 0); only valid
// once Done is closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end or ctx to expire, and returns its exit
// error or ctx's.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after grace (at once
// when grace is 0). It waits, bounded, until the process is reaped, and is
// safe to call more than once and from several goroutines: later calls
// return the first call's result.
func (p *Process) Stop(grace time.Duration) error {
	p.once.Do(func() {
		if p.Exited() {
			return
		}
		pgid := p.cmd.Process.Pid
		if grace > 0 {
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-p.done:
				return
			case <-time.After(grace):
			}
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(reapTimeout):
			p.stop = fmt.Errorf("pid %d did not die within %v of SIGKILL", pgid, reapTimeout)
		}
	})
	return p.stop
}
