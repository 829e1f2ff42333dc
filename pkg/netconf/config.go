package netconf

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Origin says where a configuration came from; the iBFT NIC section
// records it (DHCP vs. manual).
type Origin uint8

// Origins of a Config.
const (
	OriginDHCP   Origin = iota + 1 // a DHCPv4 lease
	OriginStatic                   // an ip= static configuration
	OriginDHCPv6                   // a DHCPv6 lease (IA_NA, RFC 8415)
	OriginSLAAC                    // an address autoconfigured from router advertisements (RFC 4862)
)

// String returns "dhcp", "static", "dhcp6" or "slaac".
func (o Origin) String() string {
	switch o {
	case OriginDHCP:
		return "dhcp"
	case OriginStatic:
		return "static"
	case OriginDHCPv6:
		return "dhcp6"
	case OriginSLAAC:
		return "slaac"
	}
	return "Origin(" + strconv.Itoa(int(o)) + ")"
}

// Link identifies a network interface and the hardware behind it, as the
// hand-off needs it: the driver module must be in the OS initrd, and the
// iBFT NIC section carries the MAC and the PCI address.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	// Driver is the kernel driver bound to the device ("virtio_net",
	// "e1000e"); empty for virtual interfaces.
	Driver string
	// Module is the module that provides Driver, from
	// /sys/class/net/<if>/device/driver/module; empty when the driver is
	// built into the kernel or the interface is virtual.
	Module string
	// PCI is the PCI address ("0000:00:03.0") of the device or, for a
	// device on a bus below PCI (virtio), of its nearest PCI ancestor;
	// empty when the device is not on PCI.
	PCI string
	// VLAN is the 802.1Q VLAN id when the link is a VLAN interface lunboot
	// created (Options.VLAN) on the link named Parent; Driver, Module and
	// PCI are then the parent's, and MAC is the parent's too.
	VLAN   uint16
	Parent string
}

// PCIBDF returns the PCI address in the 16-bit encoding of the iBFT NIC
// structure's "PCI Bus/Dev/Func" field (bus in bits 15–8, device in 7–3,
// function in 2–0), and false when the link is not on PCI or not on
// segment 0: the field has no segment, and the kernel's iscsi_ibft maps it
// to a device in domain 0 only (drivers/firmware/iscsi_ibft.c).
func (l Link) PCIBDF() (uint16, bool) {
	seg, rest, ok := strings.Cut(l.PCI, ":")
	if !ok || len(seg) != 4 || len(rest) != 7 || rest[2] != ':' || rest[5] != '.' {
		return 0, false
	}
	s, err1 := strconv.ParseUint(seg, 16, 16)
	bus, err2 := strconv.ParseUint(rest[0:2], 16, 8)
	dev, err3 := strconv.ParseUint(rest[3:5], 16, 8)
	fn, err4 := strconv.ParseUint(rest[6:7], 8, 8)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || s != 0 || dev > 31 || fn > 7 {
		return 0, false
	}
	return uint16(bus)<<8 | uint16(dev)<<3 | uint16(fn), true
}

// LogValue logs the link's identity.
func (l Link) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", l.Name), slog.Int("index", l.Index), slog.String("mac", l.MAC.String())}
	if l.Driver != "" {
		attrs = append(attrs, slog.String("driver", l.Driver))
	}
	if l.Module != "" {
		attrs = append(attrs, slog.String("module", l.Module))
	}
	if l.PCI != "" {
		attrs = append(attrs, slog.String("pci", l.PCI))
	}
	if l.VLAN != 0 {
		attrs = append(attrs, slog.Int("vlan", int(l.VLAN)), slog.String("parent", l.Parent))
	}
	return slog.GroupValue(attrs...)
}

// Timings are the durations of the steps of stage 3 for the boot's stage
// lines. Carrier and DHCP are those of the link that won.
type Timings struct {
	Find    time.Duration // listing and filtering candidate links
	Carrier time.Duration // link set up until carrier
	DHCP    time.Duration // first DISCOVER until DHCPACK (zero for static)
	Apply   time.Duration // address, routes, MTU, resolv.conf
}

// Total is the sum of the steps.
func (t Timings) Total() time.Duration { return t.Find + t.Carrier + t.DHCP + t.Apply }

// LogValue logs each step's duration.
func (t Timings) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Duration("find", t.Find),
		slog.Duration("carrier", t.Carrier),
		slog.Duration("dhcp", t.DHCP),
		slog.Duration("apply", t.Apply),
	)
}

// LinkReport is what happened on one candidate link, for the boot log: the
// winner has a nil Err; the others say why they did not win (no carrier,
// no offer, a lease without root-path, or stopped because another link won).
type LinkReport struct {
	Link    Link
	Carrier time.Duration // until carrier, or how long it waited in vain
	DHCP    time.Duration // time spent in DHCP
	Err     error
}

// String formats the report as "eth1: no carrier after 5s" or
// "eth0: ok (carrier 1.2s, dhcp 300ms)".
func (r LinkReport) String() string {
	if r.Err != nil {
		return r.Err.Error()
	}
	return r.Link.Name + ": ok (carrier " + r.Carrier.Round(time.Millisecond).String() +
		", dhcp " + r.DHCP.Round(time.Millisecond).String() + ")"
}

