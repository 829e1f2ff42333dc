package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func TestParseCmdline(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []Arg
	}{
		{"", nil},
		{"  quiet  ", []Arg{{Key: "quiet", Raw: "quiet"}}},
		{"root=UUID=abc ro", []Arg{
			{Key: "root", Value: "UUID=abc", HasValue: true, Raw: "root=UUID=abc"},
			{Key: "ro", Raw: "ro"},
		}},
		{`splash="a b" x`, []Arg{
			{Key: "splash", Value: "a b", HasValue: true, Raw: `splash="a b"`},
			{Key: "x", Raw: "x"},
		}},
		{`"dyndbg=file x +p" y=`, []Arg{
			{Key: "dyndbg", Value: "file x +p", HasValue: true, Raw: `"dyndbg=file x +p"`},
			{Key: "y", Value: "", HasValue: true, Raw: "y="},
		}},
		{"a\tb\nc", []Arg{{Key: "a", Raw: "a"}, {Key: "b", Raw: "b"}, {Key: "c", Raw: "c"}}},
		{`open="never closed`, []Arg{{Key: "open", Value: "never closed", HasValue: true, Raw: `open="never closed`}}},
		{"=x", []Arg{{Key: "=x", Raw: "=x"}}},
		{"-- init arg", []Arg{{Key: "--", Raw: "--"}, {Key: "init", Raw: "init"}, {Key: "arg", Raw: "arg"}}},
	} {
		got := ParseCmdline(tt.in)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseCmdline(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{`root=UUID=x ro quiet`, `a="b c" "d=e f" -- g`, `x="`, "\t=\"\"=", `ip=10.0.0.2::10.0.0.1:255.255.255.0:h::none`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := ParseCmdline(s)
		for _, a := range args {
			if a.Raw == "" {
				t.Fatalf("ParseCmdline(%q): empty Raw in %+v", s, a)
			}
		}
		// Writing the arguments back and parsing again gives the same.
		again := ParseCmdline(JoinCmdline(args))
		if !cmp.Equal(args, again) {
			t.Fatalf("ParseCmdline(JoinCmdline(ParseCmdline(%q))) = %+v, want %+v", s, again, args)
		}
	})
}

// labInfo is the session of the QEMU lab: DHCP on virtio_net at 00:03.0.
func labInfo() *Info {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	return &Info{
		InitiatorName: "iqn.2025-01.org.lunboot:client",
		Target: Target{
			Addr: netip.MustParseAddrPort("10.0.2.2:3260"),
			Name: "iqn.2003-01.org.linux-iscsi.lab:disk1",
			LUN:  scsi.LUN{0, 1},
			TPGT: 1,
		},
		NIC: NIC{
			Name:       "eth0",
			MAC:        mac,
			Driver:     "virtio_net",
			PCI:        &PCIAddr{Bus: 0, Device: 3, Function: 0},
			Addr:       netip.MustParsePrefix("10.0.2.15/24"),
			Gateway:    netip.MustParseAddr("10.0.2.2"),
			DNS:        []netip.Addr{netip.MustParseAddr("10.0.2.3")},
			DHCPServer: netip.MustParseAddr("10.0.2.2"),
			Origin:     ibft.OriginDHCP,
		},
	}
}

func staticInfo() *Info {
	in := labInfo()
	in.NIC.Origin = ibft.OriginManual
	in.NIC.DHCPServer = netip.Addr{}
	in.NIC.Hostname = "client-1"
	in.NIC.DNS = append(in.NIC.DNS, netip.MustParseAddr("10.0.2.4"))
	return in
}

func chapInfo(mutual bool) *Info {
	in := labInfo()
	in.CHAP = &iscsi.CHAP{Username: "alice", Secret: "s3cret-s3cret"}
	if mutual {
		in.CHAP.TargetUsername, in.CHAP.TargetSecret = "tgt", "t4rget-secret"
	}
	return in
}

