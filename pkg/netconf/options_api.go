package netconf

import (
	"cmp"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"time"
)

// RootPathPolicy says how much the caller needs a root-path from DHCP.
type RootPathPolicy uint8

// Root-path policies.
const (
	// RootPathRequired: the first lease with a usable root-path wins; a
	// lease without one does not end the search. If no link gets one, the
	// result is an *Error wrapping ErrNoRootPath that still carries the
	// address-only leases (for a rescue shell with networking).
	RootPathRequired RootPathPolicy = iota
	// RootPathOptional: the first lease wins, with or without a root-path
	// (the root-path comes from the kernel command line and DHCP only
	// provides the address). A root-path in the lease is still decoded.
	RootPathOptional
)

// String returns "required" or "optional".
func (p RootPathPolicy) String() string {
	if p == RootPathOptional {
		return "optional"
	}
	return "required"
}

// Defaults for Options fields left zero.
const (
	DefaultCarrierTimeout = 10 * time.Second
	DefaultDHCPTimeout    = 30 * time.Second
	// DefaultRetransmit is the first retransmission delay; it doubles per
	// retransmission up to DefaultMaxRetransmit, RFC 2131 §4.1's 64 s.
	// The RFC's first delay is 4 s (a SHOULD); iPXE starts at 1 s
	// (config/dhcp.h), and so do we: a DISCOVER or OFFER lost while a
	// link or switch port is still coming up would otherwise cost 4 s of
	// boot. The lab sees such losses on veth pairs right after link-up.
	DefaultRetransmit    = 1 * time.Second
	DefaultMaxRetransmit = 64 * time.Second
	DefaultVendorClass   = "lunboot"
	DefaultResolvConf    = "/etc/resolv.conf"
)

// Options configure stage 3. The zero value is a real boot: physical
// NICs, DHCP requiring a root-path, /sys and /etc/resolv.conf.
type Options struct {
	// Select narrows the candidate interfaces.
	Select Selector
	// SysfsRoot is where sysfs is mounted ("/sys" when empty); tests point
	// it at a fake tree.
	SysfsRoot string
	// CarrierTimeout bounds the wait for carrier on each link
	// (DefaultCarrierTimeout when zero). Links wait in parallel.
	CarrierTimeout time.Duration

	// Static, when set, replaces DHCP.
	Static *Static
	// IPv6, when not IPv4Only, configures the link over IPv6 instead of
	// DHCPv4: stateful DHCPv6 (ip=dhcp6) or SLAAC plus stateless DHCPv6
	// (ip=auto6). The root-path then comes from DHCPv6 option 59.
	IPv6 IPv6Mode

	// VLAN, when set, puts the boot interface on an 802.1Q VLAN: DHCP or
	// Static runs on a VLAN interface created on each candidate link.
	VLAN *VLAN

	// RootPath says whether DHCP must deliver a root-path.
	RootPath RootPathPolicy
	// AcceptRootPath decides whether a root-path from a lease is usable
	// (AcceptISCSI when nil); the boot passes pkg/rootpath's parser. A
	// lease whose root-path is rejected counts as one without.
	AcceptRootPath func(rootPath string) error
	// DHCPTimeout bounds the whole DHCP exchange on all links, carrier
	// wait included (DefaultDHCPTimeout when zero); the context may end
	// it earlier.
	DHCPTimeout time.Duration
	// Retransmit and MaxRetransmit set the RFC 2131 §4.1 retransmission
	// schedule (DefaultRetransmit, DefaultMaxRetransmit when zero): the
	// delay doubles per retransmission up to MaxRetransmit and is
	// randomised by ±Retransmit/4 (the RFC's ±1 s for its 4 s start).
	Retransmit, MaxRetransmit time.Duration
	// Hostname, when set, is sent as the client's host name, option 12
	// (RFC 2132 §3.14), in the DHCPDISCOVER and DHCPREQUEST, and replaces
	// the lease's host name in the Config: it is the name ip= gives
	// (ip=::::<hostname>:<dev>:dhcp), which the kernel's nfsroot.rst and
	// dracut both say is carried in the DHCP request.
	Hostname string
	// MTU and DNS are command-line values (ip=…:<mtu>, ip= DNS fields,
	// nameserver=) that apply with DHCP too, as in dracut, whose
	// dhclient-script lets ip='s MTU override the lease's and writes the
	// nameserver= servers with the lease's: a non-zero MTU replaces the
	// lease's option 26; DNS servers come before the lease's option 6
	// servers. Static ignores both (Static has its own).
	MTU int
	DNS []netip.Addr

	// VendorClass is sent as the vendor class identifier, option 60
	// (DefaultVendorClass when empty). Servers select option 43 contents
	// by it (dnsmasq: dhcp-option=vendor:lunboot,…).
	VendorClass string

	// ResolvConf is the file Apply writes the DNS servers to
	// (DefaultResolvConf when empty; "-" writes none).
	ResolvConf string

	// Logger receives progress and DHCP message summaries at debug level;
	// nil discards.
	Logger *slog.Logger
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) carrierTimeout() time.Duration {
	return cmpOr(o.CarrierTimeout, DefaultCarrierTimeout)
}

func (o *Options) dhcpTimeout() time.Duration { return cmpOr(o.DHCPTimeout, DefaultDHCPTimeout) }

func (o *Options) accept() func(string) error {
	if o.AcceptRootPath == nil {
		return AcceptISCSI
	}
	return o.AcceptRootPath
}

func (o *Options) vendorClass() string { return cmp.Or(o.VendorClass, DefaultVendorClass) }

func (o *Options) resolvConf() string { return cmp.Or(o.ResolvConf, DefaultResolvConf) }

// cmpOr is d, or def when d is not positive. Unlike cmp.Or it also
// replaces a negative duration, which as a timeout or retransmission delay
// would end the wait before it starts.
func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// retransmitDelay is the wait after transmission number n (0-based) of a
// message: RFC 2131 §4.1 starts at 4 s and doubles up to 64 s, each delay
// randomised by "a uniform random number chosen from the range -1 to +1"
// second; here the base and cap are configurable and the jitter scales as
// ±base/4 so that short test schedules keep the same shape.
func retransmitDelay(n int, base, maxDelay time.Duration, r *rand.Rand) time.Duration {
	d := base
	for i := 0; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	jitter := base / 4
	if jitter > 0 {
		var f float64
		if r != nil {
			f = r.Float64()
		} else {
			f = rand.Float64()
		}
		d += time.Duration((2*f - 1) * float64(jitter))
	}
	return d
}
