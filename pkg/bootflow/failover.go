package bootflow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// luIdentity is the booted logical unit's VPD page 0x83 identity, read
// after the login; a portal the session fails over to must show the same
// (iscsi.Config.VerifyPath).
type luIdentity struct {
	mu   sync.Mutex
	id   scsi.Identity
	err  error
	read bool
}

func (l *luIdentity) remember(ctx context.Context, ex scsi.Executor, lun scsi.LUN) error {
	id, err := scsi.LogicalUnitIdentity(ctx, ex, lun)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.id, l.err, l.read = id, err, true
	return err
}

// verify returns the check for iscsi.Config.VerifyPath. Without a known
// identity it refuses every other portal: lunboot cannot then tell a
// second path to the disk from a path to another disk, and writing the
// OS's blocks to another disk is worse than a failed boot.
func (l *luIdentity) verify(lun scsi.LUN) func(context.Context, scsi.Executor) error {
	return func(ctx context.Context, ex scsi.Executor) error {
		l.mu.Lock()
		want, werr, read := l.id, l.err, l.read
		l.mu.Unlock()
		switch {
		case !read:
			return errors.New("the logical unit's identity was not read yet")
		case werr != nil:
			return fmt.Errorf("the logical unit's identity is unknown (%w), so another path cannot be checked", werr)
		}
		got, err := scsi.LogicalUnitIdentity(ctx, ex, lun)
		if err != nil {
			return err
		}
		if !got.Same(want) {
			return fmt.Errorf("LUN %s there is %s, not %s (VPD page 0x83)", lun, got, want)
		}
		return nil
	}
}

// onPath prints the console's one line for a failover: which portal
// failed, which one the boot continues through, and how.
func (b *boot) onPath(ev iscsi.PathEvent) {
	at := time.Since(b.start).Seconds()
	switch ev.Kind {
	case iscsi.PathMoved:
		how := "a new session through another portal group, same logical unit"
		if ev.SameGroup {
			how = fmt.Sprintf("portal group %d again: session recovery by reinstatement, same logical unit", ev.To.TPGT)
		}
		b.o.Console.Info("warning: path %s failed (%v); continuing through %s (%s, %d command(s) re-issued) at +%.2fs",
			ev.From, ev.Cause, ev.To, how, ev.Reissued, at)
	case iscsi.PathRefused:
		b.o.Console.Info("warning: not failing over to %s: %v (at +%.2fs)", ev.To, ev.Err, at)
	}
}

// discoverPortals asks the target (SendTargets, RFC 7143 §12.3) for the
// portals it reports for our target and adds them to the session's
// failover list, with their portal group tags. It is best effort and
// bounded: a target that refuses discovery sessions still boots.
func (b *boot) discoverPortals(ctx context.Context, ic iscsi.Config, s *iscsi.Session) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	dc := ic
	dc.Portal = s.Info().Portal
	dc.Failover, dc.VerifyPath, dc.OnPath = nil, nil, nil
	targets, err := iscsi.Discover(ctx, dc)
	if err != nil {
		b.log.Debug("SendTargets for failover portals", "err", err)
		return
	}
	for _, t := range targets {
		if t.Name == ic.TargetName {
			s.AddFailover(t.Addresses...)
		}
	}
	if paths := s.Paths(); len(paths) > 1 {
		b.o.Console.Info("  paths: %s in use; failover through %s", s.Info().Portal, formatPaths(paths[1:]))
	}
}

func formatPaths(ps []iscsi.TargetAddress) string {
	out := ""
	for i, p := range ps {
		if i > 0 {
			out += ", "
		}
		out += p.String()
	}
	return out
}