var (
	dracutLegacy   = Dialect{GeneratorDracut, NetLegacy}
	dracutNM       = Dialect{GeneratorDracut, NetNetworkManager}
	dracutNetworkd = Dialect{GeneratorDracut, NetNetworkd}
	debian         = Dialect{GeneratorInitramfsTools, NetKlibc}
)

func TestCmdlineGolden(t *testing.T) {
	const entry = "BOOT_IMAGE=/vmlinuz-6.1 root=UUID=1234 ro quiet"
	for _, tt := range []struct {
		name string
		info *Info
		d    Dialect
		mode Mode
		want string
	}{
		{"dracut dhcp", labInfo(), dracutLegacy, ModeCmdline,
			entry + " netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ip=dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{"dracut static", staticInfo(), dracutNM, ModeCmdline,
			entry + " netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ip=10.0.2.15::10.0.2.2:255.255.255.0:client-1::none:10.0.2.3:10.0.2.4 BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{"dracut mutual chap", chapInfo(true), dracutLegacy, ModeCmdline,
			entry + " netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client rd.iscsi.username=alice rd.iscsi.password=s3cret-s3cret rd.iscsi.in.username=tgt rd.iscsi.in.password=t4rget-secret ip=dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{"dracut ibft", labInfo(), dracutLegacy, ModeIBFT,
			entry + " rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client rd.iscsi.ibft=1 rd.neednet=1"},
		{"dracut ibft networkd", labInfo(), dracutNetworkd, ModeIBFT,
			entry + " rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ip=dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{"dracut both", labInfo(), dracutLegacy, ModeBoth,
			entry + " netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ip=dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{"dracut both chap stays off the cmdline", chapInfo(false), dracutLegacy, ModeBoth,
			entry + " rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client rd.iscsi.ibft=1 rd.neednet=1"},
		{"debian dhcp", labInfo(), debian, ModeCmdline,
			entry + " ip=dhcp BOOTIF=01-52-54-00-12-34-56 iscsi_initiator=iqn.2025-01.org.lunboot:client iscsi_target_name=iqn.2003-01.org.linux-iscsi.lab:disk1 iscsi_target_ip=10.0.2.2 iscsi_target_port=3260"},
		{"debian static", staticInfo(), debian, ModeCmdline,
			entry + " ip=10.0.2.15::10.0.2.2:255.255.255.0:client-1::off:10.0.2.3:10.0.2.4 BOOTIF=01-52-54-00-12-34-56 iscsi_initiator=iqn.2025-01.org.lunboot:client iscsi_target_name=iqn.2003-01.org.linux-iscsi.lab:disk1 iscsi_target_ip=10.0.2.2 iscsi_target_port=3260"},
		{"debian chap", chapInfo(true), debian, ModeCmdline,
			entry + " ip=dhcp BOOTIF=01-52-54-00-12-34-56 iscsi_initiator=iqn.2025-01.org.lunboot:client iscsi_target_name=iqn.2003-01.org.linux-iscsi.lab:disk1 iscsi_target_ip=10.0.2.2 iscsi_target_port=3260 iscsi_username=alice iscsi_password=s3cret-s3cret iscsi_in_username=tgt iscsi_in_password=t4rget-secret"},
		{"debian ibft static", staticInfo(), debian, ModeIBFT, entry + " iscsi_auto"},
		{"debian ibft dhcp", labInfo(), debian, ModeIBFT, entry + " iscsi_auto ip=dhcp BOOTIF=01-52-54-00-12-34-56"},
		{"debian both chap", chapInfo(false), debian, ModeBoth, entry + " iscsi_auto ip=dhcp BOOTIF=01-52-54-00-12-34-56"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Cmdline(entry, tt.info, tt.d, tt.mode)
			if err != nil {
				t.Fatalf("Cmdline() error: %v", err)
			}
			if got != tt.want {
				t.Errorf("Cmdline(%v, %v) =\n  %s\nwant\n  %s", tt.d, tt.mode, got, tt.want)
			}
		})
	}
}

