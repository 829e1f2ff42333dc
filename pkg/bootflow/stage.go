package bootflow

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Console receives the boot's progress: one line per stage result, and
// progress lines for long transfers. The command implements it; the boot
// flow never writes to a terminal itself.
type Console interface {
	// Stage reports a finished stage: its name, how long it took (all
	// attempts), and a one-line summary of what it did.
	Stage(name string, took time.Duration, summary string)
	// Failed reports a failed attempt of a stage; retryIn is zero when no
	// retry follows; attempts is AttemptsForever when the stage is retried
	// until the boot's deadline.
	Failed(name string, took time.Duration, err error, attempt, attempts int, retryIn time.Duration)
	// Info prints a line that belongs to the current stage (a warning, a
	// menu, a progress report).
	Info(format string, args ...any)
}

// Flusher is implemented by a Console whose lines can still be on their way
// when they have been written: on a serial console the kernel holds them in
// the tty's buffer and sends about 11 KB/s at 115200 baud, and kexec
// discards what the old kernel has not sent. Boot calls Flush right before
// the jump, so that the last stage lines reach the screen; Flush must
// return within a bounded time whatever happens to the line.
type Flusher interface {
	Flush()
}

// StageError is a stage's final failure: which stage, the cause, and what to
// check — the three things the console shows before the rescue shell.
type StageError struct {
	Stage string
	Err   error
	// Check tells the operator what to look at; empty when the cause says it.
	Check string
	// Reboot is set when the configuration (lunboot.rescue=0) asks for a
	// reboot instead of a rescue shell.
	Reboot bool
}

func (e *StageError) Error() string { return fmt.Sprintf("%s: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// checkError attaches operator advice to an error without changing its text
// or its chain (errors.Is/As still see the cause).
type checkError struct {
	err   error
	check string
}

func (e *checkError) Error() string { return e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// withCheck annotates err with what the operator should check.
func withCheck(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &checkError{err: err, check: fmt.Sprintf(format, args...)}
}

// permanentError marks an error that retrying cannot fix (a wrong CHAP
// secret, a target name the portal does not know): the stage gives up at
// once instead of spending the retry budget.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// AttemptsForever as RetryPolicy.Attempts retries until the boot's
// deadline, or without end if there is none: what bootcfg.RetryForever
// (lunboot.retries=forever) asks for. A count, not a flag, so the retry
// loop needs no special case; at the 16-s maximum backoff it lasts over
// 500 years.
const AttemptsForever = 1 << 30

// RetryPolicy bounds how a stage that can be retried is retried.
type RetryPolicy struct {
	// Attempts is the total number of attempts (at least 1). The boot's
	// own deadline (lunboot.timeout) ends them sooner: no wait runs past it.
	Attempts int
	// Backoff is the first wait between attempts; it doubles up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// run executes one stage: fn is attempted under the policy (once when
// retry is false), every failed attempt is reported, and the final failure
// becomes a *StageError carrying the operator advice.
func run(ctx context.Context, c Console, name string, p RetryPolicy, retry bool, fn func(ctx context.Context) (string, error)) error {
	start := time.Now()
	attempts := 1
	if retry && p.Attempts > 1 {
		attempts = p.Attempts
	}
	backoff := p.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	var err error
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		var summary string
		summary, err = fn(ctx)
		if err == nil {
			c.Stage(name, time.Since(start), summary)
			return nil
		}
		var perm *permanentError
		last := attempt >= attempts || errors.As(err, &perm) || ctx.Err() != nil
		wait := time.Duration(0)
		if !last {
			wait = backoff
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				last, wait = true, 0
			}
		}
		c.Failed(name, time.Since(t0), err, attempt, attempts, wait)
		if last {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return stageError(name, err)
		}
		backoff *= 2
		if p.MaxBackoff > 0 && backoff > p.MaxBackoff {
			backoff = p.MaxBackoff
		}
	}
	return stageError(name, err)
}

func stageError(name string, err error) *StageError {
	se := &StageError{Stage: name, Err: err}
	var ce *checkError
	if errors.As(err, &ce) {
		se.Check = ce.check
	}
	return se
}
