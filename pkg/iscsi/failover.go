package iscsi

import (
	"context"
	"fmt"

	"github.com/lunboot/lunboot/pkg/scsi"
)

// PathEventKind says what happened to the session's path.
type PathEventKind uint8

// Path events.
const (
	// PathMoved: the session continues through another portal.
	PathMoved PathEventKind = iota + 1
	// PathRefused: a portal answered, but VerifyPath found another
	// logical unit behind it; the session will not use it.
	PathRefused
)

// PathEvent reports a change of the session's portal (Config.OnPath).
type PathEvent struct {
	Kind PathEventKind
	// From is the portal whose connection failed, with its group tag;
	// To is the portal now in use (PathMoved) or refused (PathRefused).
	From, To TargetAddress
	// SameGroup tells whether To is in From's portal group: the login
	// reinstated the session (RFC 7143 §6.3.5); otherwise it is a new
	// session through another portal group.
	SameGroup bool
	// Reissued is how many commands went out again through To.
	Reissued int
	// Cause is why From was left (the connection error); for
	// PathRefused, Err says why To was refused.
	Cause, Err error
}

// path is one portal of the session's target.
type path struct {
	addr    TargetAddress // TPGT 0 until a login through it tells
	refused error         // why VerifyPath refused it, for good
}

// initPaths sets the session's portals: Config.Portal first, then
// Config.Failover without duplicates. s.mu is held or the session is not
// shared yet.
func (s *Session) initPaths() {
	host, port, _ := splitPortal(s.cfg.Portal)
	s.paths = []*path{{addr: TargetAddress{Host: host, Port: port}}}
	for _, a := range s.cfg.Failover {
		if s.pathIndex(a.Portal()) < 0 {
			s.paths = append(s.paths, &path{addr: a})
		}
	}
}

// pathIndex returns the index of the path with that host:port, or -1.
func (s *Session) pathIndex(portal string) int {
	for i, p := range s.paths {
		if p.addr.Portal() == portal {
			return i
		}
	}
	return -1
}

// nextPath picks the portal of reconnect attempt n within one outage:
// attempt 1 goes back to the portal in use (a transient fault, a target
// restarting), later ones walk the other usable portals — those of the
// session's portal group first (where the login is a reinstatement of
// this session), then those whose group is not known yet, then the other
// groups — and start over. It reports whether the attempt starts a new
// round over every usable portal (the caller then backs off). s.mu is
// held.
func (s *Session) nextPath(n int) (idx int, newRound bool) {
	cur := s.cur
	order := []int{}
	if s.paths[cur].refused == nil {
		order = append(order, cur)
	}
	tpgt := s.info.TPGT
	for _, pass := range []func(p *path) bool{
		func(p *path) bool { return p.addr.TPGT != 0 && p.addr.TPGT == tpgt },
		func(p *path) bool { return p.addr.TPGT == 0 },
		func(p *path) bool { return p.addr.TPGT != 0 && p.addr.TPGT != tpgt },
	} {
		for i, p := range s.paths {
			if i != cur && p.refused == nil && pass(p) {
				order = append(order, i)
			}
		}
	}
	if len(order) == 0 {
		// Every portal refused but the one in use: keep trying it (the
		// caller's recovery timeout bounds the commands' wait).
		return cur, true
	}
	k := (n - 1) % len(order)
	return order[k], k == 0 && n > 1
}

// probeExecutor runs commands on the new connection while the session's
// queue is held (VerifyPath).
type probeExecutor struct{ s *Session }

func (p probeExecutor) Execute(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
	return p.s.execute(ctx, cmd, true)
}

// verifyPath runs Config.VerifyPath on connection c, just installed
// through path idx while the queue is held. It returns true if the
// session may use c; on false the connection has been failed (the next
// recovery skips the refused path) or had failed already.
func (s *Session) verifyPath(c *conn, idx int, from TargetAddress, cause error) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.LoginTimeout)
	err := s.cfg.VerifyPath(ctx, probeExecutor{s})
	cancel()
	s.mu.Lock()
	if s.cn != c {
		// The new connection failed during the check; its own recovery
		// goes on.
		s.mu.Unlock()
		return false
	}
	if err == nil {
		s.probing = false
		s.mu.Unlock()
		return true
	}
	p := s.paths[idx]
	p.refused = fmt.Errorf("portal %s (portal group %d) leads to another logical unit: %w", p.addr.Portal(), p.addr.TPGT, err)
	s.lastErr = p.refused
	to := p.addr
	s.mu.Unlock()
	s.log.Warn("iscsi: failover portal refused", "portal", to.Portal(), "err", err)
	if s.cfg.OnPath != nil {
		s.cfg.OnPath(PathEvent{Kind: PathRefused, From: from, To: to, Cause: cause, Err: p.refused})
	}
	c.fail(p.refused)
	return false
}

// AddFailover adds portals to the session's failover list (those a
// SendTargets discovery reported after the login, say); portals already
// known are skipped, but a known portal's unknown group tag is filled in.
func (s *Session) AddFailover(addrs ...TargetAddress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		if a.Host == "" || a.Port == 0 {
			continue
		}
		if i := s.pathIndex(a.Portal()); i >= 0 {
			if s.paths[i].addr.TPGT == 0 {
				s.paths[i].addr.TPGT = a.TPGT
			}
			continue
		}
		s.paths = append(s.paths, &path{addr: a})
	}
}

// Paths returns the session's portals, the one in use first, with their
// portal group tags where known, leaving out refused ones: what a
// hand-off to the OS lists.
func (s *Session) Paths() []TargetAddress {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []TargetAddress{s.paths[s.cur].addr}
	for i, p := range s.paths {
		if i != s.cur && p.refused == nil {
			out = append(out, p.addr)
		}
	}
	return out
}