// TestCmdlineHostnameAndParams checks the host name given on the command
// line under DHCP (ip= in the kernel form with only the host name, which
// the kernel documents as sent in the DHCP request), that a name learned
// from the lease leaves ip=dhcp alone, and rd.iscsi.param= passed on to
// dracut only.
func TestCmdlineHostnameAndParams(t *testing.T) {
	leased := labInfo()
	leased.NIC.Hostname = "node 7" // not a valid ip= field, and not needed
	for _, d := range []Dialect{dracutLegacy, debian} {
		got, err := Cmdline("ro", leased, d, ModeCmdline)
		if err != nil || !strings.Contains(got, " ip=dhcp ") {
			t.Errorf("Cmdline(%v) with a leased host name = %s, %v; want ip=dhcp", d, got, err)
		}
	}
	in := labInfo()
	in.NIC.Hostname, in.NIC.HostnameGiven = "node7", true
	in.ISCSIParams = []string{"node.session.timeo.replacement_timeout=30", "node.conn[0].timeo.noop_out_interval=0"}
	for _, tt := range []struct {
		d    Dialect
		mode Mode
		want string
	}{
		{dracutLegacy, ModeCmdline, "netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client " +
			"rd.iscsi.param=node.session.timeo.replacement_timeout=30 rd.iscsi.param=node.conn[0].timeo.noop_out_interval=0 " +
			"ip=::::node7::dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{dracutNetworkd, ModeIBFT, "rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client " +
			"rd.iscsi.param=node.session.timeo.replacement_timeout=30 rd.iscsi.param=node.conn[0].timeo.noop_out_interval=0 " +
			"ip=::::node7::dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1"},
		{debian, ModeCmdline, "ip=::::node7::dhcp BOOTIF=01-52-54-00-12-34-56 iscsi_initiator=iqn.2025-01.org.lunboot:client " +
			"iscsi_target_name=iqn.2003-01.org.linux-iscsi.lab:disk1 iscsi_target_ip=10.0.2.2 iscsi_target_port=3260"},
		{debian, ModeIBFT, "iscsi_auto ip=::::node7::dhcp BOOTIF=01-52-54-00-12-34-56"},
	} {
		got, err := Cmdline("ro", in, tt.d, tt.mode)
		if err != nil || got != "ro "+tt.want {
			t.Errorf("Cmdline(%v, %v) =\n  %s, %v\nwant\n  ro %s", tt.d, tt.mode, got, err, tt.want)
		}
	}
	for _, bad := range []struct{ host, param string }{{"node:7", ""}, {"node 7", ""}, {"", "a=$(reboot)"}, {"", "node.x=a*"}, {"", "=1"}} {
		in := labInfo()
		in.NIC.Hostname, in.NIC.HostnameGiven = bad.host, true
		if bad.param != "" {
			in.ISCSIParams = []string{bad.param}
		}
		if got, err := Cmdline("", in, dracutLegacy, ModeCmdline); !errors.Is(err, ErrDialect) {
			t.Errorf("Cmdline(host %q, param %q) = %q, %v; want ErrDialect", bad.host, bad.param, got, err)
		}
	}
	// A refused node parameter is named, its value (a CHAP secret here)
	// not shown.
	in = labInfo()
	in.ISCSIParams = []string{"node.session.auth.password=s3cret*"}
	if _, err := Cmdline("", in, dracutLegacy, ModeCmdline); !errors.Is(err, ErrDialect) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "node.session.auth.password=") {
		t.Errorf("Cmdline(param node.session.auth.password=s3cret*) error = %v; want ErrDialect naming the parameter without its value", err)
	}
}

