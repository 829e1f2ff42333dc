package iscsi

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// splitPortal parses a portal: "host:port", "host" (port 3260),
// "[v6]:port", "[v6]" or a bare IPv6 literal.
func splitPortal(s string) (host string, port uint16, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("iscsi: empty portal address")
	}
	a, err := parseHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("iscsi: portal %q: %w", s, err)
	}
	return a.Host, a.Port, nil
}

// parseHostPort parses domainname[:port] where domainname is a DNS name,
// an IPv4 literal or a bracketed IPv6 literal (RFC 7143 §13.8). A bare IPv6
// literal is accepted as a host without port.
func parseHostPort(s string) (TargetAddress, error) {
	a := TargetAddress{Port: DefaultPort}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return a, fmt.Errorf("unbalanced '[' in %q", s)
		}
		a.Host = s[1:end]
		if _, err := netip.ParseAddr(a.Host); err != nil || strings.ContainsAny(a.Host, " /,[]") {
			return a, fmt.Errorf("%q in brackets is not an IPv6 address", a.Host)
		}
		rest := s[end+1:]
		if rest == "" {
			return a, nil
		}
		if rest[0] != ':' {
			return a, fmt.Errorf("unexpected %q after ']'", rest)
		}
		p, err := parsePort(rest[1:])
		a.Port = p
		return a, err
	}
	if strings.Count(s, ":") > 1 {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() && !strings.ContainsAny(s, " /,[]") {
			a.Host = s
			return a, nil
		}
		return a, fmt.Errorf("%q: write IPv6 addresses in brackets, [addr]:port", s)
	}
	host, portStr, found := strings.Cut(s, ":")
	if host == "" {
		return a, fmt.Errorf("missing host in %q", s)
	}
	if strings.ContainsAny(host, " /,[]") {
		return a, fmt.Errorf("invalid host %q", host)
	}
	a.Host = host
	if found {
		p, err := parsePort(portStr)
		a.Port = p
		return a, err
	}
	return a, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	return uint16(n), nil
}

// parseTargetAddress parses a TargetAddress value,
// domainname[:port][,portal-group-tag] (RFC 7143 §13.8), as redirections and
// SendTargets return it.
func parseTargetAddress(s string) (TargetAddress, error) {
	hp, tag := s, ""
	// The tag follows the last comma outside any brackets.
	if i := strings.LastIndexByte(s, ','); i >= 0 && i > strings.LastIndexByte(s, ']') {
		hp, tag = s[:i], s[i+1:]
	}
	a, err := parseHostPort(hp)
	if err != nil {
		return a, fmt.Errorf("TargetAddress %q: %w", s, err)
	}
	if tag != "" {
		n, err := strconv.ParseUint(tag, 10, 16)
		if err != nil {
			return a, fmt.Errorf("TargetAddress %q: invalid portal group tag %q", s, tag)
		}
		a.TPGT = uint16(n)
	}
	return a, nil
}

// portalString joins host and port for dialing.
func portalString(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// ParseTargetAddress parses domainname[:port][,portal-group-tag] (RFC 7143
// §13.8): a portal as SendTargets and redirections give it, or as a user
// writes it (host:port, [v6]:port). The port defaults to 3260, the tag to
// 0 (not known).
func ParseTargetAddress(s string) (TargetAddress, error) { return parseTargetAddress(s) }
