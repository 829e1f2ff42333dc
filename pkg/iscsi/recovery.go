package iscsi

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
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
// With Config.MaxReissues n > 0, a command is re-issued at most n times:
// one in flight again when its n-th re-issue's connection failed too ends
// with ErrReissueFailed, naming both portals; with 0 it is re-issued until
// Config.RecoveryTimeout ends its wait. A planned reconnect (the target
// asked for a logout) does not count as a loss.
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
	var gaveUp int
	for _, t := range back {
		t.state, t.cn = taskQueued, nil
		if t.cancelled {
			// Nobody waits for it any more: drop it instead of re-issuing.
			s.finish(t, nil, cause)
			continue
		}
		if !planned {
			// t is in flight again after t.losses losses: each was
			// followed by a re-issue. With MaxReissues set (the
			// firmware boot path: once, issue 14) a command that
			// takes down every connection it goes out on must
			// surface, not loop until the recovery timeout. With 0
			// only RecoveryTimeout bounds it: a session serving a
			// running system's root rides out a link that flaps
			// twice rather than fail a write into EIO — it cannot
			// tell a poisonous command from a flapping link, and
			// RecoveryTimeout still ends the loop.
			if limit := s.cfg.MaxReissues; limit > 0 && t.losses >= limit {
				s.finish(t, nil, reissueError(t, cause))
				gaveUp++
				continue
			}
			t.losses++
			t.lostOn = c.portal
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
	if !planned {
		s.lastErr = cause
	}
	s.mu.Unlock()

	if gaveUp > 0 {
		s.log.Warn("iscsi: commands failed again after their last allowed re-issue; not sent again", "portal", c.portal, "failed", gaveUp, "err", cause)
	}
	multi := len(s.paths) > 1
	if planned || multi {
		// With other portals to go to, a lost connection is the
		// beginning of a failover: OnPath reports how it ended, and a
		// caller printing one warning for it should not see two.
		s.log.Info("iscsi: reconnecting", "portal", c.portal, "reason", cause, "reissue", n)
	} else {
		s.log.Warn("iscsi: connection lost; recovering (ERL 0)", "portal", c.portal, "err", cause, "reissue", n)
	}
	// The old reader and writer must be gone before the tasks are re-sent:
	// they may still hold the callers' buffers.
	c.wg.Wait()
	s.recoverLoop(max(wait, backoff(failures-1)))
}

// reissueError is the error of task t whose connection failed (cause)
// after its last allowed re-issue: it names the command and both paths,
// the one it was last lost on and the one it was re-issued through.
func reissueError(t *task, cause error) error {
	return fmt.Errorf("%w: command 0x%02x (CDB %x) was lost on %s, re-issued through %s and lost again (%d re-issues allowed): %w",
		ErrReissueFailed, t.cmd.CDB[0], t.cmd.CDB, t.lostOn, t.reissuedVia, t.losses, cause)
}

// recoverLoop logs in again until it succeeds or the session is closed.
// The first attempt goes back to the portal in use; when it fails and
// Config.Failover lists other portals, the next attempts go through them
// at once (Session.nextPath), and only a whole round of failures backs
// off. A login through another portal than the one in use runs
// Config.VerifyPath before the queued commands are re-issued there.
func (s *Session) recoverLoop(delay time.Duration) {
	s.mu.Lock()
	from := s.paths[s.good].addr
	cause := s.lastErr
	s.mu.Unlock()
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
		s.mu.Lock()
		idx, _ := s.nextPath(attempt)
		moved := idx != s.cur
		via := ""
		if moved {
			via = s.paths[idx].addr.Portal()
		}
		before := s.portal
		s.mu.Unlock()
		nc, res, portal, err := s.connectVia(s.ctx, via)
		s.mu.Lock()
		if err == nil {
			if s.closed {
				s.mu.Unlock()
				nc.Close()
				return
			}
			s.info.Reconnects++
			prevTPGT := s.info.TPGT
			s.cur = idx
			if moved {
				if s.pathIndex(portal) == idx {
					s.paths[idx].addr.TPGT = res.tpgt
				}
				if s.portal == before {
					// Later reconnects go here, unless a permanent
					// redirection just named another address.
					s.portal = via
				}
			}
			s.install(nc, res, portal)
			verify := moved && s.cfg.VerifyPath != nil
			s.probing = verify
			n := len(s.queue)
			c := s.cn
			s.pump()
			s.mu.Unlock()
			c.flush()
			if verify {
				if !s.verifyPath(c, idx, from, cause) {
					return
				}
				s.mu.Lock()
				if s.cn != c {
					s.mu.Unlock()
					return
				}
				s.pump()
				s.mu.Unlock()
				c.flush()
			}
			if moved {
				s.mu.Lock()
				s.good = idx
				s.mu.Unlock()
				to := s.Info()
				ev := PathEvent{Kind: PathMoved, From: from, Cause: cause, Reissued: n,
					To:        TargetAddress{Host: s.paths[idx].addr.Host, Port: s.paths[idx].addr.Port, TPGT: res.tpgt},
					SameGroup: from.TPGT != 0 && res.tpgt == prevTPGT}
				s.log.Info("iscsi: continuing through another portal", "from", from.String(), "to", ev.To.String(),
					"same_portal_group", ev.SameGroup, "tsih", to.TSIH, "reissued", n, "cause", cause)
				if s.cfg.OnPath != nil {
					s.cfg.OnPath(ev)
				}
				return
			}
			s.mu.Lock()
			s.good = idx
			s.mu.Unlock()
			s.log.Info("iscsi: session reinstated", "portal", portal, "attempt", attempt, "tsih", res.tsih, "reissued", n)
			return
		}
		s.lastErr = err
		closed := s.closed
		_, round := s.nextPath(attempt + 1)
		single := len(s.paths) == 1
		s.mu.Unlock()
		if closed || errors.Is(err, ErrSessionClosed) {
			return
		}
		if single || round {
			delay = max(backoff(attempt), time.Second)
		} else {
			delay = 0
		}
		lvl := slog.LevelWarn
		if delay == 0 {
			lvl = slog.LevelInfo // another portal is tried at once
		}
		s.log.Log(s.ctx, lvl, "iscsi: reconnect failed", "attempt", attempt, "portal", cmp.Or(via, s.portalInUse()), "err", err, "retry_in", delay)
	}
}

// portalInUse returns the portal reconnects go to. It takes s.mu.
func (s *Session) portalInUse() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.portal
}