func TestCmdlineVariants(t *testing.T) {
	in := labInfo()
	in.Target.Addr = netip.MustParseAddrPort("[2001:db8::1]:3261")
	in.Target.LUN = scsi.LUN{0x40, 0x01}
	in.Target.TPGT = 2
	got, err := Cmdline("", in, dracutLegacy, ModeCmdline)
	if err != nil || !strings.HasPrefix(got, "netroot=iscsi:[2001:db8::1]::3261:16385:iqn.") {
		t.Errorf("dracut IPv6/flat LUN: Cmdline() = %q, %v; want netroot=iscsi:[2001:db8::1]::3261:16385:…", got, err)
	}
	got, err = Cmdline("", in, debian, ModeCmdline)
	if err != nil || !strings.Contains(got, " iscsi_target_ip=2001:db8::1 iscsi_target_port=3261 iscsi_target_group=2") {
		t.Errorf("debian IPv6/TPGT: Cmdline() = %q, %v", got, err)
	}
	v6 := staticInfo()
	v6.NIC.Addr = netip.MustParsePrefix("2001:db8::10/64")
	v6.NIC.Gateway = netip.MustParseAddr("2001:db8::1")
	v6.NIC.DNS = nil
	got, err = Cmdline("", v6, dracutLegacy, ModeCmdline)
	if err != nil || !strings.Contains(got, " ip=[2001:db8::10]::[2001:db8::1]:64:client-1::none ") {
		t.Errorf("dracut static IPv6: Cmdline() = %q, %v", got, err)
	}
	if _, err := Cmdline("", v6, debian, ModeCmdline); !errors.Is(err, ErrDialect) {
		t.Errorf("debian static IPv6: err = %v, want ErrDialect", err)
	}
}

func TestCmdlineConflicts(t *testing.T) {
	entry := `BOOT_IMAGE=(hd0,gpt2)/vmlinuz root=UUID=1234 ro quiet splash="a b" ` +
		`ip=ens3:dhcp netroot=iscsi:@192.0.2.99::3260::iqn.old:t rd.iscsi.initiator=iqn.old:i ` +
		`rd.iscsi.firmware rd.iscsi.target.name=iqn.dead BOOTIF=01-aa-aa-aa-aa-aa-aa rd.bootif=0 ` +
		`iscsi_auto console=ttyS0 -- single "init arg"`
	got, err := Cmdline(entry, labInfo(), dracutLegacy, ModeCmdline)
	if err != nil {
		t.Fatal(err)
	}
	want := `BOOT_IMAGE=(hd0,gpt2)/vmlinuz root=UUID=1234 ro quiet splash="a b" iscsi_auto console=ttyS0 ` +
		`netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ` +
		`ip=dhcp BOOTIF=01-52-54-00-12-34-56 rd.bootif=1 rd.neednet=1 -- single "init arg"`
	if got != want {
		t.Errorf("Cmdline(dracut) =\n  %s\nwant\n  %s", got, want)
	}

	// Debian: the Debian keys go, dracut's stay (the initrd ignores them).
	got, err = Cmdline(entry, labInfo(), debian, ModeCmdline)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"ip=ens3:dhcp", "iscsi_auto", "BOOTIF=01-aa"} {
		if strings.Contains(got, gone) {
			t.Errorf("Cmdline(debian) = %q still has %q", got, gone)
		}
	}
	if !strings.HasSuffix(got, " -- single \"init arg\"") || !strings.Contains(got, `splash="a b"`) {
		t.Errorf("Cmdline(debian) = %q, want the entry's other arguments kept in place", got)
	}

	// "--=x" is a parameter, not the end of them (kernel/params.c
	// parse_args); a quoted "--" is the end.
	got, err = Cmdline(`ro --=x ip=ens3:dhcp "--" ip=init`, labInfo(), debian, ModeIBFT)
	if err != nil || got != `ro --=x iscsi_auto ip=dhcp BOOTIF=01-52-54-00-12-34-56 "--" ip=init` {
		t.Errorf("Cmdline(--=x) = %q, %v", got, err)
	}

	// An entry already in firmware mode stays in firmware mode under
	// ModeBoth (an installer's iBFT install), keeping root=.
	got, err = Cmdline("root=LABEL=r rd.iscsi.firmware=1 rd.iscsi.ibft=1", labInfo(), dracutNM, ModeBoth)
	if err != nil || got != "root=LABEL=r rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client rd.iscsi.ibft=1 rd.neednet=1" {
		t.Errorf("firmware entry under both: Cmdline() = %q, %v", got, err)
	}
}

