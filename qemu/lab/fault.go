package lab

// The lab's fault API: the few ways a test breaks a running boot, kept in
// one place so every suite (multipath failover, link faults, the LIO
// target guest, carry-in) breaks things the same way and records it the
// same way in commands.log ("# fault: …", with the time since the guest
// started, which is what console timestamps are compared with).
//
//   - a guest's link: VM.SetLink / VM.LinkDown, QEMU's set_link through
//     the monitor, so the guest's NIC loses its carrier as with a pulled
//     cable (the host-side tap stays up);
//   - a target's link: Target.SetLink, the target's portal address cut
//     off in both directions while tgtd keeps running (for a target that
//     is itself a guest, use that guest's VM.SetLink);
//   - a target killed or restarted: Target.Kill (SIGKILL, as a crash or a
//     power cut) and Target.Restart (same portal, same exports, same data).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
)

// faultTimeout bounds one fault action (a monitor command, an ip rule).
const faultTimeout = 10 * time.Second

// monitor returns the guest's monitor connection, dialling it on first
// use. QEMU's socket takes one client at a time: the VM keeps it.
func (v *VM) monitor(ctx context.Context) (*qemuvm.Monitor, error) {
	v.monMu.Lock()
	defer v.monMu.Unlock()
	if v.mon != nil {
		return v.mon, nil
	}
	if v.monPath == "" {
		return nil, qemuvm.ErrNoMonitor
	}
	if v.Exited() {
		return nil, fmt.Errorf("lab: vm %s: QEMU has exited", v.cfg.Name)
	}
	m, err := qemuvm.DialMonitor(ctx, v.monPath)
	if err != nil {
		return nil, fmt.Errorf("lab: vm %s: %w", v.cfg.Name, err)
	}
	v.mon = m
	return m, nil
}

func (v *VM) closeMonitor() {
	v.monMu.Lock()
	defer v.monMu.Unlock()
	if v.mon != nil {
		v.mon.Close()
		v.mon = nil
	}
}

// SetLink takes the link of the guest's NIC nic (its index in
// VMConfig.NICs) down or up as the guest sees it: QEMU's set_link, so the
// guest's driver reports carrier loss. The call is bounded by ctx (and
// faultTimeout).
func (v *VM) SetLink(ctx context.Context, nic int, up bool) error {
	if nic < 0 || nic >= len(v.nics) {
		return fmt.Errorf("lab: vm %s: set link of NIC %d: the guest has %d NIC(s)", v.cfg.Name, nic, len(v.nics))
	}
	ctx, cancel := context.WithTimeout(ctx, faultTimeout)
	defer cancel()
	m, err := v.monitor(ctx)
	if err != nil {
		return err
	}
	if err := m.SetLink(ctx, nic, up); err != nil {
		return fmt.Errorf("lab: vm %s: %w", v.cfg.Name, err)
	}
	v.lab.cmds.printf("# fault: vm %s NIC %d link %s at +%s", v.cfg.Name, nic, upDown(up), v.Elapsed().Round(time.Millisecond))
	return nil
}

// LinkFault records when a fault began and ended, as times since the
// guest's QEMU started (the clock of Match.At).
type LinkFault struct {
	Down, Up time.Duration
}

// LinkDown takes NIC nic's link down for d and brings it back. The link
// comes back up even when ctx ends during the outage (the error then says
// so): a test that gives up must not leave the guest cut off for the rest
// of its teardown.
func (v *VM) LinkDown(ctx context.Context, nic int, d time.Duration) (LinkFault, error) {
	var f LinkFault
	if err := v.SetLink(ctx, nic, false); err != nil {
		return f, err
	}
	f.Down = v.Elapsed()
	var waitErr error
	select {
	case <-time.After(d):
	case <-ctx.Done():
		waitErr = fmt.Errorf("lab: vm %s: link outage cut short: %w", v.cfg.Name, ctx.Err())
	}
	upCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), faultTimeout)
	defer cancel()
	if err := v.SetLink(upCtx, nic, true); err != nil {
		return f, errors.Join(waitErr, err)
	}
	f.Up = v.Elapsed()
	return f, waitErr
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// AddServerAddr adds another IPv4 address of the lab's subnet to the
// bridge (.2, .3, … in order): a second portal address of the target
// host, for a tgtd started with TargetOptions.Addr. DHCP hands out
// addresses from .100 up, so these never clash with a lease.
func (l *Lab) AddServerAddr(ctx context.Context) (netip.Addr, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return netip.Addr{}, errClosed
	}
	n := len(l.addrs)
	l.mu.Unlock()
	if n >= 50 {
		return netip.Addr{}, errors.New("lab: add server address: 50 already added")
	}
	a := l.server.As4()
	a[3] = byte(2 + n)
	addr := netip.AddrFrom4(a)
	if _, err := l.run(ctx, "ip", "-n", l.ns, "addr", "add", netip.PrefixFrom(addr, l.prefix.Bits()).String(), "dev", l.bridge); err != nil {
		return netip.Addr{}, fmt.Errorf("lab: add server address %s: %w", addr, err)
	}
	l.mu.Lock()
	l.addrs = append(l.addrs, addr)
	l.mu.Unlock()
	return addr, nil
}

