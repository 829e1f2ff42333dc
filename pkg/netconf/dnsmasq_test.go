package netconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The lab's addresses. The client namespace's links are lb0, lb1…; the
// server side is srv0 at 192.168.77.1.
const (
	mac0     = "02:00:00:77:00:50"
	mac1     = "02:00:00:77:00:51"
	srvAddr  = "192.168.77.1/24"
	rootPath = "iscsi:192.168.77.1::3260:1:iqn.2024-01.test.lunboot:disk0"
	iqn      = "iqn.2024-01.test.lunboot:client0"
)

// dnsmasqBase serves 192.168.77.50 to lb0 (by MAC) with the ordinary
// options; tests add the boot options.
var dnsmasqBase = []string{
	"--dhcp-range=192.168.77.50,192.168.77.60,255.255.255.0,1h",
	"--dhcp-host=" + mac0 + ",192.168.77.50,client0",
	"--domain=lab.test",
	"--dhcp-option=3,192.168.77.1",
	"--dhcp-option=6,192.168.77.53,192.168.77.54",
	"--dhcp-option=26,1400",
}

// scenarios run inside the client namespace (see lab_test.go).
var scenarios = map[string]func(t *testing.T){
	"option17":    childOption17,
	"option43":    childOption43,
	"option43raw": childOption43Raw,
	"noroot":      childNoRootPath,
	"noserver":    childNoServer,
	"twolinks":    childTwoLinks,
	"static":      childStatic,
	"findlinks":   childFindLinks,
	"rapid":       childRapidCommit,
	"guest":       childGuest,
	"cmdline":     childCommandLine,
}

// serverLab is a client namespace with lb0 joined to srv0 in a server
// namespace running dnsmasq with dnsmasqBase plus extra.
func serverLab(t *testing.T, extra ...string) (l *lab, client string, d *dnsmasq) {
	l = newLab(t)
	client, srv := l.netns("c"), l.netns("s")
	l.veth(client, "lb0", mac0, srv, "srv0", true)
	d = l.dnsmasq(srv, "srv0", srvAddr, append(slices.Clone(dnsmasqBase), extra...)...)
	return l, client, d
}

func TestDnsmasqOption17And203(t *testing.T) {
	l, client, d := serverLab(t,
		"--dhcp-option=17,"+rootPath,
		"--dhcp-option=203,"+iqn)
	l.child(client, "option17")
	// What we asked for decides what dnsmasq sends (it honours the PRL).
	d.contains(t, "vendor class: lunboot", "17:root-path", "DHCPACK(srv0) 192.168.77.50 "+mac0+" client0")
}

func childOption17(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	c, err := Configure(ctx(t), labOptions(t, Options{ResolvConf: rc}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	want := &Config{
		Link:          Link{Name: "lb0", Index: c.Link.Index, MAC: mustMAC(mac0)},
		Origin:        OriginDHCP,
		Address:       netip.MustParsePrefix("192.168.77.50/24"),
		Gateway:       netip.MustParseAddr("192.168.77.1"),
		DNS:           []netip.Addr{netip.MustParseAddr("192.168.77.53"), netip.MustParseAddr("192.168.77.54")},
		Hostname:      "client0",
		LeaseHostname: "client0",
		Domain:        "lab.test",
		MTU:           1400,
		Server:        netip.MustParseAddr("192.168.77.1"),
		LeaseTime:     time.Hour,
		RootPath:      Sourced{rootPath, SourceOption17},
		InitiatorIQN:  Sourced{iqn, SourceOption203},
	}
	checkConfig(t, c, want)
	if len(c.Links) != 1 || c.Links[0].Err != nil {
		t.Errorf("Links = %v, want lb0 ok", c.Links)
	}
	if c.Timings.DHCP <= 0 {
		t.Errorf("Timings.DHCP = %v, want > 0", c.Timings.DHCP)
	}
	if string(c.Options[optRootPath]) != rootPath {
		t.Errorf("Options[17] = %q, want %q", c.Options[optRootPath], rootPath)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1400, addrs: []string{"192.168.77.50/24"}, routes: []string{"default via 192.168.77.1 proto dhcp"}})
	checkFile(t, rc, "# written by lunboot: dhcp on lb0 from 192.168.77.1\nsearch lab.test\nnameserver 192.168.77.53\nnameserver 192.168.77.54\n")

	if err := c.Down(); err != nil {
		t.Fatalf("Down() = %v", err)
	}
	checkState(t, "lb0", linkState{up: false, mtu: 1500})
	if _, err := os.Stat(rc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Down, stat(%s) = %v, want it removed (it did not exist before)", rc, err)
	}
	if err := c.Down(); err != nil {
		t.Errorf("second Down() = %v, want nil", err)
	}
}

// TestDnsmasqRapidCommit: with --dhcp-rapid-commit dnsmasq answers the
// DISCOVER with a committed DHCPACK (RFC 4039) and the client takes the
// lease from it, sending no REQUEST.
func TestDnsmasqRapidCommit(t *testing.T) {
	l, client, d := serverLab(t, "--dhcp-rapid-commit", "--dhcp-option=17,"+rootPath)
	l.child(client, "rapid")
	d.contains(t, "DHCPDISCOVER(srv0) "+mac0, "DHCPACK(srv0) 192.168.77.50 "+mac0)
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "DHCPREQUEST") || strings.Contains(string(b), "DHCPOFFER") {
		t.Errorf("dnsmasq saw an OFFER/REQUEST exchange, want rapid commit only:\n%s", b)
	}
}