func TestCmdlineErrors(t *testing.T) {
	spaced := chapInfo(false)
	spaced.CHAP.Secret = "has space"
	vlan := labInfo()
	vlan.NIC.VLAN = 10
	noMAC := labInfo()
	noMAC.NIC.MAC = nil
	for _, tt := range []struct {
		name string
		info *Info
		d    Dialect
		mode Mode
		want error
	}{
		{"unknown generator", labInfo(), Dialect{}, ModeCmdline, ErrDialect},
		{"secret with space", spaced, debian, ModeCmdline, ErrDialect},
		{"vlan with initramfs-tools", vlan, debian, ModeCmdline, ErrDialect},
		{"vlan with initramfs-tools, iBFT", vlan, debian, ModeIBFT, ErrDialect},
		{"no MAC", noMAC, debian, ModeCmdline, ErrInfo},
		{"unresolved mode", labInfo(), debian, ModeAuto, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Cmdline("root=/dev/sda1", tt.info, tt.d, tt.mode)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Cmdline() = %q, %v; want error %v", got, err, tt.want)
			}
			if strings.Contains(err.Error(), "has space") {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

// TestCmdlineHost: a root-path's host name reaches dracut as the name and
// initramfs-tools as the address.
func TestCmdlineHost(t *testing.T) {
	in := labInfo()
	in.Target.Host = "target.lab"
	got, err := Cmdline("", in, dracutLegacy, ModeCmdline)
	if err != nil || !strings.Contains(got, "netroot=iscsi:target.lab::3260:1:") {
		t.Errorf("dracut: Cmdline() = %q, %v; want netroot= with the host name", got, err)
	}
	got, err = Cmdline("", in, debian, ModeCmdline)
	if err != nil || !strings.Contains(got, "iscsi_target_ip=10.0.2.2 ") || strings.Contains(got, "target.lab") {
		t.Errorf("initramfs-tools: Cmdline() = %q, %v; want iscsi_target_ip= with the address", got, err)
	}
	in.Target.Host = "bad name"
	if _, err := Cmdline("", in, dracutLegacy, ModeCmdline); !errors.Is(err, ErrDialect) {
		t.Errorf("dracut with host %q: Cmdline() error = %v, want ErrDialect", in.Target.Host, err)
	}
}

// TestCmdlineVLAN: dracut is told the VLAN in its own words, the NIC named
// by MAC through ifname=; the iBFT route still works for firmware mode.
func TestCmdlineVLAN(t *testing.T) {
	vlan := labInfo()
	vlan.NIC.VLAN = 100
	static := labInfo()
	static.NIC.VLAN = 100
	static.NIC.Origin = ibft.OriginManual
	static.NIC.Addr = netip.MustParsePrefix("10.0.2.15/24")
	static.NIC.Gateway = netip.MustParseAddr("10.0.2.2")
	static.NIC.Hostname, static.NIC.HostnameGiven = "node7", true
	for _, tt := range []struct {
		name string
		info *Info
		d    Dialect
		mode Mode
		want string
	}{
		{"dhcp", vlan, dracutLegacy, ModeCmdline,
			"root=/dev/sda1 netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ifname=lunboot0:52:54:00:12:34:56 vlan=lunboot0.100:lunboot0 ip=lunboot0.100:dhcp rd.bootif=1 rd.neednet=1"},
		{"both is explicit", vlan, dracutLegacy, ModeBoth,
			"root=/dev/sda1 netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ifname=lunboot0:52:54:00:12:34:56 vlan=lunboot0.100:lunboot0 ip=lunboot0.100:dhcp rd.bootif=1 rd.neednet=1"},
		{"static", static, dracutLegacy, ModeCmdline,
			"root=/dev/sda1 netroot=iscsi:10.0.2.2::3260:1:iqn.2003-01.org.linux-iscsi.lab:disk1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ifname=lunboot0:52:54:00:12:34:56 vlan=lunboot0.100:lunboot0 ip=10.0.2.15::10.0.2.2:255.255.255.0:node7:lunboot0.100:none:10.0.2.3 rd.bootif=1 rd.neednet=1"},
		// Firmware mode: the target from the table, the network explicit,
		// since dracut 059's ibft_to_cmdline puts the address on the
		// parent, not on the VLAN.
		{"ibft", vlan, dracutLegacy, ModeIBFT,
			"root=/dev/sda1 rd.iscsi.firmware=1 rd.iscsi.initiator=iqn.2025-01.org.lunboot:client ifname=lunboot0:52:54:00:12:34:56 vlan=lunboot0.100:lunboot0 ip=lunboot0.100:dhcp rd.bootif=1 rd.neednet=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A stale vlan= in the entry is replaced.
			got, err := Cmdline("root=/dev/sda1 vlan=eth0.5:eth0", tt.info, tt.d, tt.mode)
			if err != nil || got != tt.want {
				t.Errorf("Cmdline() = %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
	if tab, err := vlan.Table(); err != nil || len(tab.NICs) != 1 || tab.NICs[0].VLAN != 100 {
		t.Errorf("Table() = %+v, %v; want the NIC record with VLAN 100", tab, err)
	}
	if _, err := Cmdline("root=/dev/sda1", vlan, debian, ModeCmdline); err == nil || !strings.Contains(err.Error(), "klibc's ipconfig has no VLANs") {
		t.Errorf("initramfs-tools with a VLAN: Cmdline() error = %v, want the reason", err)
	}
}

func TestCHAPMasked(t *testing.T) {
	in := chapInfo(true)
	c := in.CHAP
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("handoff", "info", in, "chap", c)
	for _, s := range []string{c.String(), c.LogValue().String(), fmt.Sprintf("%+v", in), fmt.Sprintf("%#v", *in), buf.String()} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "t4rget") {
			t.Errorf("CHAP text %q shows a secret", s)
		}
	}
}

func TestMaskCmdline(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"root=UUID=1 rd.iscsi.username=alice rd.iscsi.password=s3cret rd.iscsi.in.password=t4rget quiet",
			"root=UUID=1 rd.iscsi.username=alice rd.iscsi.password=*** rd.iscsi.in.password=*** quiet"},
		{"iscsi_password=s3cret iscsi_in_password=t4rget iscsi_username=alice",
			"iscsi_password=*** iscsi_in_password=*** iscsi_username=alice"},
		{"netroot=iscsi:alice:s3cret:tgt:t4rget@192.0.2.1::3260::iqn.x:y root=iscsi:u:s3cret@192.0.2.1::::iqn.x:y",
			"netroot=iscsi:alice:***:tgt:***@192.0.2.1::3260::iqn.x:y root=iscsi:u:***@192.0.2.1::::iqn.x:y"},
		{"netroot=iscsi:192.0.2.1::3260::iqn.x:y", "netroot=iscsi:192.0.2.1::3260::iqn.x:y"},
		{"rd.iscsi.param=node.session.auth.password=s3cret rd.iscsi.param=node.session.auth.password_in=t4rget rd.iscsi.param=node.session.timeo.replacement_timeout=30",
			"rd.iscsi.param=node.session.auth.password=*** rd.iscsi.param=node.session.auth.password_in=*** rd.iscsi.param=node.session.timeo.replacement_timeout=30"},
	} {
		if got := MaskCmdline(tt.in); got != tt.want {
			t.Errorf("MaskCmdline(%q) =\n  %q\nwant\n  %q", tt.in, got, tt.want)
		}
	}
	full, err := Cmdline("ro", chapInfo(true), debian, ModeCmdline)
	if err != nil {
		t.Fatal(err)
	}
	if m := MaskCmdline(full); strings.Contains(m, "s3cret") || strings.Contains(m, "t4rget") {
		t.Errorf("MaskCmdline(%q) = %q still shows a secret", full, m)
	}
}
