package bootcfg

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/sam"
)

// Source is a partial configuration: what one source (the command line,
// DHCP, an iBFT) said. Absent Settings leave the field to sources of lower
// precedence and finally to the defaults. Config lists what each field
// means and its default.
type Source struct {
	// Kind is the source's kind; the zero Kind marks a source that was not
	// available (no lease, no iBFT).
	Kind Kind

	// Target is the iSCSI target without credentials (those are in CHAP).
	Target    Setting[rootpath.RootPath]
	Initiator Setting[string]
	// IPXEInitiator is lunboot.initiator=ipxe: the initiator name is the
	// one iPXE would use (IPXEInitiatorName), from DHCP option 12 or else
	// SystemUUID. It counts as an initiator name given on the command line.
	IPXEInitiator Setting[bool]
	// SystemUUID is the SMBIOS system UUID (ReadSystemUUID), which the
	// caller fills in for IPXEInitiator; it is read nowhere else.
	SystemUUID Setting[string]
	CHAP       Setting[iscsi.CHAP]

	InterfaceName Setting[string]
	InterfaceMAC  Setting[net.HardwareAddr]

	IPMode   Setting[IPMode]
	Address  Setting[netip.Prefix]
	Gateway  Setting[netip.Addr]
	DNS      Setting[[]netip.Addr]
	Hostname Setting[string]
	MTU      Setting[int]
	// VLAN is the 802.1Q VLAN of the boot NIC (vlan=, lunboot.vlan=, the
	// iBFT NIC's VLAN field).
	VLAN Setting[VLAN]

	DHCPTimeout    Setting[time.Duration]
	CarrierTimeout Setting[time.Duration]
	Retries        Setting[int]
	Timeout        Setting[time.Duration]
	Rescue         Setting[bool]
	Entry          Setting[string]
	MenuTimeout    Setting[time.Duration]
	Handoff        Setting[handoff.Mode]
	Force          Setting[bool]
	Overlay        Setting[handoff.Overlay]
	OverlaySize    Setting[string]
	HeaderDigest   Setting[Digest]
	DataDigest     Setting[Digest]
	LogLevel       Setting[slog.Level]
	Append         Setting[string]
	IBFT           Setting[IBFTPolicy]
	// ISCSIParams are open-iscsi node parameters (rd.iscsi.param=), in
	// command-line order, for the OS's initiator.
	ISCSIParams Setting[[]string]
	// Portals are further portals of the target (several netroot=
	// naming the same target and LUN, lunboot.portal=), host:port.
	Portals Setting[[]string]
	// Multipath is lunboot.multipath=: hand every path to the OS.
	Multipath Setting[bool]

	// Warnings are things the source contained that lunboot accepted but
	// ignored or changed; the boot log shows them.
	Warnings []string
}

// Network is what the network stage (pkg/netconf) reports: the interface it
// configured and, when it ran DHCP, what the lease said. For a static
// configuration fill in only Interface and MAC: the default initiator name
// is derived from that MAC.
type Network struct {
	Interface string
	MAC       net.HardwareAddr

	// Lease is true when the fields below come from a DHCPv4 lease, or
	// from DHCPv6 and router advertisements when Mode says so.
	Lease bool
	// Mode is how the lease was obtained: IPDHCP (the zero value means
	// it too), IPDHCP6 or IPAuto6.
	Mode     IPMode
	Address  netip.Prefix // yiaddr with the option 1 subnet mask
	Router   netip.Addr   // option 3, first router
	DNS      []netip.Addr // option 6
	Hostname string       // option 12

	// RootPath is the root-path as received, and RootPathOption where it
	// came from: "option 17", or "option 43.201" as iSCSI HBA ROMs use it.
	RootPath       string
	RootPathOption string
	// InitiatorName is the initiator IQN, and InitiatorNameOption where it
	// came from: "option 203" or "option 43.203".
	InitiatorName       string
	InitiatorNameOption string
}

// Source converts what the network stage learned into a Source of Kind
// DHCP (or of no kind, for a static configuration). A root-path or
// initiator name that does not validate is kept as a Setting with Err: it
// only stops the boot if nothing of higher precedence replaces it. A
// root-path that is not iSCSI at all (an NFS path meant for other clients)
// is ignored with a warning.
func (n Network) Source() Source {
	var s Source
	detected := Origin{Detected, "network stage"}
	if n.Interface != "" {
		s.InterfaceName = Set(n.Interface, detected)
	}
	if len(n.MAC) > 0 {
		s.InterfaceMAC = Set(n.MAC, detected)
	}
	if !n.Lease {
		return s
	}
	s.Kind = DHCP
	mode := n.Mode
	if mode == 0 {
		mode = IPDHCP
	}
	s.IPMode = Set(mode, Origin{DHCP, "lease"})
	if n.Address.IsValid() {
		s.Address = Set(n.Address, Origin{DHCP, "lease address, option 1"})
	}
	if n.Router.IsValid() {
		s.Gateway = Set(n.Router, Origin{DHCP, "option 3"})
	}
	if len(n.DNS) > 0 {
		s.DNS = Set(n.DNS, Origin{DHCP, "option 6"})
	}
	if n.Hostname != "" {
		s.Hostname = Set(n.Hostname, Origin{DHCP, "option 12"})
	}
	if n.RootPath != "" {
		o := Origin{DHCP, cmp.Or(n.RootPathOption, "option 17")}
		raw := strings.TrimRight(n.RootPath, "\x00 \t\r\n")
		if scheme, _, _ := strings.Cut(raw, ":"); !strings.EqualFold(scheme, "iscsi") {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: root-path %q is not iSCSI; ignored", o, clip(raw)))
		} else {
			r, err := rootpath.Parse(raw)
			s.Target = Setting[rootpath.RootPath]{Value: r, Origin: o, Err: err}
		}
	}
	if n.InitiatorName != "" {
		o := Origin{DHCP, cmp.Or(n.InitiatorNameOption, "option 203")}
		s.Initiator = initiatorSetting(n.InitiatorName, o, &s.Warnings)
	}
	return s
}