func childRapidCommit(t *testing.T) {
	c, err := Configure(ctx(t), labOptions(t, Options{ResolvConf: filepath.Join(t.TempDir(), "resolv.conf")}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	if c.Address.String() != "192.168.77.50/24" || c.RootPath.Value != rootPath {
		t.Errorf("Configure() = address %v root-path %q, want 192.168.77.50/24 and %q", c.Address, c.RootPath.Value, rootPath)
	}
	downOrFail(t, c)
}

// TestDnsmasqCommandLineValues checks ip='s host name, MTU and DNS servers
// under DHCP against dnsmasq: the name reaches the server as option 12 and
// the command line's values win on the link and in resolv.conf.
func TestDnsmasqCommandLineValues(t *testing.T) {
	l, client, d := serverLab(t, "--dhcp-option=17,"+rootPath)
	l.child(client, "cmdline")
	d.contains(t, "client provides name: node7", "DHCPACK(srv0) 192.168.77.50 "+mac0)
}

func childCommandLine(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	c, err := Configure(ctx(t), labOptions(t, Options{ResolvConf: rc, Hostname: "node7", MTU: 1450,
		DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.168.77.54")}}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	defer downOrFail(t, c)
	if c.Hostname != "node7" || c.LeaseHostname != "client0" || c.MTU != 1450 {
		t.Errorf("Hostname, LeaseHostname, MTU = %q, %q, %d; want node7, client0 (dnsmasq's dhcp-host name), 1450", c.Hostname, c.LeaseHostname, c.MTU)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1450, addrs: []string{"192.168.77.50/24"}, routes: []string{"default via 192.168.77.1 proto dhcp"}})
	checkFile(t, rc, "# written by lunboot: dhcp on lb0 from 192.168.77.1\nsearch lab.test\nnameserver 192.0.2.53\nnameserver 192.168.77.54\nnameserver 192.168.77.53\n")
}

func TestDnsmasqOption43VendorClass(t *testing.T) {
	l, client, d := serverLab(t,
		// Sent only to clients whose vendor class contains "lunboot".
		"--dhcp-option=vendor:lunboot,201,"+rootPath,
		"--dhcp-option=vendor:lunboot,203,"+iqn,
		"--dhcp-option=121,10.99.0.0/16,192.168.77.254,0.0.0.0/0,192.168.77.1")
	l.child(client, "option43")
	d.contains(t, "vendor class: lunboot", "43:vendor-encap", "121:classless-static-route")
}

func childOption43(t *testing.T) {
	c, err := Configure(ctx(t), labOptions(t, Options{ResolvConf: "-"}))
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	defer downOrFail(t, c)
	if c.RootPath != (Sourced{rootPath, SourceOption43Sub201}) {
		t.Errorf("RootPath = %v, want %q from option 43.201", c.RootPath, rootPath)
	}
	if c.InitiatorIQN != (Sourced{iqn, SourceOption43Sub203}) {
		t.Errorf("InitiatorIQN = %v, want %q from option 43.203", c.InitiatorIQN, iqn)
	}
	// Option 121 carries the default route, so option 3 is ignored (RFC 3442).
	wantRoutes := []Route{{netip.MustParsePrefix("10.99.0.0/16"), netip.MustParseAddr("192.168.77.254")}}
	if !slices.Equal(c.Routes, wantRoutes) || c.Gateway != netip.MustParseAddr("192.168.77.1") {
		t.Errorf("Routes, Gateway = %v, %v, want %v, 192.168.77.1", c.Routes, c.Gateway, wantRoutes)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1400, addrs: []string{"192.168.77.50/24"},
		routes: []string{"10.99.0.0/16 via 192.168.77.254 proto dhcp", "default via 192.168.77.1 proto dhcp"}})
}

func TestDnsmasqOption43Raw(t *testing.T) {
	// Option 43 as raw bytes, the way HBA documentation tells you to
	// configure it, with NUL-terminated values; option 17 holds an NFS
	// root for other clients, which must not win.
	vendor := vendorOptions{{201, []byte(rootPath + "\x00\x00")}, {203, []byte(iqn + "\x00")}}.encode()
	hexv := make([]string, len(vendor))
	for i, b := range vendor {
		hexv[i] = fmt.Sprintf("%02x", b)
	}
	l, client, _ := serverLab(t,
		"--dhcp-option=17,nfs-server:/export/root",
		"--dhcp-option=43,"+strings.Join(hexv, ":"))
	l.child(client, "option43raw")
}

func childOption43Raw(t *testing.T) {
	c, err := Acquire(ctx(t), labLinks(t), labOptions(t, Options{}))
	if err != nil {
		t.Fatalf("Acquire() = %v", err)
	}
	defer downOrFail(t, c)
	if c.RootPath != (Sourced{rootPath, SourceOption43Sub201}) {
		t.Errorf("RootPath = %v, want %q from option 43.201", c.RootPath, rootPath)
	}
	if c.InitiatorIQN != (Sourced{iqn, SourceOption43Sub203}) {
		t.Errorf("InitiatorIQN = %v, want %q from option 43.203", c.InitiatorIQN, iqn)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "option 17 not usable") }) {
		t.Errorf("Warnings = %q, want one about the NFS option 17", c.Warnings)
	}
}

func TestDnsmasqNoRootPath(t *testing.T) {
	l, client, _ := serverLab(t)
	l.child(client, "noroot")
}

func childNoRootPath(t *testing.T) {
	// Required: an address-only lease is no success, but comes back for a
	// rescue network.
	o := labOptions(t, Options{})
	_, err := Acquire(ctx(t), labLinks(t), o)
	var e *Error
	if !errors.Is(err, ErrNoRootPath) || !errors.As(err, &e) {
		t.Fatalf("Acquire(RootPathRequired) = %v, want an *Error wrapping ErrNoRootPath", err)
	}
	if !strings.Contains(err.Error(), "lb0: lease 192.168.77.50/24 from 192.168.77.1") {
		t.Errorf("error %q does not name the link and lease", err)
	}
	if len(e.Leases) != 1 || e.Leases[0].Address != netip.MustParsePrefix("192.168.77.50/24") {
		t.Fatalf("Error.Leases = %v, want the 192.168.77.50/24 lease", e.Leases)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1500})
	if err := e.Leases[0].Down(); err != nil {
		t.Fatalf("Leases[0].Down() = %v", err)
	}
	checkState(t, "lb0", linkState{up: false, mtu: 1500})

	// Optional: the root-path comes from the command line; the address is
	// all DHCP needs to give.
	o.RootPath = RootPathOptional
	o.ResolvConf = "-"
	c, err := Configure(ctx(t), o)
	if err != nil {
		t.Fatalf("Configure(RootPathOptional) = %v", err)
	}
	if c.RootPath.Source != SourceNone || c.Address != netip.MustParsePrefix("192.168.77.50/24") {
		t.Errorf("Configure(RootPathOptional) = %v, %v, want 192.168.77.50/24 without root-path", c.Address, c.RootPath)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1400, addrs: []string{"192.168.77.50/24"}, routes: []string{"default via 192.168.77.1 proto dhcp"}})
	downOrFail(t, c)
	checkState(t, "lb0", linkState{up: false, mtu: 1500})
}

