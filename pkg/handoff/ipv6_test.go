package handoff

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/ibft"
)

// ipv6Info is a boot over IPv6 as the lab's ipv6 scenario does it: the
// portal on a ULA, the NIC's address from DHCPv6 (origin 3) with the
// router advertisement's /64, the default router link-local.
func ipv6Info(origin ibft.Origin) *Info {
	in := labInfo()
	in.Target.Addr = netip.MustParseAddrPort("[fd6c:6200:15:7::1]:3260")
	in.NIC.Addr = netip.MustParsePrefix("fd6c:6200:15:7::57/64")
	in.NIC.Gateway = netip.MustParseAddr("fe80::1")
	in.NIC.DNS = []netip.Addr{netip.MustParseAddr("fd6c:6200:15:7::1")}
	in.NIC.DHCPServer = netip.Addr{}
	in.NIC.Origin = origin
	return in
}

func TestCmdlineIPv6(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   *Info
		d    Dialect
		mode Mode
		want []string // arguments that must be there
	}{
		{"dhcp6", ipv6Info(ibft.OriginDHCP), dracutLegacy, ModeCmdline,
			[]string{"netroot=iscsi:[fd6c:6200:15:7::1]::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1", "ip=dhcp6", "BOOTIF=01-52-54-00-12-34-56", "rd.neednet=1"}},
		{"slaac", ipv6Info(ibft.OriginRouterAdv), dracutLegacy, ModeCmdline,
			[]string{"netroot=iscsi:[fd6c:6200:15:7::1]::3260:1:", "ip=auto6", "BOOTIF=01-52-54-00-12-34-56"}},
		{"static", ipv6Info(ibft.OriginManual), dracutLegacy, ModeCmdline,
			[]string{"ip=[fd6c:6200:15:7::57]::[fe80::1]:64:::none:[fd6c:6200:15:7::1]"}},
		{"slaac on VLAN 100", vlanInfo(ipv6Info(ibft.OriginRouterAdv), 100), dracutLegacy, ModeCmdline,
			[]string{"ifname=lunboot0:52:54:00:12:34:56", "vlan=lunboot0.100:lunboot0", "ip=lunboot0.100:auto6"}},
		{"dhcp6 on VLAN 100", vlanInfo(ipv6Info(ibft.OriginDHCP), 100), dracutLegacy, ModeCmdline,
			[]string{"vlan=lunboot0.100:lunboot0", "ip=lunboot0.100:dhcp6"}},
		{"ibft", ipv6Info(ibft.OriginDHCP), dracutLegacy, ModeIBFT,
			[]string{"rd.iscsi.firmware=1", "rd.iscsi.ibft=1"}},
	} {
		got, err := Cmdline("ro", tt.in, tt.d, tt.mode)
		if err != nil {
			t.Errorf("%s: Cmdline() = %v", tt.name, err)
			continue
		}
		args := strings.Fields(got)
		for _, w := range tt.want {
			found := false
			for _, a := range args {
				if a == w || strings.HasSuffix(w, ":") && strings.HasPrefix(a, w) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: Cmdline() = %q, want %q in it", tt.name, got, w)
			}
		}
		if strings.Contains(got, "ip=dhcp ") || strings.HasSuffix(got, "ip=dhcp") {
			t.Errorf("%s: Cmdline() = %q asks for DHCPv4", tt.name, got)
		}
	}
}

// TestCmdlineIPv6InitramfsTools: initramfs-tools is refused in both forms,
// with the reason, before anything is kexec'd.
func TestCmdlineIPv6InitramfsTools(t *testing.T) {
	for _, mode := range []Mode{ModeCmdline, ModeIBFT, ModeBoth} {
		for _, origin := range []ibft.Origin{ibft.OriginDHCP, ibft.OriginRouterAdv, ibft.OriginManual} {
			got, err := Cmdline("ro", ipv6Info(origin), debian, mode)
			if !errors.Is(err, ErrDialect) || !errors.Is(err, ErrInitramfsToolsIPv6) {
				t.Errorf("Cmdline(debian, %v, origin %d) = %q, %v; want ErrInitramfsToolsIPv6", mode, origin, got, err)
				continue
			}
			for _, why := range []string{"klibc ipconfig", "iscsistart -N", "IPv4"} {
				if !strings.Contains(err.Error(), why) {
					t.Errorf("error %q does not say %q", err, why)
				}
			}
		}
	}
}

