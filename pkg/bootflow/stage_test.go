package bootflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a Console that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Stage(name string, took time.Duration, summary string) {
	r.add(fmt.Sprintf("ok %s: %s", name, summary))
}
func (r *recorder) Failed(name string, took time.Duration, err error, attempt, attempts int, retryIn time.Duration) {
	r.add(fmt.Sprintf("fail %s %d/%d retry=%s: %v", name, attempt, attempts, retryIn, err))
}
func (r *recorder) Info(format string, args ...any) { r.add(fmt.Sprintf(format, args...)) }
func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, s)
}

func TestRunRetries(t *testing.T) {
	for _, tt := range []struct {
		name      string
		policy    RetryPolicy
		retry     bool
		deadline  time.Duration // of the boot's context (lunboot.timeout); 0: none
		failures  int           // attempts that fail before success
		failWith  error         // the error those attempts return
		wantCalls int
		wantErr   string
		wantCheck string
		wantLines []string
	}{
		{
			name: "success first time", policy: RetryPolicy{Attempts: 3}, retry: true,
			wantCalls: 1, wantLines: []string{"ok s: done"},
		},
		{
			name: "transient then success", policy: RetryPolicy{Attempts: 3, Backoff: time.Second}, retry: true,
			failures: 2, failWith: errors.New("refused"), wantCalls: 3,
			wantLines: []string{"fail s 1/3 retry=1s: refused", "fail s 2/3 retry=2s: refused", "ok s: done"},
		},
		{
			name: "attempts exhausted", policy: RetryPolicy{Attempts: 2, Backoff: time.Second}, retry: true,
			failures: 5, failWith: withCheck(errors.New("refused"), "start the target"), wantCalls: 2,
			wantErr: "s: refused", wantCheck: "start the target",
			wantLines: []string{"fail s 1/2 retry=1s: refused", "fail s 2/2 retry=0s: refused"},
		},
		{
			name: "permanent stops at once", policy: RetryPolicy{Attempts: 5}, retry: true,
			failures: 5, failWith: permanent(withCheck(errors.New("bad secret"), "fix CHAP")), wantCalls: 1,
			wantErr: "s: bad secret", wantCheck: "fix CHAP",
			wantLines: []string{"fail s 1/5 retry=0s: bad secret"},
		},
		{
			name: "not retryable stage", policy: RetryPolicy{Attempts: 5}, retry: false,
			failures: 5, failWith: errors.New("boom"), wantCalls: 1, wantErr: "s: boom",
			wantLines: []string{"fail s 1/1 retry=0s: boom"},
		},
		{
			name: "boot deadline ends the attempts", policy: RetryPolicy{Attempts: 100, Backoff: 2 * time.Second}, retry: true, deadline: 5 * time.Second,
			failures: 100, failWith: errors.New("refused"), wantCalls: 2, wantErr: "s: refused",
			wantLines: []string{"fail s 1/100 retry=2s: refused", "fail s 2/100 retry=0s: refused"},
		},
		{
			name: "no wait past the boot deadline", policy: RetryPolicy{Attempts: 100, Backoff: 2 * time.Second}, retry: true, deadline: 1500 * time.Millisecond,
			failures: 100, failWith: errors.New("refused"), wantCalls: 1, wantErr: "s: refused",
			wantLines: []string{"fail s 1/100 retry=0s: refused"},
		},
		{
			name: "backoff capped", policy: RetryPolicy{Attempts: 4, Backoff: time.Second, MaxBackoff: 2 * time.Second}, retry: true,
			failures: 3, failWith: errors.New("x"), wantCalls: 4,
			wantLines: []string{"fail s 1/4 retry=1s: x", "fail s 2/4 retry=2s: x", "fail s 3/4 retry=2s: x", "ok s: done"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				calls := 0
				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				start := time.Now()
				err := run(ctx, rec, "s", tt.policy, tt.retry, func(ctx context.Context) (string, error) {
					calls++
					if calls <= tt.failures {
						if tt.deadline > 0 && calls == 2 {
							// The second attempt runs into the boot's deadline.
							<-ctx.Done()
						}
						return "", tt.failWith
					}
					return "done", nil
				})
				if calls != tt.wantCalls {
					t.Errorf("fn called %d times, want %d", calls, tt.wantCalls)
				}
				if took := time.Since(start); tt.deadline > 0 && took > tt.deadline {
					t.Errorf("run returned after %v, past the boot deadline %v", took, tt.deadline)
				}
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("run = %v, want nil", err)
					}
				} else {
					var se *StageError
					if !errors.As(err, &se) || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("run = %v, want a *StageError containing %q", err, tt.wantErr)
					}
					if se.Check != tt.wantCheck {
						t.Errorf("StageError.Check = %q, want %q", se.Check, tt.wantCheck)
					}
				}
				if len(tt.wantLines) > 0 && len(rec.lines) >= len(tt.wantLines) {
					for i, w := range tt.wantLines {
						if rec.lines[i] != w {
							t.Errorf("console line %d = %q, want %q", i, rec.lines[i], w)
						}
					}
				} else if len(tt.wantLines) > 0 {
					t.Errorf("console = %q, want at least %q", rec.lines, tt.wantLines)
				}
			})
		})
	}
}

func TestErrorWrappersKeepTheChain(t *testing.T) {
	base := errors.New("cause")
	err := permanent(withCheck(fmt.Errorf("login: %w", base), "check %s", "x"))
	if !errors.Is(err, base) {
		t.Errorf("errors.Is(permanent(withCheck(...)), cause) = false, want true")
	}
	if err.Error() != "login: cause" {
		t.Errorf("Error() = %q, want the cause's text unchanged", err.Error())
	}
	if permanent(nil) != nil || withCheck(nil, "x") != nil {
		t.Errorf("wrapping nil must give nil")
	}
}