// hasAddr reports whether a is one of the bridge's IPv4 addresses.
func (l *Lab) hasAddr(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a == l.server {
		return true
	}
	for _, x := range l.addrs {
		if x == a {
			return true
		}
	}
	return false
}

// faultRules tracks the policy-routing rules that cut portal addresses
// off.
type faultRules struct {
	cut map[netip.Addr]bool
}

// Policy-rule preferences: the cut-off rules must come before the lookup
// of the local table, which the kernel puts at preference 0 (a packet to
// a local address would be delivered before any later rule saw it), so
// the first cut moves that lookup to localPref.
const (
	cutPref   = "100"
	localPref = "1000"
)

// SetLink cuts the target's portal address off (up=false) or restores it:
// policy rules make the namespace drop what arrives for the address from
// the bridge and everything sent from it, so guests see the portal go
// silent in both directions, as when the target's link fails, while tgtd
// keeps running with its sessions (TCP retransmits resume them when the
// link comes back within their timeouts). The address stays configured;
// other addresses of the lab (DHCP, another portal) are unaffected. The
// lab's own host-side dials (DialContext) to the address fail as well.
func (t *Target) SetLink(ctx context.Context, up bool) error {
	l := t.lab
	addr := t.opts.Addr.String()
	ctx, cancel := context.WithTimeout(ctx, faultTimeout)
	defer cancel()
	l.mu.Lock()
	if l.faults == nil {
		l.faults = &faultRules{cut: make(map[netip.Addr]bool)}
	}
	fr := l.faults
	l.mu.Unlock()
	// Serialised by the target's lock: one change of one portal at a time.
	t.mu.Lock()
	defer t.mu.Unlock()
	if fr.cut[t.opts.Addr] == !up {
		return nil
	}
	rule := func(op string, sel ...string) error {
		argv := append([]string{"ip", "-n", l.ns, "rule", op, "pref", cutPref}, sel...)
		_, err := l.run(ctx, append(argv, "blackhole")...)
		return err
	}
	if !up {
		if len(fr.cut) == 0 {
			if _, err := l.run(ctx, "ip", "-n", l.ns, "rule", "add", "pref", localPref, "lookup", "local"); err != nil {
				return fmt.Errorf("lab: target %s link down: %w", addr, err)
			}
			if _, err := l.run(ctx, "ip", "-n", l.ns, "rule", "del", "pref", "0", "lookup", "local"); err != nil {
				return fmt.Errorf("lab: target %s link down: %w", addr, err)
			}
		}
		fr.cut[t.opts.Addr] = true
		if err := rule("add", "to", addr, "iif", l.bridge); err != nil {
			return fmt.Errorf("lab: target %s link down: %w", addr, err)
		}
		if err := rule("add", "from", addr); err != nil {
			return fmt.Errorf("lab: target %s link down: %w", addr, err)
		}
	} else {
		var errs []error
		if err := rule("del", "to", addr, "iif", l.bridge); err != nil {
			errs = append(errs, err)
		}
		if err := rule("del", "from", addr); err != nil {
			errs = append(errs, err)
		}
		delete(fr.cut, t.opts.Addr)
		if len(errs) > 0 {
			return fmt.Errorf("lab: target %s link up: %w", addr, errors.Join(errs...))
		}
	}
	l.cmds.printf("# fault: target %s link %s", t.Portal(), upDown(up))
	return nil
}
