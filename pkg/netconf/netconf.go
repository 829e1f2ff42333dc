package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Configure is stage 3 of the boot. It
//   - lists the candidate links (FindLinks with o.Select; o.Static.Device
//     narrows the selection when set),
//   - sets them up and waits for carrier, in parallel, each for at most
//     o.CarrierTimeout,
//   - runs DHCP on them (Acquire), or picks the link for o.Static
//     (StaticConfig),
//   - applies the result (Apply): address, routes, MTU, resolv.conf.
//
// The returned Config says what was configured and what the boot needs
// (root-path, initiator IQN, driver module, PCI address), with the step
// durations in Timings and every link's fate in Links. Call Down before
// kexec. On failure no address or route is configured and the error names
// each link (see *Error); links stay up only under the address-only leases
// of an ErrNoRootPath failure (Error.Leases), so that a rescue shell can
// Apply one — call Down on them otherwise.
func Configure(ctx context.Context, o Options) (*Config, error) {
	log := o.logger()
	start := time.Now()
	sel := o.Select
	if o.Static != nil && o.Static.Device != "" && sel.Name == "" {
		sel.Name = o.Static.Device
	}
	if o.VLAN != nil && o.Static != nil && o.Static.Device != "" && o.Static.Device == o.VLAN.Name {
		sel.Name = o.Select.Name // the static device is the VLAN, not a candidate
	}
	links, err := FindLinks(o.SysfsRoot, sel)
	if err != nil {
		if o.VLAN != nil {
			return nil, fmt.Errorf("netconf: VLAN %d parent: %w", o.VLAN.ID, err)
		}
		return nil, fmt.Errorf("netconf: %w", err)
	}
	find := time.Since(start)
	log.Debug("netconf: candidate links", "links", links, "took", find)

	var vlans []*vlanState
	if o.VLAN != nil {
		if links, vlans, err = addVLANs(links, *o.VLAN, log); err != nil {
			return nil, fmt.Errorf("netconf: %w", err)
		}
		if o.Static != nil {
			st := *o.Static
			st.Device = "" // the VLAN interfaces are the candidates now
			o.Static = &st
		}
	}
	// dropVLANs removes the VLAN interfaces that did not win (all of them
	// on failure).
	// dropVLANs removes the VLAN interfaces of the links no kept Config
	// uses; each kept Config removes its own on Down.
	dropVLANs := func(keep ...*Config) {
	next:
		for i, l := range links[:len(vlans)] {
			for _, k := range keep {
				if k.Link.Index == l.Index {
					k.vlan = vlans[i]
					continue next
				}
			}
			if err := delVLAN(l, vlans[i]); err != nil {
				log.Warn("netconf: removing VLAN interface", "link", l.Name, "err", err)
			}
		}
	}

	var c *Config
	if o.Static != nil {
		c, err = StaticConfig(ctx, links, o)
	} else {
		c, err = Acquire(ctx, links, o)
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) && len(e.Leases) > 0 {
			// The rescue shell may Apply one of these leases: their
			// links stay, and Down removes them.
			dropVLANs(e.Leases...)
			return nil, err
		}
		dropVLANs()
		return nil, err
	}
	dropVLANs(c)
	c.Timings.Find = find
	if c.Origin != OriginStatic {
		c.useCommandLine(o, log)
	}
	if err := c.Apply(o); err != nil {
		if derr := c.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", derr))
		}
		return nil, err
	}
	for _, w := range c.Warnings {
		log.Warn("netconf: "+w, "link", c.Link.Name)
	}
	log.Info("netconf: configured", "config", c)
	return c, nil
}