func TestDHCPNoServer(t *testing.T) {
	l := newLab(t)
	client, peer := l.netns("c"), l.netns("p")
	l.veth(client, "lb0", mac0, peer, "p0", true)  // carrier, nobody answers
	l.veth(client, "lb1", mac1, peer, "p1", false) // no carrier
	l.child(client, "noserver")
}

func childNoServer(t *testing.T) {
	const bound = 4 * time.Second
	o := labOptions(t, Options{DHCPTimeout: bound, CarrierTimeout: time.Second, Retransmit: 500 * time.Millisecond, MaxRetransmit: 2 * time.Second})
	start := time.Now()
	c, err := Configure(ctx(t), o)
	elapsed := time.Since(start)
	if err == nil {
		c.Down()
		t.Fatalf("Configure() = %v, want an error", c)
	}
	if !errors.Is(err, ErrNoOffer) || !errors.Is(err, ErrNoCarrier) {
		t.Errorf("Configure() = %v, want it to wrap ErrNoOffer and ErrNoCarrier", err)
	}
	for _, want := range []string{"no usable lease on 2 links", "lb0: no DHCPOFFER within", "DHCPDISCOVER(s) sent", "lb1: no carrier after"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Configure() error %q lacks %q", err, want)
		}
	}
	// A hang guard, not a speed target: the bound must hold, with slack
	// for a loaded machine.
	if elapsed > bound+10*time.Second {
		t.Errorf("Configure() took %v, want about the %v bound", elapsed, bound)
	}
	checkState(t, "lb0", linkState{up: false, mtu: 1500})
	checkState(t, "lb1", linkState{up: false, mtu: 1500})
}

