package netconf

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ack builds a DHCPACK for 10.0.0.50 with the given raw options.
func ack(t testing.TB, opts map[uint8][]byte) *dhcpv4.DHCPv4 {
	t.Helper()
	p, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 50)))
	if err != nil {
		t.Fatal(err)
	}
	for code, v := range opts {
		p.Options[code] = v
	}
	return p
}

func TestConfigFromACK(t *testing.T) {
	const rp = "iscsi:10.0.0.1::3260:1:iqn.2024-01.test:disk"
	const iqn = "iqn.2024-01.test:client"
	vendor := func(v vendorOptions) []byte { return v.encode() }
	ip := netip.MustParseAddr
	base := map[uint8][]byte{
		optSubnetMask: {255, 255, 255, 0},
		optRouter:     {10, 0, 0, 1},
		optServerID:   {10, 0, 0, 2},
		optLeaseTime:  {0, 0, 0x0e, 0x10},
	}
	with := func(extra map[uint8][]byte) map[uint8][]byte {
		m := map[uint8][]byte{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
				continue
			}
			m[k] = v
		}
		return m
	}
	type want struct {
		addr     string
		gw       string
		routes   []Route
		rootPath Sourced
		iqn      Sourced
		mtu      int
		warn     []string // substrings, in order
	}
	for _, tt := range []struct {
		name string
		opts map[uint8][]byte
		want want
	}{
		{
			name: "option 17 and 203",
			opts: with(map[uint8][]byte{optRootPath: []byte(rp), optInitiatorIQN: []byte(iqn)}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", rootPath: Sourced{rp, SourceOption17}, iqn: Sourced{iqn, SourceOption203}},
		},
		{
			name: "option 17 with trailing NULs",
			opts: with(map[uint8][]byte{optRootPath: []byte(rp + "\x00\x00")}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", rootPath: Sourced{rp, SourceOption17}},
		},
		{
			name: "option 43 sub-options 201 and 203",
			opts: with(map[uint8][]byte{optVendorSpecific: vendor(vendorOptions{{201, []byte(rp)}, {203, []byte(iqn)}})}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", rootPath: Sourced{rp, SourceOption43Sub201}, iqn: Sourced{iqn, SourceOption43Sub203}},
		},
		{
			name: "17 and 203 preferred over 43",
			opts: with(map[uint8][]byte{
				optRootPath: []byte(rp), optInitiatorIQN: []byte(iqn),
				optVendorSpecific: vendor(vendorOptions{{201, []byte("iscsi:other::::t")}, {203, []byte("iqn.other")}}),
			}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", rootPath: Sourced{rp, SourceOption17}, iqn: Sourced{iqn, SourceOption203}},
		},
		{
			name: "non-iSCSI option 17 falls through to 43.201",
			opts: with(map[uint8][]byte{
				optRootPath:       []byte("nfs:/export/root"),
				optVendorSpecific: vendor(vendorOptions{{201, []byte(rp + "\x00")}}),
			}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", rootPath: Sourced{rp, SourceOption43Sub201},
				warn: []string{`root-path from DHCP option 17 not usable: "nfs:/export/root": not an iSCSI root-path`}},
		},
		{
			name: "empty option 17 and empty 203",
			opts: with(map[uint8][]byte{optRootPath: {0}, optInitiatorIQN: []byte(" ")}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1",
				warn: []string{"root-path from DHCP option 17 not usable: empty", "initiator IQN from DHCP option 203 not usable: empty"}},
		},
		{
			name: "malformed option 43",
			opts: with(map[uint8][]byte{optVendorSpecific: []byte("PXEClient")}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", warn: []string{"option 43 (vendor-specific information) ignored"}},
		},
		{
			name: "no mask: classful",
			opts: with(map[uint8][]byte{optSubnetMask: nil}),
			want: want{addr: "10.0.0.50/8", gw: "10.0.0.1", warn: []string{"assumed /8"}},
		},
		{
			name: "option 121 overrides option 3",
			opts: with(map[uint8][]byte{optClasslessRoutes: encodeClasslessRoutes([]Route{
				{netip.MustParsePrefix("10.99.0.0/16"), ip("10.0.0.254")},
				{netip.MustParsePrefix("0.0.0.0/0"), ip("10.0.0.3")},
			})}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.3", routes: []Route{{netip.MustParsePrefix("10.99.0.0/16"), ip("10.0.0.254")}}},
		},
		{
			name: "option 121 without default: no gateway",
			opts: with(map[uint8][]byte{optClasslessRoutes: encodeClasslessRoutes([]Route{
				{netip.MustParsePrefix("10.99.0.0/16"), ip("10.0.0.254")},
			})}),
			want: want{addr: "10.0.0.50/24", routes: []Route{{netip.MustParsePrefix("10.99.0.0/16"), ip("10.0.0.254")}}},
		},
		{
			name: "on-link default route from 121",
			opts: with(map[uint8][]byte{optClasslessRoutes: {0, 0, 0, 0, 0}}),
			want: want{addr: "10.0.0.50/24", routes: []Route{{netip.MustParsePrefix("0.0.0.0/0"), ip("0.0.0.0")}}},
		},
		{
			name: "malformed 121 falls back to 3",
			opts: with(map[uint8][]byte{optClasslessRoutes: {40, 1}}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", warn: []string{"option 121 (classless static routes) ignored"}},
		},
		{
			name: "router 0.0.0.0 skipped",
			opts: with(map[uint8][]byte{optRouter: {0, 0, 0, 0, 10, 0, 0, 9}}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.9"},
		},
		{
			// iPXE's CHAP settings are refused by name, values unseen.
			name: "iPXE CHAP in option 175",
			opts: with(map[uint8][]byte{optIPXEEncap: vendor(vendorOptions{{190, []byte("alice")}, {191, []byte("Sup3rSecret")}, {193, []byte("R3verseSecret")}, {8, []byte{1}}})}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1",
				warn: []string{"option 175.190 (username), 175.191 (password), 175.193 (reverse-password) ignored: iPXE's CHAP credentials are not taken from DHCP, whose replies anything on the segment can read; give them on the kernel command line"}},
		},
		{
			// Other iPXE settings (175.8 keep-san) are no concern.
			name: "option 175 without CHAP",
			opts: with(map[uint8][]byte{optIPXEEncap: vendor(vendorOptions{{8, []byte{1}}})}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1"},
		},
		{
			name: "MTU and bad hostname",
			opts: with(map[uint8][]byte{optMTU: {0x05, 0x78}, optHostname: {'a', 1}}),
			want: want{addr: "10.0.0.50/24", gw: "10.0.0.1", mtu: 1400, warn: []string{"option 12 (host name) ignored"}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			link := Link{Name: "eth0", Index: 2}
			c, err := configFromACK(link, ack(t, tt.opts), AcceptISCSI)
			if err != nil {
				t.Fatalf("configFromACK() = %v", err)
			}
			if got := c.Address.String(); got != tt.want.addr {
				t.Errorf("Address = %s, want %s", got, tt.want.addr)
			}
			gw := ""
			if c.Gateway.IsValid() {
				gw = c.Gateway.String()
			}
			if gw != tt.want.gw {
				t.Errorf("Gateway = %q, want %q", gw, tt.want.gw)
			}
			if !cmp.Equal(c.Routes, tt.want.routes, cmp.Comparer(func(a, b Route) bool { return a == b })) {
				t.Errorf("Routes = %v, want %v", c.Routes, tt.want.routes)
			}
			if c.RootPath != tt.want.rootPath {
				t.Errorf("RootPath = %v, want %v", c.RootPath, tt.want.rootPath)
			}
			if c.InitiatorIQN != tt.want.iqn {
				t.Errorf("InitiatorIQN = %v, want %v", c.InitiatorIQN, tt.want.iqn)
			}
			if c.MTU != tt.want.mtu {
				t.Errorf("MTU = %d, want %d", c.MTU, tt.want.mtu)
			}
			if c.Server != ip("10.0.0.2") || c.LeaseTime != time.Hour || c.Origin != OriginDHCP {
				t.Errorf("Server, LeaseTime, Origin = %v, %v, %v, want 10.0.0.2, 1h, dhcp", c.Server, c.LeaseTime, c.Origin)
			}
			if len(c.Warnings) != len(tt.want.warn) {
				t.Fatalf("Warnings = %q, want %d matching %q", c.Warnings, len(tt.want.warn), tt.want.warn)
			}
			for i, w := range tt.want.warn {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("Warnings[%d] = %q, want it to contain %q", i, c.Warnings[i], w)
				}
				if strings.Contains(c.Warnings[i], "Secret") || strings.Contains(c.Warnings[i], "alice") {
					t.Errorf("Warnings[%d] = %q shows a credential", i, c.Warnings[i])
				}
			}
		})
	}
}

func TestConfigFromACKRejectsNoAddress(t *testing.T) {
	p := ack(t, nil)
	p.YourIPAddr = net.IPv4zero
	if c, err := configFromACK(Link{Name: "eth0"}, p, AcceptISCSI); err == nil {
		t.Fatalf("configFromACK(yiaddr 0.0.0.0) = %v, want error", c)
	}
}

// TestUseCommandLine checks that with DHCP the command line's host name
// and MTU replace the lease's and its DNS servers come first.
func TestUseCommandLine(t *testing.T) {
	ip := netip.MustParseAddr
	c, err := configFromACK(Link{Name: "eth0"}, ack(t, map[uint8][]byte{
		optSubnetMask: {255, 255, 255, 0}, optHostname: []byte("lease-name"), optMTU: {0x05, 0xdc},
		optDNS: {10, 0, 0, 53, 10, 0, 0, 54},
	}), AcceptISCSI)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "lease-name" || c.LeaseHostname != "lease-name" {
		t.Fatalf("lease Hostname, LeaseHostname = %q, %q", c.Hostname, c.LeaseHostname)
	}
	// Nothing from the command line: the lease's values stay.
	c0 := *c
	c0.useCommandLine(Options{}, slog.New(slog.DiscardHandler))
	if c0.Hostname != "lease-name" || c0.MTU != 1500 || len(c0.DNS) != 2 {
		t.Errorf("without command-line values: %q %d %v, want the lease's", c0.Hostname, c0.MTU, c0.DNS)
	}
	c.useCommandLine(Options{Hostname: "node7", MTU: 9000, DNS: []netip.Addr{ip("192.0.2.53"), ip("10.0.0.54")}}, slog.New(slog.DiscardHandler))
	if c.Hostname != "node7" || c.LeaseHostname != "lease-name" {
		t.Errorf("Hostname, LeaseHostname = %q, %q, want node7, lease-name", c.Hostname, c.LeaseHostname)
	}
	if c.MTU != 9000 {
		t.Errorf("MTU = %d, want 9000", c.MTU)
	}
	if want := []netip.Addr{ip("192.0.2.53"), ip("10.0.0.54"), ip("10.0.0.53")}; !slices.Equal(c.DNS, want) {
		t.Errorf("DNS = %v, want %v", c.DNS, want)
	}
}