// Firmware is what a firmware iBFT (pkg/ibft) says about the boot NIC and
// target. lunboot uses the first target flagged for boot and the NIC it is
// associated with.
type Firmware struct {
	Initiator string

	MAC net.HardwareAddr
	// DHCP is true when the firmware configured the NIC by DHCP (the NIC's
	// origin field is 3, or it records a DHCP server); lunboot then runs
	// DHCP too rather than reuse the firmware's lease: DHCPv6 when the
	// NIC's address is IPv6. RouterAdvert is origin 4: an IPv6 address
	// from router advertisements, which lunboot autoconfigures again.
	DHCP         bool
	RouterAdvert bool
	Address      netip.Prefix
	Gateway      netip.Addr
	DNS          []netip.Addr
	Hostname     string
	// VLAN is the NIC's 802.1Q VLAN ID (iBFT 1.03 §3.4.6, "VLAN"); 0 for
	// untagged.
	VLAN uint16

	TargetAddr netip.Addr
	TargetPort uint16
	LUN        sam.LUN
	TargetName string
	CHAP       iscsi.CHAP
}

// Source converts the iBFT into a Source of Kind IBFT. Invalid values are
// kept as Settings with Err, as in Network.Source.
func (f Firmware) Source() Source {
	// The iBFT stores IPv4 addresses IPv4-mapped (::ffff:a.b.c.d); the
	// decoder may or may not have unmapped them.
	f.TargetAddr, f.Gateway = f.TargetAddr.Unmap(), f.Gateway.Unmap()
	if a := f.Address.Addr(); a.Is4In6() {
		bits := f.Address.Bits()
		if bits > 32 {
			bits -= 96
		}
		f.Address = netip.PrefixFrom(a.Unmap(), bits)
	}
	dns := make([]netip.Addr, 0, len(f.DNS))
	for _, d := range f.DNS {
		dns = append(dns, d.Unmap())
	}
	f.DNS = dns
	s := Source{Kind: IBFT}
	if f.Initiator != "" {
		s.Initiator = initiatorSetting(f.Initiator, Origin{IBFT, "initiator"}, &s.Warnings)
	}
	nic := Origin{IBFT, "NIC"}
	if len(f.MAC) > 0 {
		s.InterfaceMAC = Set(f.MAC, nic)
	}
	v6 := f.Address.IsValid() && f.Address.Addr().Is6() && !f.Address.Addr().Is4In6()
	switch {
	case f.RouterAdvert && v6:
		s.IPMode = Set(IPAuto6, nic)
	case f.DHCP && v6:
		s.IPMode = Set(IPDHCP6, nic)
	case f.DHCP:
		s.IPMode = Set(IPDHCP, nic)
	case f.Address.IsValid():
		s.IPMode = Set(IPStatic, nic)
		s.Address = Set(f.Address, nic)
		if f.Gateway.IsValid() {
			s.Gateway = Set(f.Gateway, nic)
		}
	}
	if len(f.DNS) > 0 {
		s.DNS = Set(f.DNS, nic)
	}
	if f.Hostname != "" {
		s.Hostname = Set(f.Hostname, nic)
	}
	if f.VLAN != 0 {
		s.VLAN = Setting[VLAN]{Value: VLAN{ID: f.VLAN}, Origin: nic}
		if err := CheckVLANID(int(f.VLAN)); err != nil {
			s.VLAN.Err = fmt.Errorf("iBFT NIC: %w", err)
		}
	}
	if f.TargetName != "" || f.TargetAddr.IsValid() {
		o := Origin{IBFT, "target"}
		var r rootpath.RootPath
		var err error
		if !f.TargetAddr.IsValid() {
			err = fmt.Errorf("iBFT target %q has no IP address", f.TargetName)
		} else {
			r, err = rootpath.New(f.TargetAddr.String(), f.TargetPort, f.LUN, f.TargetName)
		}
		s.Target = Setting[rootpath.RootPath]{Value: r, Origin: o, Err: err}
	}
	if !f.CHAP.IsZero() {
		s.CHAP = Setting[iscsi.CHAP]{Value: f.CHAP, Origin: Origin{IBFT, "target CHAP"}, Err: validateCHAP(f.CHAP)}
	}
	return s
}

// initiatorSetting validates an initiator name from DHCP or an iBFT.
func initiatorSetting(name string, o Origin, warnings *[]string) Setting[string] {
	name = strings.TrimRight(name, "\x00 \t\r\n")
	n, err := rootpath.NormalizeName(name)
	if err != nil {
		return Setting[string]{Origin: o, Err: fmt.Errorf("initiator name %q: %w", clip(name), err)}
	}
	if n != name {
		*warnings = append(*warnings, fmt.Sprintf("%s: initiator name %q folded to lower case %q (RFC 3722)", o, name, n))
	}
	return Set(n, o)
}

// clip bounds echoed input.
func clip(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