func TestDnsmasqTwoLinksOneServer(t *testing.T) {
	l, client, _ := serverLab(t, "--dhcp-option=17,"+rootPath)
	empty := l.netns("e")
	l.veth(client, "lb1", mac1, empty, "e0", true) // carrier, no server
	l.child(client, "twolinks")
}

func childTwoLinks(t *testing.T) {
	const bound = 60 * time.Second
	start := time.Now()
	c, err := Configure(ctx(t), labOptions(t, Options{DHCPTimeout: bound, ResolvConf: "-"}))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	defer downOrFail(t, c)
	if c.Link.Name != "lb0" || c.RootPath.Value != rootPath {
		t.Fatalf("Configure() chose %s with root-path %v, want lb0 with %q", c.Link.Name, c.RootPath, rootPath)
	}
	// lb1 never gets an offer; the winner must not wait for its bound.
	if elapsed > bound/2 {
		t.Errorf("Configure() took %v, want well under lb1's %v bound", elapsed, bound)
	}
	if len(c.Links) != 2 || c.Links[0].Err != nil || !errors.Is(c.Links[1].Err, ErrSuperseded) {
		t.Errorf("Links = %v, want lb0 ok and lb1 stopped", c.Links)
	}
	checkState(t, "lb1", linkState{up: false, mtu: 1500})
}

func TestStatic(t *testing.T) {
	l := newLab(t)
	client, peer := l.netns("c"), l.netns("p")
	l.veth(client, "lb0", mac0, peer, "p0", true)
	l.veth(client, "lb1", mac1, peer, "p1", false) // no carrier: not chosen
	l.child(client, "static")
}

