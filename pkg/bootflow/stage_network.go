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
	switch b.cfg.IP.Mode {
	case bootcfg.IPDHCP6:
		o.IPv6 = netconf.IPv6DHCP
	case bootcfg.IPAuto6:
		o.IPv6 = netconf.IPv6Auto
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
	if v := b.cfg.VLAN; v.ID != 0 {
		o.VLAN = &netconf.VLAN{ID: v.ID, Name: v.Name}
		if o.Static != nil && o.Static.Device == v.Parent {
			o.Static.Device = "" // the VLAN interface, on the selected parent
		}
		b.o.Console.Info("network: VLAN %d on %s (%s)", v.ID, cmp.Or(sel.Name, sel.BootIF.String(), "any NIC"), b.cfg.Origin(bootcfg.FieldVLAN))
		b.loadOnDemand(ctx, fmt.Sprintf("VLAN %d", v.ID), vlanModules...)
	}
	// Say what the stage waits for and how long before it starts: with no
	// cable or no DHCP server the first result line comes only when the
	// bound runs out.
	if o.Static != nil {
		b.o.Console.Info("network: static address %s; waiting up to %s for carrier", o.Static.Address, cmp.Or(o.CarrierTimeout, netconf.DefaultCarrierTimeout))
	} else if o.IPv6 != netconf.IPv4Only {
		how := "DHCPv6"
		if o.IPv6 == netconf.IPv6Auto {
			how = "router advertisements (SLAAC) and DHCPv6"
		}
		b.o.Console.Info("network: IPv6 by %s, waiting up to %s (carrier up to %s of it)", how,
			cmp.Or(o.DHCPTimeout, netconf.DefaultDHCPTimeout), cmp.Or(o.CarrierTimeout, netconf.DefaultCarrierTimeout))
	} else {
		b.o.Console.Info("network: DHCP, waiting up to %s for a lease (carrier up to %s of it)",
			cmp.Or(o.DHCPTimeout, netconf.DefaultDHCPTimeout), cmp.Or(o.CarrierTimeout, netconf.DefaultCarrierTimeout))
	}
	c, err := b.m.Network(ctx, o)
	if err != nil {
		if o.VLAN != nil && errors.Is(err, netconf.ErrNoLinks) && b.cfg.VLAN.Parent != "" {
			// vlan=<name>:<parent> named a parent that does not exist.
			return "", permanent(withCheck(fmt.Errorf("%s: parent interface %s of VLAN %s: %w", b.cfg.Origin(bootcfg.FieldVLAN), b.cfg.VLAN.Parent, b.cfg.VLAN.Name, err),
				"name an existing interface as the VLAN's parent (vlan=<name>:<parent>), or select the NIC with BOOTIF= and use lunboot.vlan=<id>"))
		}
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
	s.WriteString(")")
	if l.VLAN != 0 {
		fmt.Fprintf(&s, " VLAN %d on %s", l.VLAN, l.Parent)
	}
	fmt.Fprintf(&s, " %s", c.Address)
	if c.Gateway.IsValid() {
		fmt.Fprintf(&s, " via %s", c.Gateway)
	}
	switch c.Origin {
	case netconf.OriginDHCP:
		fmt.Fprintf(&s, ", DHCP from %s in %s", c.Server, c.Timings.DHCP.Round(10e6))
	case netconf.OriginDHCPv6:
		fmt.Fprintf(&s, ", DHCPv6 in %s", c.Timings.DHCP.Round(10e6))
	case netconf.OriginSLAAC:
		fmt.Fprintf(&s, ", SLAAC in %s", c.Timings.DHCP.Round(10e6))
	default:
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
	case errors.Is(err, netconf.ErrNoRootPath) && o.IPv6 != netconf.IPv4Only:
		return withCheck(err, "the DHCPv6 server gave no iSCSI root-path: send it as the boot file URL, option 59 (dnsmasq: dhcp-option=option6:bootfile-url,iscsi:[<server>]::::<target>; docs/dhcp), or put netroot=iscsi:[<server>]::::<target> on the kernel command line")
	case errors.Is(err, netconf.ErrNoRouterAdvert):
		return withCheck(err, "no router advertised an autonomous prefix on this link within %s: check the router's (radvd, dnsmasq enable-ra) configuration, or use ip=dhcp6", o.DHCPTimeout)
	case errors.Is(err, netconf.ErrNoIPv6):
		return permanent(withCheck(err, "this kernel has no IPv6: boot lunboot's image kernel, or use ip=dhcp"))
	case errors.Is(err, netconf.ErrNoRootPath):
		return withCheck(err, "the DHCP server gave an address but no iSCSI root-path: give lunboot's vendor class (option 60 \"lunboot\") option 17 (dnsmasq: dhcp-vendorclass=set:lunboot,lunboot and dhcp-option=tag:lunboot,17,\"iscsi:<server>::::<target>\"; docs/deploy.md, not to iPXE, which would try the SAN itself) or put netroot=iscsi:… on the kernel command line")
	case errors.Is(err, netconf.ErrNoCarrier) && !errors.Is(err, netconf.ErrNoOffer):
		return withCheck(err, "no link: check the cable and the switch port")
	case errors.Is(err, netconf.ErrNoOffer):
		return withCheck(err, "no DHCP server answered within %s: check that one serves this network (and this MAC), or give a static ip=", o.DHCPTimeout)
	}
	return err
}