// Config is an IPv4 or IPv6 configuration for one link and what the boot needs from
// it. A Config from [Acquire] or [StaticConfig] describes; [Config.Apply]
// puts it on the link and [Config.Down] takes it off again.
type Config struct {
	Link   Link
	Origin Origin

	// Address is the interface address with its prefix length.
	Address netip.Prefix
	// Gateway is the default router: the 0.0.0.0/0 entry of option 121 if
	// the lease has one, else the first router of option 3 (RFC 3442 §1:
	// with option 121 present, option 3 is ignored). Invalid when there is
	// no default route.
	Gateway netip.Addr
	// Routes are the RFC 3442 classless static routes, other than the
	// default route, which is in Gateway.
	Routes []Route
	DNS    []netip.Addr
	// Hostname is the machine's host name: Options.Hostname when given,
	// else the lease's option 12. LeaseHostname is option 12 as received
	// (empty for a static configuration).
	Hostname      string
	LeaseHostname string
	Domain        string
	// MTU is the interface MTU to set (Options.MTU, else option 26); zero
	// leaves it alone.
	MTU int

	// Server is the DHCP server identifier (option 54); LeaseTime the lease
	// duration (option 51, [Infinite] for an infinite lease). Both are zero
	// for a static configuration.
	Server    netip.Addr
	LeaseTime time.Duration
	// ServerID is the DHCPv6 server's DUID (RFC 8415 §11), for the log;
	// DHCPv6 leaves Server invalid.
	ServerID string

	// RootPath is the root-path the lease carried and that passed the
	// caller's check, unparsed; InitiatorIQN the initiator name.
	RootPath     Sourced
	InitiatorIQN Sourced

	// Options are the raw options of the DHCPACK, for logging.
	Options RawOptions
	// Warnings name options that were present but unusable (malformed, or
	// a root-path the caller rejected), so the boot log can show them.
	Warnings []string

	// Links reports every candidate link, the chosen one included.
	Links []LinkReport
	// Timings are the step durations for the boot's stage line.
	Timings Timings

	// raised records that this package set the link up, so that Down sets
	// it down again; applied is what Apply changed, for Down to undo.
	raised  bool
	applied *applied
	// vlan is set when Link is a VLAN interface Configure created: Down
	// removes it.
	vlan *vlanState
}

// LogValue logs the configuration (without the raw options: log
// c.Options separately at debug level).
func (c *Config) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<nil>")
	}
	attrs := []slog.Attr{
		slog.Any("link", c.Link),
		slog.String("origin", c.Origin.String()),
		slog.String("address", c.Address.String()),
	}
	if c.Gateway.IsValid() {
		attrs = append(attrs, slog.String("gateway", c.Gateway.String()))
	}
	if len(c.Routes) > 0 {
		rs := make([]string, len(c.Routes))
		for i, r := range c.Routes {
			rs[i] = r.String()
		}
		attrs = append(attrs, slog.String("routes", strings.Join(rs, ", ")))
	}
	if len(c.DNS) > 0 {
		ds := make([]string, len(c.DNS))
		for i, d := range c.DNS {
			ds[i] = d.String()
		}
		attrs = append(attrs, slog.String("dns", strings.Join(ds, " ")))
	}
	if c.Hostname != "" {
		attrs = append(attrs, slog.String("hostname", c.Hostname))
	}
	if c.Domain != "" {
		attrs = append(attrs, slog.String("domain", c.Domain))
	}
	if c.MTU != 0 {
		attrs = append(attrs, slog.Int("mtu", c.MTU))
	}
	if c.Server.IsValid() {
		attrs = append(attrs, slog.String("server", c.Server.String()))
	}
	if c.ServerID != "" {
		attrs = append(attrs, slog.String("server_duid", c.ServerID))
	}
	if c.LeaseTime != 0 {
		lt := c.LeaseTime.String()
		if c.LeaseTime == Infinite {
			lt = "infinite"
		}
		attrs = append(attrs, slog.String("lease", lt))
	}
	if c.RootPath.Source != SourceNone {
		attrs = append(attrs, slog.String("root_path", c.RootPath.Value), slog.String("root_path_source", c.RootPath.Source.String()))
	}
	if c.InitiatorIQN.Source != SourceNone {
		attrs = append(attrs, slog.String("iqn", c.InitiatorIQN.Value), slog.String("iqn_source", c.InitiatorIQN.Source.String()))
	}
	if len(c.Warnings) > 0 {
		attrs = append(attrs, slog.String("warnings", strings.Join(c.Warnings, "; ")))
	}
	attrs = append(attrs, slog.Any("timings", c.Timings))
	return slog.GroupValue(attrs...)
}

// Static is a static IPv4 configuration as parsed from a dracut/klibc
// ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:off[:dns0:dns1]
// argument (the caller parses; this package applies).
type Static struct {
	// Device names the interface; empty means the BOOTIF link, or the only
	// candidate link that has carrier.
	Device   string
	Address  netip.Prefix
	Gateway  netip.Addr // invalid: no default route
	DNS      []netip.Addr
	Hostname string
	Domain   string
	MTU      int // zero leaves the MTU alone
}
