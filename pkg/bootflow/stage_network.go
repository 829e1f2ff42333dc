package bootflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// network is stage 3: links up, then DHCP on every candidate NIC (or the
// static ip= address), and the winner configured.
func (b *boot) network(ctx context.Context) (string, error) {
	if b.net != nil { // a retry after a later failure in this stage
		b.stopLinkWatch()
		b.net.Down()
		b.net = nil
	}
	sel := b.o.Network
	if b.cfg.Interface.MAC != nil {
		sel.BootIF = b.cfg.Interface.MAC
	}
	if b.cfg.Interface.Name != "" {
		sel.Name = b.cfg.Interface.Name
	}
	o := netconf.Options{
		Select:         sel,
		SysfsRoot:      b.o.Sysfs,
		CarrierTimeout: b.cfg.CarrierTimeout,
		DHCPTimeout:    b.cfg.DHCPTimeout,
		RootPath:       netconf.RootPathRequired,
		Logger:         b.log,
	}
	// A target from the command line or the firmware makes DHCP's
	// root-path optional: DHCP then only has to give an address.
	if b.cmdline.Target.IsSet() || b.firmware.Target.IsSet() {
		o.RootPath = netconf.RootPathOptional
	}
	// With DHCP too, the command line's host name (sent as option 12),
	// MTU and DNS servers apply, as in dracut; values from an iBFT do
	// not override a lease.
	if b.cfg.Origin(bootcfg.FieldHostname).Kind == bootcfg.Cmdline {
		o.Hostname = b.cfg.IP.Hostname
	}
	if b.cfg.Origin(bootcfg.FieldMTU).Kind == bootcfg.Cmdline {
		o.MTU = b.cfg.IP.MTU
	}
	if b.cfg.Origin(bootcfg.FieldDNS).Kind == bootcfg.Cmdline {
		o.DNS = b.cfg.IP.DNS
	}
	if b.cfg.IP.Mode == bootcfg.IPStatic {
		o.Static = &netconf.Static{
			Device:   b.cfg.Interface.Name,
			Address:  b.cfg.IP.Address,
			Gateway:  b.cfg.IP.Gateway,
			DNS:      b.cfg.IP.DNS,
			Hostname: b.cfg.IP.Hostname,
			MTU:      b.cfg.IP.MTU,
		}
	}
	// Say what the stage waits for and how long before it starts: with no
	// cable or no DHCP server the first result line comes only when the
	// bound runs out.
	if o.Static != nil {
		b.o.Console.Info("network: static address %s; waiting up to %s for carrier", o.Static.Address, cmp.Or(o.CarrierTimeout, netconf.DefaultCarrierTimeout))
	} else {
		b.o.Console.Info("network: DHCP, waiting up to %s for a lease (carrier up to %s of it)",
			cmp.Or(o.DHCPTimeout, netconf.DefaultDHCPTimeout), cmp.Or(o.CarrierTimeout, netconf.DefaultCarrierTimeout))
	}
	c, err := b.m.Network(ctx, o)
	if err != nil {
		return "", networkAdvice(err, o)
	}
	b.net = c
	b.watchLink(c.Link)
	for _, w := range c.Warnings {
		b.o.Console.Info("warning: %s", w)
	}
	l := c.Link
	var s strings.Builder
	fmt.Fprintf(&s, "%s (%s", l.Name, l.MAC)
	if l.Driver != "" {
		fmt.Fprintf(&s, ", %s", l.Driver)
	}
	fmt.Fprintf(&s, ") %s", c.Address)
	if c.Gateway.IsValid() {
		fmt.Fprintf(&s, " via %s", c.Gateway)
	}
	if c.Origin == netconf.OriginDHCP {
		fmt.Fprintf(&s, ", DHCP from %s in %s", c.Server, c.Timings.DHCP.Round(10e6))
	} else {
		s.WriteString(", static")
	}
	if c.RootPath.Value != "" {
		fmt.Fprintf(&s, "; root-path from %s", c.RootPath.Source.Option())
	}
	return s.String(), nil
}

// networkAdvice turns a stage 3 failure into what the operator should check.
func networkAdvice(err error, o netconf.Options) error {
	switch {
	case errors.Is(err, netconf.ErrNoLinks):
		return permanent(withCheck(err, "no usable network interface: is the NIC driver in the image (lunboot modules) and does BOOTIF=/lunboot.iface= name an existing NIC?"))
	case errors.Is(err, netconf.ErrNoRootPath):
		return withCheck(err, "the DHCP server gave an address but no iSCSI root-path: give lunboot's vendor class (option 60 \"lunboot\") option 17 (dnsmasq: dhcp-vendorclass=set:lunboot,lunboot and dhcp-option=tag:lunboot,17,\"iscsi:<server>::::<target>\"; docs/deploy.md, not to iPXE, which would try the SAN itself) or put netroot=iscsi:… on the kernel command line")
	case errors.Is(err, netconf.ErrNoCarrier) && !errors.Is(err, netconf.ErrNoOffer):
		return withCheck(err, "no link: check the cable and the switch port")
	case errors.Is(err, netconf.ErrNoOffer):
		return withCheck(err, "no DHCP server answered within %s: check that one serves this network (and this MAC), or give a static ip=", o.DHCPTimeout)
	}
	return err
}