func childStatic(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 10.9.9.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Static{
		Address:  netip.MustParsePrefix("10.5.0.7/24"),
		Gateway:  netip.MustParseAddr("10.5.0.1"),
		DNS:      []netip.Addr{netip.MustParseAddr("10.5.0.53")},
		Hostname: "static0",
		Domain:   "lab.test",
		MTU:      1400,
	}
	c, err := Configure(ctx(t), labOptions(t, Options{Static: s, ResolvConf: rc, CarrierTimeout: time.Second}))
	if err != nil {
		t.Fatalf("Configure(static) = %v", err)
	}
	checkConfig(t, c, &Config{
		Link: Link{Name: "lb0", Index: c.Link.Index, MAC: mustMAC(mac0)}, Origin: OriginStatic,
		Address: s.Address, Gateway: s.Gateway, DNS: s.DNS, Hostname: "static0", Domain: "lab.test", MTU: 1400,
	})
	if len(c.Links) != 2 || !errors.Is(c.Links[1].Err, ErrNoCarrier) {
		t.Errorf("Links = %v, want lb1 without carrier", c.Links)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1400, addrs: []string{"10.5.0.7/24"}, routes: []string{"default via 10.5.0.1 proto static"}})
	checkState(t, "lb1", linkState{up: false, mtu: 1500})
	checkFile(t, rc, "# written by lunboot: static on lb0\nsearch lab.test\nnameserver 10.5.0.53\n")
	downOrFail(t, c)
	checkState(t, "lb0", linkState{up: false, mtu: 1500})
	checkFile(t, rc, "nameserver 10.9.9.9\n")

	// A /32 with a gateway outside it (cloud style) needs an on-link route.
	s = &Static{Device: "lb0", Address: netip.MustParsePrefix("10.6.0.9/32"), Gateway: netip.MustParseAddr("10.6.0.1")}
	c, err = Configure(ctx(t), labOptions(t, Options{Static: s, ResolvConf: rc, CarrierTimeout: time.Second}))
	if err != nil {
		t.Fatalf("Configure(static /32) = %v", err)
	}
	checkState(t, "lb0", linkState{up: true, mtu: 1500, addrs: []string{"10.6.0.9/32"}, routes: []string{"default via 10.6.0.1 onlink proto static"}})
	downOrFail(t, c)
	checkState(t, "lb0", linkState{up: false, mtu: 1500})

	if _, err := StaticConfig(ctx(t), []Link{{Name: "lb0", Index: mustIndex(t, "lb0")}}, Options{}); err == nil || !strings.Contains(err.Error(), "no static configuration") {
		t.Errorf("StaticConfig(no Static) = %v, want an error saying so", err)
	}
	if _, err := StaticConfig(ctx(t), nil, Options{Static: &Static{}}); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
		t.Errorf("StaticConfig(zero address) = %v, want an address error", err)
	}
}

func TestFindLinks(t *testing.T) {
	l := newLab(t)
	client, peer := l.netns("c"), l.netns("p")
	l.veth(client, "lb0", mac0, peer, "p0", true)
	l.veth(client, "lb1", mac1, peer, "p1", true)
	l.run("ip", "-n", client, "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", client, "link", "set", "lb1", "master", "br0")
	l.child(client, "findlinks")
}

func childFindLinks(t *testing.T) {
	names := func(ls []Link) []string {
		var n []string
		for _, l := range ls {
			n = append(n, l.Name)
		}
		return n
	}
	for _, tt := range []struct {
		name string
		sel  Selector
		want []string
	}{
		// veth and bridges have no device: a real boot skips them.
		{"physical only", Selector{}, nil},
		// A bridge port is not a candidate; the bridge itself is.
		{"virtual", Selector{Virtual: true}, []string{"lb0", "br0"}},
		{"by BOOTIF", Selector{Virtual: true, BootIF: mustMAC(mac0)}, []string{"lb0"}},
		// Named explicitly, even a bridge port is taken.
		{"by name", Selector{Name: "lb1"}, []string{"lb1"}},
		{"unknown name", Selector{Name: "eth7"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindLinks("", tt.sel)
			if tt.want == nil {
				if !errors.Is(err, ErrNoLinks) || !strings.Contains(err.Error(), "lb0 ("+mac0+")") {
					t.Fatalf("FindLinks(%+v) = %v, %v, want ErrNoLinks listing the interfaces", tt.sel, names(got), err)
				}
				return
			}
			if err != nil || !slices.Equal(names(got), tt.want) {
				t.Fatalf("FindLinks(%+v) = %v, %v, want %v", tt.sel, names(got), err, tt.want)
			}
			if got[0].Name == "lb0" && (got[0].MAC.String() != mac0 || got[0].Index != mustIndex(t, "lb0")) {
				t.Errorf("FindLinks(%+v)[0] = %+v, want MAC %s and lb0's index", tt.sel, got[0], mac0)
			}
		})
	}
}