// useCommandLine lets the command line's host name, MTU and DNS servers
// (Options.Hostname, MTU, DNS) win over the lease's, as dracut's
// dhclient-script does with the ip= fields it keeps in
// /tmp/net.<if>.override and with nameserver=.
func (c *Config) useCommandLine(o Options, log *slog.Logger) {
	if o.Hostname != "" {
		if c.LeaseHostname != "" && c.LeaseHostname != o.Hostname {
			log.Debug("netconf: host name from the command line replaces the lease's", "hostname", o.Hostname, "lease", c.LeaseHostname)
		}
		c.Hostname = o.Hostname
	}
	if o.MTU != 0 {
		if c.MTU != 0 && c.MTU != o.MTU {
			log.Debug("netconf: MTU from the command line replaces the lease's", "mtu", o.MTU, "lease", c.MTU)
		}
		c.MTU = o.MTU
	}
	if len(o.DNS) > 0 {
		dns := slices.Clone(o.DNS)
		for _, d := range c.DNS {
			if !slices.Contains(dns, d) {
				dns = append(dns, d)
			}
		}
		c.DNS = dns
	}
}

// StaticConfig prepares o.Static for one of links without DHCP. The link is
// the one named by o.Static.Device; else the only candidate; else the only
// candidate with carrier (all are set up and waited for in parallel). The
// chosen link must get carrier within o.CarrierTimeout: with a static
// address there is no server reply to wait for instead, and an iSCSI login
// over a dead link fails later with a less helpful message.
func StaticConfig(ctx context.Context, links []Link, o Options) (*Config, error) {
	s := o.Static
	if s == nil {
		return nil, errors.New("static: no static configuration given")
	}
	if !s.Address.IsValid() || !s.Address.Addr().Is4() || s.Address.Bits() == 0 {
		return nil, fmt.Errorf("static: address %v is not an IPv4 address with a prefix length (ip=<client>:…:<netmask>:…)", s.Address)
	}
	if s.Gateway.IsValid() && !s.Gateway.Is4() {
		return nil, fmt.Errorf("static: gateway %v is not IPv4", s.Gateway)
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("static: %w", ErrNoLinks)
	}
	cands := links
	if s.Device != "" {
		i := slices.IndexFunc(links, func(l Link) bool { return l.Name == s.Device })
		if i < 0 {
			return nil, fmt.Errorf("static: %w named %s", ErrNoLinks, s.Device)
		}
		cands = links[i : i+1]
	}

	// Bring the candidates up and wait for carrier in parallel.
	type res struct {
		i       int
		report  LinkReport
		wasDown bool
	}
	ch := make(chan res)
	for i, l := range cands {
		go func() {
			r := res{i: i, report: LinkReport{Link: l}}
			r.wasDown, r.report.Err = setUp(l)
			if r.report.Err == nil {
				r.report.Carrier, r.report.Err = waitCarrier(ctx, l, o.carrierTimeout())
			}
			ch <- r
		}()
	}
	reports := make([]LinkReport, len(cands))
	wasDown := make([]bool, len(cands))
	var up []int
	for range cands {
		r := <-ch
		reports[r.i], wasDown[r.i] = r.report, r.wasDown
		if r.report.Err == nil {
			up = append(up, r.i)
		}
	}
	slices.Sort(up)
	lowerExcept := func(keep int) {
		for i, l := range cands {
			if i != keep && wasDown[i] {
				if err := setDown(l); err != nil {
					o.logger().Warn("static: could not set link down", "link", l.Name, "err", err)
				}
			}
		}
	}
	switch {
	case len(up) == 0:
		lowerExcept(-1)
		return nil, &Error{Op: "static", Links: reports}
	case len(up) > 1:
		lowerExcept(-1)
		names := make([]string, len(up))
		for j, i := range up {
			names[j] = cands[i].Name
		}
		return nil, fmt.Errorf("static: ip= names no device and %s all have carrier: add the device to ip= or pass BOOTIF", strings.Join(names, ", "))
	}
	i := up[0]
	lowerExcept(i)
	return &Config{
		Link:     cands[i],
		Origin:   OriginStatic,
		Address:  s.Address,
		Gateway:  s.Gateway,
		DNS:      slices.Clone(s.DNS),
		Hostname: s.Hostname,
		Domain:   s.Domain,
		MTU:      s.MTU,
		Links:    reports,
		Timings:  Timings{Carrier: reports[i].Carrier},
		raised:   wasDown[i],
	}, nil
}
