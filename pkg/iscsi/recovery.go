package iscsi

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// Reconnect backoff: after the first attempt (made after DefaultTime2Wait),
// attempts are spaced 1s, 2s, 4s … up to maxBackoff.
const maxBackoff = 30 * time.Second

func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Second << min(n-1, 5)
	return min(d, maxBackoff)
}

// connFailed runs once per failed connection: error-recovery level 0
// (RFC 7143 §7.1.5, §6.3.5 session reinstatement). The commands in flight
// go back to the front of the queue, in CmdSN order, to be re-issued with
// fresh ITTs and CmdSNs once a new login with the same ISID (and TSIH 0,
// which makes the target drop the old session and its tasks) succeeds.
func (s *Session) connFailed(c *conn, cause error) {
	s.mu.Lock()
	if s.cn != c {
		s.mu.Unlock()
		return
	}
	s.cn = nil
	wait := c.wait
	planned := c.stopping
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.lastErr = cause
	var back []*task
	for _, t := range s.tasks {
		back = append(back, t)
	}
	clear(s.tasks)
	slices.SortFunc(back, func(a, b *task) int {
		if wire.SerialLess(a.cmdSN, b.cmdSN) {
			return -1
		}
		return 1
	})
	requeue := back[:0]
	for _, t := range back {
		t.state, t.cn = taskQueued, nil
		if t.cancelled {
			// Nobody waits for it any more: drop it instead of re-issuing.
			s.finish(t, nil, cause)
			continue
		}
		requeue = append(requeue, t)
	}
	s.queue = append(requeue, s.queue...)
	if s.cfg.RecoveryTimeout < 0 || s.closing {
		err := fmt.Errorf("%w: connection lost (recovery disabled): %w", ErrSessionClosed, cause)
		if s.closing {
			err = fmt.Errorf("%w: connection lost during logout: %w", ErrSessionClosed, cause)
		}
		s.closeLocked(err)
		s.mu.Unlock()
		c.wg.Wait()
		if planned && s.closing {
			s.log.Debug("iscsi: connection closed after logout", "portal", c.portal)
		} else {
			s.log.Warn("iscsi: connection lost; session closed", "portal", c.portal, "err", cause)
		}
		return
	}
	for _, t := range s.queue {
		s.armTimer(t)
	}
	if !planned {
		s.failures++
	}
	failures := s.failures
	n := len(requeue)
	s.mu.Unlock()

	if planned {
		s.log.Info("iscsi: reconnecting", "portal", c.portal, "reason", cause, "reissue", n)
	} else {
		s.log.Warn("iscsi: connection lost; recovering (ERL 0)", "portal", c.portal, "err", cause, "reissue", n)
	}
	// The old reader and writer must be gone before the tasks are re-sent:
	// they may still hold the callers' buffers.
	c.wg.Wait()
	s.recoverLoop(max(wait, backoff(failures-1)))
}

// recoverLoop logs in again until it succeeds or the session is closed.
func (s *Session) recoverLoop(delay time.Duration) {
	for attempt := 1; ; attempt++ {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		nc, res, portal, err := s.connect(s.ctx)
		s.mu.Lock()
		if err == nil {
			if s.closed {
				s.mu.Unlock()
				nc.Close()
				return
			}
			s.info.Reconnects++
			s.install(nc, res, portal)
			n := len(s.queue)
			c := s.cn
			s.pump()
			s.mu.Unlock()
			c.flush()
			s.log.Info("iscsi: session reinstated", "portal", portal, "attempt", attempt, "tsih", res.tsih, "reissued", n)
			return
		}
		s.lastErr = err
		closed := s.closed
		s.mu.Unlock()
		if closed || errors.Is(err, ErrSessionClosed) {
			return
		}
		delay = max(backoff(attempt), time.Second)
		s.log.Warn("iscsi: reconnect failed", "attempt", attempt, "err", err, "retry_in", delay)
	}
}
