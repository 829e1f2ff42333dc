package netconf

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The IPv6 side of the namespace lab: srv0 gets fd00:77::1/64 and dnsmasq
// sends router advertisements and answers DHCPv6, with the root-path as
// the boot file URL (option 59), as docs/dhcp describes for dnsmasq.
const (
	srvAddr6   = "fd00:77::1/64"
	rootPathV6 = "iscsi:[fd00:77::1]::3260:1:iqn.2024-01.test.lunboot:disk0"
)

func init() {
	scenarios["dhcp6"] = childDHCPv6
	scenarios["auto6"] = childAuto6
}

// serverLab6 is serverLab with srv0's IPv6 address added before dnsmasq
// starts (it builds its router advertisements from the interface's
// addresses).
func serverLab6(t *testing.T, extra ...string) (*lab, string, *dnsmasq) {
	l := newLab(t)
	client, srv := l.netns("c"), l.netns("s")
	l.veth(client, "lb0", mac0, srv, "srv0", true)
	l.run("ip", "-n", srv, "addr", "add", srvAddr6, "dev", "srv0", "nodad")
	args := append(slices.Clone(dnsmasqBase), "--enable-ra", "--dhcp-option=option6:bootfile-url,"+rootPathV6, "--dhcp-option=option6:dns-server,[fd00:77::53]")
	d := l.dnsmasq(srv, "srv0", srvAddr, append(args, extra...)...)
	return l, client, d
}

// TestDnsmasqDHCPv6 gets an address by stateful DHCPv6 from dnsmasq and the
// root-path from option 59; the on-link prefix comes from its router
// advertisement.
func TestDnsmasqDHCPv6(t *testing.T) {
	l, client, d := serverLab6(t, "--dhcp-range=fd00:77::50,fd00:77::60,64,1h")
	l.child(client, "dhcp6")
	d.contains(t, "DHCPSOLICIT(srv0)", "DHCPREPLY(srv0) fd00:77::5", "bootfile-url")
}

func childDHCPv6(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	c, err := Configure(ctx(t), labOptions(t, Options{IPv6: IPv6DHCP, ResolvConf: rc}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	t.Logf("config: %v; warnings %q", c, c.Warnings)
	if c.Origin != OriginDHCPv6 || c.RootPath != (Sourced{rootPathV6, SourceOption59}) {
		t.Errorf("Origin, RootPath = %v, %v; want dhcp6 and %q from option 59", c.Origin, c.RootPath, rootPathV6)
	}
	lo, hi := netip.MustParseAddr("fd00:77::50"), netip.MustParseAddr("fd00:77::60")
	if a := c.Address.Addr(); a.Less(lo) || hi.Less(a) || c.Address.Bits() != 64 {
		t.Errorf("Address = %v, want one of dnsmasq's range with the advertised /64", c.Address)
	}
	if !slices.Equal(c.DNS, []netip.Addr{netip.MustParseAddr("fd00:77::53")}) {
		t.Errorf("DNS = %v, want [fd00:77::53]", c.DNS)
	}
	if got := addrs6(t, "lb0"); !slices.Contains(got, c.Address.Addr().String()+"/128") {
		t.Errorf("lb0 addresses = %v, want the lease as a /128", got)
	}
	checkFile(t, rc, "# written by lunboot: dhcp6 on lb0\nnameserver fd00:77::53\n")
	if err := c.Down(); err != nil {
		t.Fatalf("Down() = %v", err)
	}
	if got := addrs6(t, "lb0"); slices.Contains(got, c.Address.Addr().String()+"/128") {
		t.Errorf("after Down, lb0 addresses = %v, want the lease gone", got)
	}
}

// TestDnsmasqAuto6 takes the address from router advertisements (SLAAC)
// and the root-path from a stateless DHCPv6 Information-request.
func TestDnsmasqAuto6(t *testing.T) {
	l, client, d := serverLab6(t, "--dhcp-range=fd00:77::,ra-stateless,64")
	l.child(client, "auto6")
	d.contains(t, "DHCPINFORMATION-REQUEST(srv0)", "bootfile-url")
}

func childAuto6(t *testing.T) {
	c, err := Configure(ctx(t), labOptions(t, Options{IPv6: IPv6Auto, ResolvConf: "-"}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	defer downOrFail(t, c)
	t.Logf("config: %v; warnings %q", c, c.Warnings)
	if c.Origin != OriginSLAAC || c.RootPath != (Sourced{rootPathV6, SourceOption59}) {
		t.Errorf("Origin, RootPath = %v, %v; want slaac and %q from option 59", c.Origin, c.RootPath, rootPathV6)
	}
	if !netip.MustParsePrefix("fd00:77::/64").Contains(c.Address.Addr()) || c.Address.Bits() != 64 {
		t.Errorf("Address = %v, want an fd00:77::/64 SLAAC address", c.Address)
	}
	if !strings.HasSuffix(c.Address.Addr().String(), "ff:fe77:50") {
		t.Errorf("Address = %v, want the EUI-64 interface identifier of %s", c.Address, mac0)
	}
}

func addrs6(t *testing.T, name string) []string {
	t.Helper()
	nl, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	as, err := netlink.AddrList(nl, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			out = append(out, a.IPNet.String())
		}
	}
	return out
}
