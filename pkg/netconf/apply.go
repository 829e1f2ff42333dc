package netconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// applied records what Apply changed, for Down.
type applied struct {
	addr       *netlink.Addr
	routes     []*netlink.Route
	oldMTU     int
	resolvPath string // written resolv.conf, "" if none
	resolvOld  []byte // its previous content
	resolvHad  bool   // whether it existed before
}

// Apply puts the configuration on its link: the link is set up, the MTU
// set if the configuration has one, the address added with its prefix
// (and broadcast address), the classless static routes and the default
// route added, and the DNS servers and domain written to o.ResolvConf.
// Routes carry protocol "dhcp" or "static" so `ip route` shows their
// origin. A gateway outside the address's prefix (a /32 lease) is reached
// with an on-link route (RTNH_F_ONLINK) rather than refused.
//
// On error, whatever was already changed stays recorded: call Down to
// undo it. Applying an applied Config is an error.
func (c *Config) Apply(o Options) error {
	start := time.Now()
	if c.applied != nil {
		return fmt.Errorf("%s: configuration already applied", c.Link.Name)
	}
	v6 := c.Origin == OriginDHCPv6 || c.Origin == OriginSLAAC
	if !c.Address.IsValid() || c.Address.Addr().Is4() == v6 {
		return fmt.Errorf("%s: no IPv%s address to apply (%v)", c.Link.Name, map[bool]string{false: "4", true: "6"}[v6], c.Address)
	}
	a := &applied{}
	c.applied = a
	defer func() { c.Timings.Apply = time.Since(start) }()

	wasDown, err := setUp(c.Link)
	if err != nil {
		return err
	}
	c.raised = c.raised || wasDown
	nl, err := netlink.LinkByIndex(c.Link.Index)
	if err != nil {
		return fmt.Errorf("%s: find link: %w", c.Link.Name, err)
	}

	if c.MTU > 0 && c.MTU != nl.Attrs().MTU {
		old := nl.Attrs().MTU
		if err := netlink.LinkSetMTU(nl, c.MTU); err != nil {
			return fmt.Errorf("%s: set MTU %d: %w", c.Link.Name, c.MTU, err)
		}
		a.oldMTU = old
	}

	if v6 {
		if err := c.apply6(); err != nil {
			return err
		}
		return c.applyResolv(o)
	}

	addr := &netlink.Addr{IPNet: ipNet(c.Address)}
	if c.Address.Bits() < 31 {
		// RFC 3021: /31 and /32 have no broadcast address.
		addr.Broadcast = broadcast(c.Address)
	}
	if err := netlink.AddrReplace(nl, addr); err != nil {
		return fmt.Errorf("%s: add address %s: %w", c.Link.Name, c.Address, err)
	}
	a.addr = addr

	proto := netlink.RouteProtocol(unix.RTPROT_DHCP)
	if c.Origin == OriginStatic {
		proto = unix.RTPROT_STATIC
	}
	routes := c.Routes
	if c.Gateway.IsValid() {
		routes = append(routes[:len(routes):len(routes)], Route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gateway: c.Gateway})
	}
	for _, r := range routes {
		nr := &netlink.Route{LinkIndex: c.Link.Index, Dst: ipNet(r.Dst), Protocol: proto}
		if r.Gateway.IsUnspecified() {
			nr.Scope = netlink.SCOPE_LINK
		} else {
			nr.Gw = r.Gateway.AsSlice()
			if !c.Address.Contains(r.Gateway) {
				nr.Flags = int(netlink.FLAG_ONLINK)
			}
		}
		if err := netlink.RouteReplace(nr); err != nil {
			return fmt.Errorf("%s: add route %s: %w", c.Link.Name, r, err)
		}
		a.routes = append(a.routes, nr)
	}

	return c.applyResolv(o)
}

// applyResolv writes resolv.conf (o.ResolvConf) when there is something to
// write.
func (c *Config) applyResolv(o Options) error {
	a := c.applied
	if path := o.resolvConf(); path != "-" && (len(c.DNS) > 0 || c.Domain != "") {
		old, err := os.ReadFile(path)
		switch {
		case err == nil:
			a.resolvOld, a.resolvHad = old, true
		case errors.Is(err, fs.ErrNotExist):
		default:
			return fmt.Errorf("%s: read %s: %w", c.Link.Name, path, err)
		}
		if err := writeFileAtomic(path, c.resolvConf()); err != nil {
			return fmt.Errorf("%s: write %s: %w", c.Link.Name, path, err)
		}
		a.resolvPath = path
	}
	o.logger().Debug("netconf: applied", "config", c)
	return nil
}

