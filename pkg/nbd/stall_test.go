package nbd

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// connScript gives one connection's state at a time since the watch began.
type connScript func(at time.Duration) (unread int, ok bool, answered uint64)

func steady(unread int, answered uint64) connScript {
	return func(time.Duration) (int, bool, uint64) { return unread, true, answered }
}

func TestStallWatch(t *testing.T) {
	const after, every = 2 * time.Second, 50 * time.Millisecond
	tests := []struct {
		name     string
		conns    []connScript
		wantConn int // -1: no stall within the run
	}{
		{"every reply read", []connScript{steady(0, 3), steady(0, 1)}, -1},
		{"reply left unread", []connScript{steady(0, 3), steady(1280, 1)}, 1},
		{"unread from the start on conn 0", []connScript{steady(4864, 1), steady(0, 0)}, 0},
		{"not a socket", []connScript{func(time.Duration) (int, bool, uint64) { return 0, false, 0 }}, -1},
		{"reader drains between samples", []connScript{func(at time.Duration) (int, bool, uint64) {
			if at/every%2 == 0 {
				return 4864, true, uint64(at / every)
			}
			return 0, true, uint64(at / every)
		}}, -1},
		{"stream of replies keeps the queue full", []connScript{func(at time.Duration) (int, bool, uint64) {
			return 200000, true, uint64(at / every)
		}}, -1},
		{"slow reader shrinks the queue", []connScript{func(at time.Duration) (int, bool, uint64) {
			return max(1, 100000-int(at/time.Millisecond)), true, 7
		}}, -1},
		{"late read within the bound", []connScript{func(at time.Duration) (int, bool, uint64) {
			if at < after-300*time.Millisecond {
				return 1280, true, 1
			}
			return 0, true, 1
		}}, -1},
		{"stream stops with a reply unread", []connScript{steady(0, 0), func(at time.Duration) (int, bool, uint64) {
			if at < 3*time.Second {
				return 4864 * int(1+at/every%3), true, uint64(at / every)
			}
			return 4864, true, 1000
		}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				w := stallWatch{
					conns: len(tt.conns),
					unread: func(i int) (int, bool) {
						n, ok, _ := tt.conns[i](time.Since(start))
						return n, ok
					},
					answered: func(i int) uint64 {
						_, _, a := tt.conns[i](time.Since(start))
						return a
					},
					after: after,
					every: every,
				}
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				err := w.run(ctx)
				if tt.wantConn < 0 {
					if err != nil {
						t.Errorf("run() = %v, want no stall", err)
					}
					return
				}
				var se *stallError
				if !errors.As(err, &se) || !errors.Is(err, ErrStalled) {
					t.Fatalf("run() = %v, want a stall on connection %d", err, tt.wantConn)
				}
				if se.conn != tt.wantConn || se.after < after || se.after > after+2*every {
					t.Errorf("run() = conn %d after %v, want conn %d after %v", se.conn, se.after, tt.wantConn, after)
				}
			})
		})
	}
}
