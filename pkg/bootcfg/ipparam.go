package bootcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/rootpath"
)

// ipSpec is one parsed ip= option.
type ipSpec struct {
	mode     IPMode // 0 when ip= does not choose (ip=ibft)
	addr     netip.Prefix
	gw       netip.Addr
	dns      []netip.Addr
	hostname string
	dev      string
	mtu      int
	ibft     bool
	warnings []string
}

const ipForms = "ip=dhcp, ip=<dev>:dhcp[:<mtu>], or ip=<client-ip>:<server-ip>:<gateway>:<netmask>:<hostname>:<dev>:<autoconf>[:<dns0>[:<dns1>]]"

// parseIPParam parses the kernel's ip= option
// (Documentation/admin-guide/nfs/nfsroot.rst) with dracut's additions
// (dracut.cmdline(7)): bracketed IPv6 addresses, a prefix length as the
// netmask, ip=<dev>:<autoconf>[:<mtu>[:<mac>]], ibft, and an MTU in place
// of the DNS servers.
func parseIPParam(v string) (ipSpec, error) {
	var s ipSpec
	if !strings.Contains(v, ":") {
		if v == "" {
			return s, errors.New("empty; use " + ipForms)
		}
		if _, err := parseIPAddr(v); err != nil {
			if err := s.autoconf(v, false); err != nil {
				return s, err
			}
			return s, nil
		}
		// A lone address is the kernel form with every other field empty.
	}
	f := splitBracketed(v)
	if len(f) >= 2 && isAutoconf(f[1]) && f[0] != "" {
		if _, err := parseIPAddr(f[0]); err != nil {
			return s.ifaceForm(f)
		}
	}
	return s.kernelForm(f)
}

func isAutoconf(w string) bool {
	switch strings.ToLower(w) {
	case "dhcp", "on", "any", "single-dhcp", "off", "none", "ibft", "dhcp6", "auto6", "either6", "link6", "bootp", "rarp", "both":
		return true
	}
	return false
}

// autoconf applies an autoconf word. static says whether a client address
// was given (which makes "off"/"none" mean static configuration).
func (s *ipSpec) autoconf(w string, static bool) error {
	switch strings.ToLower(w) {
	case "dhcp", "on", "any", "single-dhcp":
		s.mode = IPDHCP
	case "ibft":
		s.ibft = true
	case "off", "none":
		if !static {
			return errors.New("turns networking off, but lunboot needs the network to reach the target; use ip=dhcp or a static " + ipForms)
		}
		s.mode = IPStatic
	case "dhcp6":
		s.mode = IPDHCP6
	case "auto6":
		s.mode = IPAuto6
	case "either6":
		return fmt.Errorf("%q: choose auto6 (router advertisements) or dhcp6 (DHCPv6): lunboot does not fall back from one to the other", w)
	case "link6":
		return fmt.Errorf("%q: a link-local address alone reaches no portal off the link's own scope; use auto6 or dhcp6", w)
	case "bootp", "rarp", "both":
		return fmt.Errorf("%q: lunboot only does DHCP; use ip=dhcp", w)
	default:
		return fmt.Errorf("%q is not an autoconf method (dhcp, dhcp6, auto6, on, any, off, none, ibft); the forms are %s", w, ipForms)
	}
	return nil
}

// ifaceForm parses dracut's ip=<dev>:<autoconf>[:<mtu>[:<macaddr>]].
func (s *ipSpec) ifaceForm(f []string) (ipSpec, error) {
	if err := rootpath.CheckIfname(f[0]); err != nil {
		return *s, err
	}
	s.dev = f[0]
	if err := s.autoconf(f[1], false); err != nil {
		return *s, err
	}
	if len(f) > 2 && f[2] != "" {
		if err := s.setMTU(f[2]); err != nil {
			return *s, err
		}
	}
	if len(f) > 3 {
		if mac := strings.Join(f[3:], ":"); mac != "" {
			return *s, errors.New("setting the interface's MAC address is not supported; select the interface by MAC with BOOTIF=")
		}
	}
	return *s, nil
}

