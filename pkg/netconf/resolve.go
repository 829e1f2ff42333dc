package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// ErrNotResolved is wrapped by LookupHost's error when no server knew the
// name (or none answered).
var ErrNotResolved = errors.New("host name does not resolve")

// DefaultLookupTimeout bounds LookupHost per server.
const DefaultLookupTimeout = 5 * time.Second

// LookupHost resolves host to its addresses by asking the given DNS
// servers (the lease's option 6, nameserver=, ip=…:<dns0>) directly, for
// both A and AAAA records (RFC 4173 allows a host name as the root-path's
// server). Servers are tried in order, each for at most
// DefaultLookupTimeout; the first that answers with addresses wins. dial
// opens the connection to a server ("udp" or "tcp", "<addr>:53"); nil uses
// a net.Dialer. The error names every server and what it said.
func LookupHost(ctx context.Context, host string, servers []netip.Addr, dial func(ctx context.Context, network, addr string) (net.Conn, error)) ([]netip.Addr, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("resolve %s: %w: no DNS server is known", host, ErrNotResolved)
	}
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var fails []string
	for _, s := range servers {
		server := netip.AddrPortFrom(s, 53).String()
		r := &net.Resolver{
			PreferGo: true, // no cgo, no /etc/nsswitch.conf: only this server
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dial(ctx, network, server)
			},
		}
		lctx, cancel := context.WithTimeout(ctx, DefaultLookupTimeout)
		addrs, err := r.LookupNetIP(lctx, "ip", host)
		cancel()
		if err == nil && len(addrs) > 0 {
			out := make([]netip.Addr, 0, len(addrs))
			for _, a := range addrs {
				if a = a.Unmap(); !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, context.Cause(ctx))
		}
		why := "no address"
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			why = "no such host"
		case errors.As(err, &de) && de.IsTimeout:
			why = "no answer within " + DefaultLookupTimeout.String()
		case err != nil:
			why = err.Error()
		}
		fails = append(fails, s.String()+": "+why)
	}
	return nil, fmt.Errorf("resolve %s: %w (asked %s)", host, ErrNotResolved, strings.Join(fails, "; "))
}

// PickAddr chooses the address to connect to among a host name's
// addresses: the first of the family the boot interface has an address in
// (an IPv4-only NIC cannot reach an AAAA record's address), else the first.
func PickAddr(addrs []netip.Addr, local netip.Addr) netip.Addr {
	for _, a := range addrs {
		if a.Is4() == local.Is4() {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return netip.Addr{}
}