// TestInfoTableIPv6 encodes the iBFT of an IPv6 boot and checks the NIC
// fields at their byte offsets (iBFT 1.03 §1.4.4.3, iscsi_ibft.c struct
// ibft_nic) and after decoding: the address as is (not IPv4-mapped), the
// prefix length of the link (64, not a netmask), origin 3 for DHCPv6 and 4
// for SLAAC, the global flag set for a global address and clear for a
// link-local one (what edk2 issue 9572 reports EDK2 getting wrong).
func TestInfoTableIPv6(t *testing.T) {
	for _, tt := range []struct {
		origin ibft.Origin
		addr   string
		global bool
	}{
		{ibft.OriginDHCP, "fd6c:6200:15:7::57/64", true},
		{ibft.OriginRouterAdv, "fd6c:6200:15:7:5054:ff:fe12:3456/64", true},
		{ibft.OriginRouterAdv, "fe80::5054:ff:fe12:3456/64", false},
	} {
		in := ipv6Info(tt.origin)
		in.NIC.Addr = netip.MustParsePrefix(tt.addr)
		tbl, err := in.Table()
		if err != nil {
			t.Fatal(err)
		}
		b, err := tbl.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		nicOff := int(binary.LittleEndian.Uint16(b[48+10:]))
		nic := b[nicOff:]
		wantFlags := byte(ibft.FlagValid | ibft.FlagBoot)
		if tt.global {
			wantFlags |= byte(ibft.FlagGlobal)
		}
		a16 := in.NIC.Addr.Addr().As16()
		if nic[0] != 3 || nic[5] != wantFlags || string(nic[6:22]) != string(a16[:]) || nic[22] != 64 || nic[23] != byte(tt.origin) {
			t.Errorf("%s: NIC id %d flags %#x ip % x prefix %d origin %d; want 3, %#x, % x, 64, %d",
				tt.addr, nic[0], nic[5], nic[6:22], nic[22], nic[23], wantFlags, a16, tt.origin)
		}
		gw := netip.MustParseAddr("fe80::1").As16()
		if string(nic[24:40]) != string(gw[:]) || string(nic[72:88]) != string(make([]byte, 16)) {
			t.Errorf("%s: gateway % x, DHCP server % x; want fe80::1 and unset", tt.addr, nic[24:40], nic[72:88])
		}
		tgtOff := int(binary.LittleEndian.Uint16(b[48+12:]))
		ta := in.Target.Addr.Addr().As16()
		if string(b[tgtOff+6:tgtOff+22]) != string(ta[:]) {
			t.Errorf("%s: target address % x, want % x", tt.addr, b[tgtOff+6:tgtOff+22], ta)
		}

		var back ibft.Table
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: decode: %v", tt.addr, err)
		}
		n := back.NICs[0]
		if n.IP != in.NIC.Addr || n.Origin != tt.origin || n.Gateway != in.NIC.Gateway || n.Flags != ibft.Flags(wantFlags) ||
			back.Targets[0].Addr != in.Target.Addr {
			t.Errorf("%s: decoded NIC %+v target %v; want %v origin %d flags %#x target %v", tt.addr, n, back.Targets[0].Addr, in.NIC.Addr, tt.origin, wantFlags, in.Target.Addr)
		}
	}
}

// vlanInfo is in with the boot NIC on VLAN id.
func vlanInfo(in *Info, id uint16) *Info {
	in.NIC.VLAN = id
	return in
}