// childGuest is the real boot's stage 3 with default options (physical
// NICs, RFC 2131 retransmission from 1 s, root-path required), for running
// the test binary inside a QEMU guest: LUNBOOT_NETCONF_CHILD=guest
// netconf.test -test.run=^TestNetnsChild$ -test.v. It checks what the
// package learns about a real NIC (driver, module, PCI address).
func childGuest(t *testing.T) {
	o := Options{ResolvConf: filepath.Join(t.TempDir(), "resolv.conf")}
	o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	start := time.Now()
	c, err := Configure(ctx(t), o)
	if err != nil {
		t.Fatalf("Configure() = %v", err)
	}
	t.Logf("configured in %v: %v", time.Since(start), c.LogValue())
	if c.Link.Driver == "" || c.Link.Module == "" || c.Link.PCI == "" {
		t.Errorf("Link = %+v, want driver, module and PCI address of a real NIC", c.Link)
	}
	if bdf, ok := c.Link.PCIBDF(); !ok {
		t.Errorf("Link.PCIBDF() = %#x, false, want a segment-0 address", bdf)
	}
	downOrFail(t, c)
}

// labOptions are the options the scenarios share: veth links, short but
// RFC-shaped retransmission, bounds that end a broken test quickly.
func labOptions(t *testing.T, o Options) Options {
	o.Select.Virtual = true
	o.CarrierTimeout = cmpOr(o.CarrierTimeout, 5*time.Second)
	o.DHCPTimeout = cmpOr(o.DHCPTimeout, 20*time.Second)
	o.Retransmit = cmpOr(o.Retransmit, time.Second)
	o.MaxRetransmit = cmpOr(o.MaxRetransmit, 4*time.Second)
	o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return o
}

func labLinks(t *testing.T) []Link {
	ls, err := FindLinks("", Selector{Virtual: true})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func downOrFail(t *testing.T, c *Config) {
	t.Helper()
	if err := c.Down(); err != nil {
		t.Errorf("Down() = %v", err)
	}
}

// checkConfig compares the fields a scenario pins down.
func checkConfig(t *testing.T, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	// Not compared: raw options, warnings, reports, timings, undo state.
	for _, c := range []*Config{&g, &w} {
		c.Options, c.Warnings, c.Links, c.Timings, c.raised, c.applied = nil, nil, nil, Timings{}, false, nil
	}
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Errorf("Config =\n %+v\nwant\n %+v", g, w)
	}
}

// linkState is what a scenario checks on a link through netlink.
type linkState struct {
	up     bool
	mtu    int
	addrs  []string // IPv4, "a.b.c.d/n"
	routes []string // IPv4 routes not made by the kernel, "dst [via gw] [onlink] proto p"
}

func checkState(t *testing.T, name string, want linkState) {
	t.Helper()
	nl, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("LinkByName(%s) = %v", name, err)
	}
	got := linkState{up: nl.Attrs().Flags&net.FlagUp != 0, mtu: nl.Attrs().MTU}
	as, err := netlink.AddrList(nl, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		got.addrs = append(got.addrs, a.IPNet.String())
	}
	rs, err := netlink.RouteList(nl, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		s := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				s = r.Dst.String()
			}
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		s += " proto " + r.Protocol.String()
		got.routes = append(got.routes, s)
	}
	slices.Sort(got.routes)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("link %s = %+v, want %+v", name, got, want)
	}
}

func checkFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Errorf("ReadFile(%s) = %q, %v, want %q", path, b, err, want)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func mustIndex(t *testing.T, name string) int {
	nl, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return nl.Attrs().Index
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

var _ io.Writer = testWriter{}
