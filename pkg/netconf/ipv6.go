package netconf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPv6Mode selects IPv6 instead of DHCPv4 for the boot NIC. The zero value
// is IPv4 (DHCPv4, or Options.Static).
type IPv6Mode uint8

// IPv6 modes, named after the dracut ip= autoconf values they mirror
// (dracut.cmdline(7)): dhcp6 and auto6.
const (
	IPv4Only IPv6Mode = iota
	// IPv6DHCP is stateful DHCPv6 (RFC 8415 §18.2.1–18.2.10): the address
	// comes from an IA_NA, the root-path from option 59 (RFC 5970 §3.1)
	// of the same Reply. Routes (the on-link prefix, the default router)
	// come from router advertisements, as DHCPv6 has none.
	IPv6DHCP
	// IPv6Auto is stateless address autoconfiguration from router
	// advertisements (RFC 4862 §5.5), done by the kernel; the root-path,
	// DNS servers and initiator name then come from stateless DHCPv6 (an
	// Information-request, RFC 8415 §18.2.6), as RFC 5970 §3 allows.
	IPv6Auto
)

// String returns "ipv4", "dhcp6" or "auto6".
func (m IPv6Mode) String() string {
	switch m {
	case IPv4Only:
		return "ipv4"
	case IPv6DHCP:
		return "dhcp6"
	case IPv6Auto:
		return "auto6"
	}
	return "IPv6Mode(" + strconv.Itoa(int(m)) + ")"
}

// Errors of the IPv6 path, for callers that branch on the cause.
var (
	// ErrNoIPv6: the kernel has no IPv6 (CONFIG_IPV6) or it is disabled
	// on the link.
	ErrNoIPv6 = errors.New("no IPv6 in this kernel")
	// ErrNoRouterAdvert: with IPv6Auto, no address was autoconfigured
	// within the bound (no router advertisement with an autonomous
	// prefix arrived).
	ErrNoRouterAdvert = errors.New("no address from router advertisements")
	// ErrDAD: duplicate address detection failed (RFC 4862 §5.4.5).
	ErrDAD = errors.New("duplicate address detection failed")
)

// procSysIPv6 is where the per-link IPv6 switches live (the kernel's
// Documentation/networking/ip-sysctl.rst); a variable for tests.
var procSysIPv6 = "/proc/sys/net/ipv6/conf"

// enableIPv6 turns on what the IPv6 path needs on a link, whatever the
// image's defaults: IPv6 itself, router advertisements accepted (they carry
// the on-link prefix and the default router: DHCPv6 gives neither), and
// address autoconfiguration for IPv6Auto. accept_ra=2 accepts them even
// if forwarding was switched on. It is undone by nothing: the link goes
// down before kexec and the next kernel starts with its own defaults.
func enableIPv6(link string, mode IPv6Mode) error {
	dir := filepath.Join(procSysIPv6, link)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w (no %s; the kernel needs CONFIG_IPV6)", link, ErrNoIPv6, dir)
		}
		return fmt.Errorf("%s: %w", link, err)
	}
	autoconf := "0"
	if mode == IPv6Auto {
		autoconf = "1"
	}
	for _, kv := range [][2]string{{"disable_ipv6", "0"}, {"accept_ra", "2"}, {"autoconf", autoconf}} {
		if err := os.WriteFile(filepath.Join(dir, kv[0]), []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("%s: set %s=%s: %w", link, kv[0], kv[1], err)
		}
	}
	return nil
}

// addrPoll is how often the IPv6 waits re-read the link's addresses.
const addrPoll = 100 * time.Millisecond

// waitAddr6 waits until the link has an IPv6 address that ok accepts and
// that has finished duplicate address detection (RFC 4862 §5.4: a
// tentative address cannot be bound or used as a source), and returns it
// with its prefix length. An address whose DAD failed is an error.
func waitAddr6(ctx context.Context, l Link, what string, ok func(netlink.Addr) bool) (netip.Prefix, error) {
	for {
		nl, err := netlink.LinkByIndex(l.Index)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: find link: %w", l.Name, err)
		}
		addrs, err := netlink.AddrList(nl, netlink.FAMILY_V6)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s: list IPv6 addresses: %w", l.Name, err)
		}
		for _, a := range addrs {
			if !ok(a) {
				continue
			}
			p, _ := prefixOf(a)
			if a.Flags&unix.IFA_F_DADFAILED != 0 {
				return netip.Prefix{}, fmt.Errorf("%s: %s %s: %w (another host on the link uses it)", l.Name, what, p, ErrDAD)
			}
			if a.Flags&unix.IFA_F_TENTATIVE == 0 {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		case <-time.After(addrPoll):
		}
	}
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok || a.IPNet == nil {
		return netip.Prefix{}, false
	}
	bits, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), bits), true
}

func isLinkLocal(a netlink.Addr) bool {
	ip, ok := netip.AddrFromSlice(a.IP)
	return ok && ip.Is6() && ip.IsLinkLocalUnicast()
}

// isAutoconf reports whether a is a global address the kernel configured
// from a router advertisement: SLAAC addresses lack IFA_F_PERMANENT (they
// have lifetimes), unlike addresses added by hand or by this package.
func isAutoconf(a netlink.Addr) bool {
	ip, ok := netip.AddrFromSlice(a.IP)
	return ok && ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() &&
		a.Flags&unix.IFA_F_PERMANENT == 0
}

// onLinkBits returns the length of the longest on-link prefix route (from a
// router advertisement's prefix information, RFC 4861 §6.3.4) that covers
// addr on the link, or 128 when none does: a DHCPv6 address carries no
// prefix length (RFC 8415 §21.6), so the iBFT and the log give the prefix
// the link actually has.
func onLinkBits(l Link, addr netip.Addr) int {
	nl, err := netlink.LinkByIndex(l.Index)
	if err != nil {
		return 128
	}
	routes, err := netlink.RouteList(nl, netlink.FAMILY_V6)
	if err != nil {
		return 128
	}
	best := 128
	for _, r := range routes {
		if r.Dst == nil || r.Gw != nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		p := netip.PrefixFrom(ip, bits)
		if bits > 0 && bits < best && p.Contains(addr) && !ip.IsLinkLocalUnicast() {
			best = bits
		}
	}
	return best
}

// defaultRouter6 returns the link's IPv6 default router learned from router
// advertisements (a link-local address), if any.
func defaultRouter6(l Link) netip.Addr {
	nl, err := netlink.LinkByIndex(l.Index)
	if err != nil {
		return netip.Addr{}
	}
	routes, err := netlink.RouteList(nl, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			if gw, ok := netip.AddrFromSlice(r.Gw); ok {
				return gw
			}
		}
	}
	return netip.Addr{}
}

// waitDefaultRouter waits up to d for a default router to appear.
func waitDefaultRouter(ctx context.Context, l Link, d time.Duration) netip.Addr {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if gw := defaultRouter6(l); gw.IsValid() {
			return gw
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}
		case <-time.After(addrPoll):
		}
	}
}