// apply6 puts an IPv6 configuration on the link. An autoconfigured address
// is the kernel's already (it came from a router advertisement, and so do
// the routes). A DHCPv6 address is added as a /128, as ISC dhclient and
// systemd-networkd add it: the on-link prefix and the default route are
// the router advertisements' (RFC 8415 §21.6), and a prefix route of our
// own would outlive the advertised one. It is then given the time duplicate
// address detection takes (RFC 4862 §5.4; a tentative address cannot be a
// connection's source), boundedly.
func (c *Config) apply6() error {
	if c.Origin == OriginSLAAC {
		return nil
	}
	nl, err := netlink.LinkByIndex(c.Link.Index)
	if err != nil {
		return fmt.Errorf("%s: find link: %w", c.Link.Name, err)
	}
	host := netip.PrefixFrom(c.Address.Addr(), 128)
	addr := &netlink.Addr{IPNet: ipNet(host)}
	if err := netlink.AddrReplace(nl, addr); err != nil {
		return fmt.Errorf("%s: add address %s: %w", c.Link.Name, host, err)
	}
	c.applied.addr = addr
	ctx, cancel := context.WithTimeout(context.Background(), dadTimeout)
	defer cancel()
	_, err = waitAddr6(ctx, c.Link, "DHCPv6 address", func(a netlink.Addr) bool {
		p, ok := prefixOf(a)
		return ok && p.Addr() == host.Addr()
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: address %s still tentative after %v (duplicate address detection)", c.Link.Name, host.Addr(), dadTimeout)
		}
		return err
	}
	return nil
}

// dadTimeout bounds the wait for duplicate address detection: the kernel's
// default is one probe and one second (dad_transmits, retrans_time_ms).
const dadTimeout = 5 * time.Second

// resolvConf renders the resolver configuration (resolv.conf(5)).
func (c *Config) resolvConf() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by lunboot: %s on %s", c.Origin, c.Link.Name)
	if c.Server.IsValid() {
		fmt.Fprintf(&b, " from %s", c.Server)
	}
	b.WriteByte('\n')
	if c.Domain != "" {
		fmt.Fprintf(&b, "search %s\n", c.Domain)
	}
	for _, d := range c.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.Bytes()
}

// Down undoes Apply and the link-up of Acquire/StaticConfig: routes and the
// address are removed, the MTU and resolv.conf restored, and the link set
// down if this package set it up. The boot calls it before kexec so that
// the next kernel starts from quiet links and its initrd configures them
// afresh. Down is idempotent; it tries every step and joins the errors.
func (c *Config) Down() error {
	var errs []error
	if a := c.applied; a != nil {
		c.applied = nil
		for i := len(a.routes) - 1; i >= 0; i-- {
			if err := netlink.RouteDel(a.routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("%s: delete route %v: %w", c.Link.Name, a.routes[i].Dst, err))
			}
		}
		if a.addr != nil {
			if nl, err := netlink.LinkByIndex(c.Link.Index); err != nil {
				errs = append(errs, fmt.Errorf("%s: find link: %w", c.Link.Name, err))
			} else {
				if err := netlink.AddrDel(nl, a.addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
					errs = append(errs, fmt.Errorf("%s: delete address %s: %w", c.Link.Name, c.Address, err))
				}
				if a.oldMTU > 0 {
					if err := netlink.LinkSetMTU(nl, a.oldMTU); err != nil {
						errs = append(errs, fmt.Errorf("%s: restore MTU %d: %w", c.Link.Name, a.oldMTU, err))
					}
				}
			}
		}
		if a.resolvPath != "" {
			var err error
			if a.resolvHad {
				err = writeFileAtomic(a.resolvPath, a.resolvOld)
			} else if err = os.Remove(a.resolvPath); errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: restore %s: %w", c.Link.Name, a.resolvPath, err))
			}
		}
	}
	if c.raised {
		c.raised = false
		if err := setDown(c.Link); err != nil {
			errs = append(errs, err)
		}
	}
	if v := c.vlan; v != nil {
		c.vlan = nil
		if err := delVLAN(c.Link, v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, so a reader never sees half a resolv.conf.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".lunboot-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func broadcast(p netip.Prefix) net.IP {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range 4 {
		a[i] |= byte(host >> (8 * (3 - i)))
	}
	return net.IP(a[:])
}
