package bootcfg

import (
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/iscsi"
)

// Kind says which kind of source a value came from.
type Kind uint8

// Source kinds. The zero Kind means "not set".
const (
	Cmdline  Kind = iota + 1 // the kernel command line
	DHCP                     // the DHCP lease
	IBFT                     // a firmware iSCSI Boot Firmware Table
	Default                  // lunboot's default
	Detected                 // what lunboot found itself (the interface the network stage used)
)

// String names the kind as the boot log shows it.
func (k Kind) String() string {
	switch k {
	case Cmdline:
		return "kernel cmdline"
	case DHCP:
		return "DHCP"
	case IBFT:
		return "iBFT"
	case Default:
		return "default"
	case Detected:
		return "detected"
	}
	return "unset"
}

// Origin is where one value came from.
type Origin struct {
	Kind Kind
	// Detail narrows it down: the command-line key ("rd.iscsi.initiator"),
	// the DHCP option ("option 203"), the iBFT structure ("target"), or why
	// a default was chosen.
	Detail string
}

// String reads like "kernel cmdline rd.iscsi.initiator", "DHCP option 203",
// "iBFT target" or "default".
func (o Origin) String() string {
	switch {
	case o.Kind == 0:
		return "unset"
	case o.Detail == "":
		return o.Kind.String()
	case o.Kind == Default || o.Kind == Detected:
		return o.Kind.String() + " (" + o.Detail + ")"
	}
	return o.Kind.String() + " " + o.Detail
}

// Setting is one value of a Source with its origin. A Setting whose Origin
// is the zero Origin is absent. Err is set when the source had a value but
// it was invalid (a DHCP root-path that does not parse); the error only
// matters if no source of higher precedence has a value.
type Setting[T any] struct {
	Value  T
	Origin Origin
	Err    error
}

// IsSet reports whether the source had this value (valid or not).
func (s Setting[T]) IsSet() bool { return s.Origin.Kind != 0 }

// Set returns a present Setting.
func Set[T any](v T, o Origin) Setting[T] { return Setting[T]{Value: v, Origin: o} }

// IPMode is how the boot interface gets its address.
type IPMode uint8

// IP modes.
const (
	IPDHCP   IPMode = iota + 1 // DHCPv4
	IPStatic                   // a static address from ip= or the iBFT
	IPDHCP6                    // stateful DHCPv6 (ip=dhcp6); the root-path from option 59
	IPAuto6                    // SLAAC from router advertisements plus stateless DHCPv6 (ip=auto6)
)

// String returns the mode as ip= writes it: "dhcp", "static", "dhcp6" or
// "auto6".
func (m IPMode) String() string {
	switch m {
	case IPDHCP:
		return "dhcp"
	case IPStatic:
		return "static"
	case IPDHCP6:
		return "dhcp6"
	case IPAuto6:
		return "auto6"
	}
	return "unset"
}

// Dynamic reports whether the address comes from the network (DHCPv4,
// DHCPv6 or router advertisements) rather than from configuration.
func (m IPMode) Dynamic() bool { return m == IPDHCP || m == IPDHCP6 || m == IPAuto6 }

// IPv6 reports whether the mode configures the NIC over IPv6.
func (m IPMode) IPv6() bool { return m == IPDHCP6 || m == IPAuto6 }

// Digest is the policy for one iSCSI digest (HeaderDigest or DataDigest,
// RFC 7143 §13.1).
type Digest uint8

// Digest policies (lunboot.header_digest=, lunboot.data_digest=).
const (
	DigestNone   Digest = iota + 1 // offer None only
	DigestCRC32C                   // offer CRC32C only: fail if the target refuses
	DigestPrefer                   // offer CRC32C,None: use it if the target agrees
)

// String returns the lunboot.*_digest= value: "none", "crc32c" or "prefer".
func (d Digest) String() string {
	switch d {
	case DigestNone:
		return "none"
	case DigestCRC32C:
		return "crc32c"
	case DigestPrefer:
		return "prefer"
	}
	return "unset"
}

// Policy returns the login's policy for the key: crc32c offers CRC32C
// alone and fails the login during negotiation if the target refuses it
// (RFC 7143 §13.1), prefer offers CRC32C,None.
func (d Digest) Policy() iscsi.Digest {
	switch d {
	case DigestCRC32C:
		return iscsi.DigestRequire
	case DigestPrefer:
		return iscsi.DigestPrefer
	}
	return iscsi.DigestNone
}

// IBFTPolicy says how a firmware iBFT ranks against DHCP.
type IBFTPolicy uint8

