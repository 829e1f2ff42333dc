package iscsi

import (
	"context"
	"fmt"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// logout sends a Logout Request and waits for the response.
func (c *conn) logout(ctx context.Context, reason uint8) (wire.LogoutResponse, error) {
	s := c.s
	s.mu.Lock()
	itt := s.allocITT()
	ch := make(chan wire.LogoutResponse, 1)
	c.logoutITT, c.logoutCh = itt, ch
	c.stopping, c.draining = true, true
	req := wire.LogoutRequest{Immediate: true, Reason: reason, ITT: itt, CmdSN: s.cmdSN, ExpStatSN: c.expStatSN.Load()}
	s.mu.Unlock()
	var h wire.BHS
	req.Encode(&h)
	c.w.add(c.newPDU(&h, nil, nil))
	c.flush()
	select {
	case r := <-ch:
		return r, nil
	case <-c.failed:
		// The target closes the connection right after its response: the
		// reader may have delivered it just before failing.
		select {
		case r := <-ch:
			return r, nil
		default:
		}
		return wire.LogoutResponse{}, fmt.Errorf("connection failed before the Logout Response: %w", c.err)
	case <-ctx.Done():
		return wire.LogoutResponse{}, fmt.Errorf("no Logout Response: %w", ctx.Err())
	}
}

// drainAndLogout answers a target's request to log out (or to
// renegotiate): stop sending, let the commands in flight finish within
// limit, log out, and let recovery log in again.
func (c *conn) drainAndLogout(limit time.Duration, why string) {
	s := c.s
	s.mu.Lock()
	c.draining = true
	s.mu.Unlock()
	if limit <= 0 {
		limit = DefaultLoginTimeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	go func() {
		select {
		case <-c.failed:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = s.waitFor(ctx, func() bool {
		for _, t := range s.tasks {
			if t.cn == c {
				return false
			}
		}
		return true
	})
	lctx, lcancel := context.WithTimeout(s.ctx, s.cfg.LoginTimeout)
	defer lcancel()
	if _, err := c.logout(lctx, wire.LogoutCloseSession); err != nil {
		s.log.Warn("iscsi: logout requested by the target failed", "err", err)
	}
	c.fail(fmt.Errorf("iscsi: %s", why))
}