// kernelForm parses
// <client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>
// followed by [:<dns0>[:<dns1>[:<ntp0>]]] or dracut's [:<mtu>[:<macaddr>]].
func (s *ipSpec) kernelForm(f []string) (ipSpec, error) {
	for len(f) < 7 {
		f = append(f, "")
	}
	client, peer, gw, mask, host, dev, auto, extra := f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7:]
	var addr netip.Addr
	if client != "" {
		a, err := parseIPAddr(client)
		if err != nil {
			return *s, fmt.Errorf("client address %q: %w", client, err)
		}
		addr = a
	}
	if peer != "" {
		s.warnings = append(s.warnings, fmt.Sprintf("ip=: server/peer address %q ignored", peer))
	}
	if gw != "" {
		a, err := parseIPAddr(gw)
		if err != nil {
			return *s, fmt.Errorf("gateway %q: %w", gw, err)
		}
		s.gw = a
	}
	if host != "" {
		if err := rootpath.CheckHostname(host); err != nil {
			return *s, fmt.Errorf("hostname %q: %w", host, err)
		}
		s.hostname = host
	}
	if dev != "" {
		if err := rootpath.CheckIfname(dev); err != nil {
			return *s, fmt.Errorf("device: %w", err)
		}
		s.dev = dev
	}
	switch {
	case auto != "":
		if err := s.autoconf(auto, addr.IsValid()); err != nil {
			return *s, fmt.Errorf("autoconf: %w", err)
		}
	case addr.IsValid():
		s.mode = IPStatic // an address without a method is static
	default:
		s.mode = IPDHCP // the kernel's default when no address is given
	}
	if len(extra) > 0 {
		if err := s.extraFields(extra); err != nil {
			return *s, err
		}
	}
	switch s.mode {
	case IPStatic:
		if mask == "" {
			return *s, fmt.Errorf("static address %s needs a netmask (field 4), e.g. 255.255.255.0 or 24", addr)
		}
		bits, err := parseMask(mask, addr.Is4())
		if err != nil {
			return *s, fmt.Errorf("netmask %q: %w", mask, err)
		}
		s.addr = netip.PrefixFrom(addr, bits)
		if s.gw.IsValid() && s.gw.Is4() != addr.Is4() {
			return *s, fmt.Errorf("gateway %s and address %s are of different IP versions", s.gw, addr)
		}
	default:
		if addr.IsValid() || mask != "" || s.gw.IsValid() {
			s.warnings = append(s.warnings, fmt.Sprintf("ip=: address, netmask and gateway ignored with autoconf %q; DHCP provides them", auto))
			s.gw = netip.Addr{}
		}
	}
	return *s, nil
}

// extraFields parses what follows the autoconf field: DNS servers (kernel,
// dracut) or an MTU and MAC address (dracut).
func (s *ipSpec) extraFields(extra []string) error {
	if e := extra[0]; e != "" && isDigitsOnly(e) {
		if err := s.setMTU(e); err != nil {
			return err
		}
		if mac := strings.Join(extra[1:], ":"); mac != "" {
			return errors.New("setting the interface's MAC address is not supported; select the interface by MAC with BOOTIF=")
		}
		return nil
	}
	if len(extra) > 3 {
		return fmt.Errorf("too many fields; the forms are %s", ipForms)
	}
	for i, e := range extra {
		if e == "" {
			continue
		}
		a, err := parseIPAddr(e)
		if i == 2 {
			if err == nil {
				s.warnings = append(s.warnings, fmt.Sprintf("ip=: NTP server %s ignored", a))
				continue
			}
			return fmt.Errorf("NTP server %q: %w", e, err)
		}
		if err != nil {
			return fmt.Errorf("DNS server %q: %w", e, err)
		}
		s.dns = append(s.dns, a)
	}
	return nil
}

func (s *ipSpec) setMTU(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 68 || n > 65535 || !isDigitsOnly(v) {
		return fmt.Errorf("MTU %q is not a number from 68 to 65535", v)
	}
	s.mtu = n
	return nil
}

// splitBracketed splits on ':' outside [...].
func splitBracketed(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case ':':
			if depth == 0 {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

// parseIPAddr parses an IPv4 or (bracketed) IPv6 literal without a zone.
func parseIPAddr(s string) (netip.Addr, error) {
	inner := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		inner = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(inner)
	if err != nil {
		return netip.Addr{}, errors.New("not an IP address")
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("a zone is not allowed here")
	}
	if a.Is6() && inner == s {
		return netip.Addr{}, errors.New("an IPv6 address must be in brackets here")
	}
	return a.Unmap(), nil
}

// parseMask accepts a prefix length or a dotted IPv4 netmask.
func parseMask(m string, v4 bool) (int, error) {
	max := 128
	if v4 {
		max = 32
	}
	if isDigitsOnly(m) {
		n, err := strconv.Atoi(m)
		if err != nil || n > max {
			return 0, fmt.Errorf("prefix length must be 0 to %d", max)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(m)
	if err != nil || !a.Is4() || !v4 {
		return 0, errors.New("not a netmask: give a prefix length (24) or, for IPv4, a dotted mask (255.255.255.0)")
	}
	ones, bits := net.IPMask(a.AsSlice()).Size()
	if bits == 0 {
		return 0, errors.New("not a contiguous netmask")
	}
	return ones, nil
}

func isDigitsOnly(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