// iBFT policies (lunboot.ibft=).
const (
	IBFTFallback IBFTPolicy = iota + 1 // after DHCP (the default)
	IBFTPrefer                         // before DHCP
	IBFTIgnore                         // not used at all
)

// String returns the lunboot.ibft= value: "fallback", "prefer" or "ignore".
func (p IBFTPolicy) String() string {
	switch p {
	case IBFTFallback:
		return "fallback"
	case IBFTPrefer:
		return "prefer"
	case IBFTIgnore:
		return "ignore"
	}
	return "unset"
}

// RetryForever as Config.Retries means "retry until the overall timeout, or
// forever if there is none" (lunboot.retries=forever).
const RetryForever = -1

// Interface selects the network interface to boot from. Both fields empty
// means "any interface that gets a lease".
type Interface struct {
	Name string           // kernel interface name, e.g. "eth0"
	MAC  net.HardwareAddr // hardware address (BOOTIF=)
}

// String returns the name and/or MAC, or "any" when neither is set.
func (i Interface) String() string {
	switch {
	case i.Name != "" && len(i.MAC) > 0:
		return i.Name + " " + i.MAC.String()
	case i.Name != "":
		return i.Name
	case len(i.MAC) > 0:
		return i.MAC.String()
	}
	return "any"
}

// IP is the boot interface's IP configuration.
type IP struct {
	Mode IPMode
	// Address is the interface address with its prefix length: from ip=
	// or the iBFT in static mode, from the lease in DHCP mode.
	Address  netip.Prefix
	Gateway  netip.Addr
	DNS      []netip.Addr
	Hostname string
	// MTU is the link MTU to set; 0 leaves it alone.
	MTU int
}

// String describes the configuration on one line, for example
// "static 192.0.2.10/24 gateway 192.0.2.254 dns 192.0.2.53".
func (ip IP) String() string {
	var b strings.Builder
	b.WriteString(ip.Mode.String())
	if ip.Address.IsValid() {
		b.WriteString(" " + ip.Address.String())
	}
	if ip.Gateway.IsValid() {
		b.WriteString(" gateway " + ip.Gateway.String())
	}
	for i, d := range ip.DNS {
		if i == 0 {
			b.WriteString(" dns ")
		} else {
			b.WriteString(",")
		}
		b.WriteString(d.String())
	}
	if ip.Hostname != "" {
		b.WriteString(" hostname " + ip.Hostname)
	}
	if ip.MTU != 0 {
		b.WriteString(" mtu " + strconv.Itoa(ip.MTU))
	}
	return b.String()
}

// validateCHAP checks that credentials from the command line or an iBFT
// come in usable pairs, in the words of the command line. The credentials
// are iscsi.CHAP, the one type lunboot holds them in: Username/Secret
// authenticate the initiator to the target (one-way CHAP),
// TargetUsername/TargetSecret the target to the initiator (mutual CHAP;
// dracut calls them rd.iscsi.in.*). No formatting of one shows a secret.
func validateCHAP(c iscsi.CHAP) error {
	switch {
	case (c.Username == "") != (c.Secret == ""):
		return errors.New("CHAP needs both a user name and a password (rd.iscsi.username= and rd.iscsi.password=)")
	case (c.TargetUsername == "") != (c.TargetSecret == ""):
		return errors.New("mutual CHAP needs both the target's user name and password (rd.iscsi.in.username= and rd.iscsi.in.password=)")
	case c.Mutual() && !c.Enabled():
		return errors.New("mutual CHAP (rd.iscsi.in.*) also needs one-way CHAP (rd.iscsi.username=, rd.iscsi.password=)")
	}
	return nil
}

// DefaultInitiatorName returns the initiator IQN lunboot uses when no source
// names one: iqn.2026-11.org.lunboot:<the MAC in lower-case hex, no
// separators>, for example iqn.2026-11.org.lunboot:525400123456. It depends
// only on the boot NIC, so it is the same on every boot and an
// administrator can compute it from the MAC (on the chassis label, in the
// DHCP server's log) and put it in the target's ACL before the first boot.
// It returns "" for an empty MAC.
func DefaultInitiatorName(mac net.HardwareAddr) string {
	if len(mac) == 0 {
		return ""
	}
	return DefaultIQNPrefix + hex.EncodeToString(mac)
}

// DefaultIQNPrefix is the naming authority of DefaultInitiatorName: the
// date is the month lunboot adopted the scheme (RFC 7143 §4.2.7.3 asks for
// a month in which the naming authority held the domain).
const DefaultIQNPrefix = "iqn.2026-11.org.lunboot:"
