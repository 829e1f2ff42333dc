package bootcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/sam"
)

func mustCmdline(t *testing.T, s string) Source {
	t.Helper()
	src, err := ParseCmdline(s)
	if err != nil {
		t.Fatalf("ParseCmdline(%q): %v", s, err)
	}
	return src
}

// lease is a typical DHCP result on eth0.
func lease() Network {
	return Network{
		Interface: "eth0", MAC: mac1, Lease: true,
		Address:  netip.MustParsePrefix("192.0.2.50/24"),
		Router:   netip.MustParseAddr("192.0.2.254"),
		DNS:      []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Hostname: "node7",
		RootPath: "iscsi:192.0.2.1:::1:" + tgt, RootPathOption: "option 17",
		InitiatorName: "iqn.2001-04.com.example:node7", InitiatorNameOption: "option 203",
	}
}

// firmware is a typical iBFT from a NIC boot ROM.
func firmware() Firmware {
	return Firmware{
		Initiator:  "iqn.2001-04.com.example:rom",
		MAC:        mac2,
		Address:    netip.MustParsePrefix("198.51.100.7/24"),
		Gateway:    netip.MustParseAddr("198.51.100.1"),
		TargetAddr: netip.MustParseAddr("198.51.100.2"), TargetPort: 3260,
		LUN: sam.LUN{0, 2}, TargetName: tgt2,
		CHAP: iscsi.CHAP{Username: "rom", Secret: "RomSecret123"},
	}
}

func TestMergePrecedence(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cmdline  string
		network  Network
		noIBFT   bool
		fw       func(*Firmware)
		target   string
		tOrigin  string
		ini      string
		iOrigin  string
		chap     string
		mode     IPMode
		address  string
		aOrigin  string
		warnings []string
	}{
		{name: "DHCP over iBFT", network: lease(),
			target: "iscsi:192.0.2.1::3260:1:" + tgt, tOrigin: "DHCP option 17",
			ini: "iqn.2001-04.com.example:node7", iOrigin: "DHCP option 203", chap: "none",
			mode: IPDHCP, address: "192.0.2.50/24", aOrigin: "DHCP lease address, option 1",
			warnings: []string{"iBFT CHAP credentials not used"}},
		{name: "cmdline over DHCP", cmdline: "netroot=iscsi:192.0.2.9::::" + tgt2 + " rd.iscsi.initiator=iqn.2001-04.com.example:cmd rd.iscsi.username=u rd.iscsi.password=p",
			network: lease(),
			target:  "iscsi:192.0.2.9::3260:0:" + tgt2, tOrigin: "kernel cmdline netroot",
			ini: "iqn.2001-04.com.example:cmd", iOrigin: "kernel cmdline rd.iscsi.initiator", chap: `one-way user "u"`,
			mode: IPDHCP, address: "192.0.2.50/24", aOrigin: "DHCP lease address, option 1"},
		{name: "iBFT when DHCP has nothing", network: Network{Interface: "eth0", MAC: mac1, Lease: true, Address: netip.MustParsePrefix("192.0.2.50/24")},
			target: "iscsi:198.51.100.2::3260:2:" + tgt2, tOrigin: "iBFT target",
			ini: "iqn.2001-04.com.example:rom", iOrigin: "iBFT initiator", chap: `one-way user "rom"`,
			mode: IPDHCP, address: "192.0.2.50/24", aOrigin: "DHCP lease address, option 1"},
		{name: "iBFT preferred", cmdline: "rd.iscsi.firmware=1", network: Network{Interface: "eth1", MAC: mac2},
			target: "iscsi:198.51.100.2::3260:2:" + tgt2, tOrigin: "iBFT target",
			ini: "iqn.2001-04.com.example:rom", iOrigin: "iBFT initiator", chap: `one-way user "rom"`,
			mode: IPStatic, address: "198.51.100.7/24", aOrigin: "iBFT NIC"},
		{name: "iBFT preferred over a lease", cmdline: "lunboot.ibft=prefer", network: lease(),
			target: "iscsi:198.51.100.2::3260:2:" + tgt2, tOrigin: "iBFT target",
			ini: "iqn.2001-04.com.example:rom", iOrigin: "iBFT initiator", chap: `one-way user "rom"`,
			mode: IPStatic, address: "198.51.100.7/24", aOrigin: "iBFT NIC"},
		{name: "iBFT ignored", cmdline: "lunboot.ibft=ignore", network: Network{Interface: "eth0", MAC: mac1, Lease: true, RootPath: "iscsi:192.0.2.1::::" + tgt},
			target: "iscsi:192.0.2.1::3260:0:" + tgt, tOrigin: "DHCP option 17",
			ini: "iqn.2026-11.org.lunboot:525400123456", iOrigin: "default (derived from MAC 52:54:00:12:34:56)", chap: "none",
			mode: IPDHCP, aOrigin: "default", warnings: []string{"firmware iBFT ignored"}},
		{name: "cmdline CHAP goes with the iBFT target", cmdline: "rd.iscsi.username=u rd.iscsi.password=p", network: Network{Interface: "eth0", MAC: mac1, Lease: true},
			target: "iscsi:198.51.100.2::3260:2:" + tgt2, tOrigin: "iBFT target",
			ini: "iqn.2001-04.com.example:rom", iOrigin: "iBFT initiator", chap: `one-way user "u"`, mode: IPDHCP, aOrigin: "default"},
		{name: "static cmdline, default initiator from the link", cmdline: "ip=192.0.2.10::192.0.2.254:24::eth0:off netroot=iscsi:192.0.2.1::::" + tgt,
			network: Network{Interface: "eth0", MAC: mac1}, noIBFT: true,
			target: "iscsi:192.0.2.1::3260:0:" + tgt, tOrigin: "kernel cmdline netroot",
			ini: "iqn.2026-11.org.lunboot:525400123456", iOrigin: "default (derived from MAC 52:54:00:12:34:56)", chap: "none",
			mode: IPStatic, address: "192.0.2.10/24", aOrigin: "kernel cmdline ip"},
		{name: "default initiator from BOOTIF before the network is up", cmdline: "BOOTIF=01-52-54-00-ab-cd-ef netroot=iscsi:192.0.2.1::::" + tgt, noIBFT: true,
			target: "iscsi:192.0.2.1::3260:0:" + tgt, tOrigin: "kernel cmdline netroot",
			ini: "iqn.2026-11.org.lunboot:525400abcdef", iOrigin: "default (derived from MAC 52:54:00:ab:cd:ef)", chap: "none", mode: IPDHCP, aOrigin: "default"},
		{name: "broken DHCP root-path shadowed by the cmdline", cmdline: "netroot=iscsi:192.0.2.1::::" + tgt,
			network: Network{Interface: "eth0", MAC: mac1, Lease: true, RootPath: "iscsi:192.0.2.1:::zz:" + tgt}, noIBFT: true,
			target: "iscsi:192.0.2.1::3260:0:" + tgt, tOrigin: "kernel cmdline netroot",
			ini: "iqn.2026-11.org.lunboot:525400123456", iOrigin: "default (derived from MAC 52:54:00:12:34:56)", chap: "none", mode: IPDHCP, aOrigin: "default",
			warnings: []string{"target from DHCP option 17 not used"}},
		{name: "non-iSCSI DHCP root-path", network: Network{Interface: "eth0", MAC: mac1, Lease: true, RootPath: "/srv/nfs/node7"},
			target: "iscsi:198.51.100.2::3260:2:" + tgt2, tOrigin: "iBFT target",
			ini: "iqn.2001-04.com.example:rom", iOrigin: "iBFT initiator", chap: `one-way user "rom"`, mode: IPDHCP, aOrigin: "default",
			warnings: []string{`root-path "/srv/nfs/node7" is not iSCSI`}},
	} {
		cmdline := mustCmdline(t, tc.cmdline)
		var fwSrc Source
		if !tc.noIBFT {
			fwSrc = firmware().Source()
		}
		c, err := Merge(cmdline, tc.network.Source(), fwSrc)
		if err != nil {
			t.Errorf("%s: Merge = %v", tc.name, err)
			continue
		}
		for _, x := range []struct{ what, got, want string }{
			{"target", c.Target.String(), tc.target},
			{"target origin", c.Origin(FieldTarget).String(), tc.tOrigin},
			{"initiator", c.Initiator, tc.ini},
			{"initiator origin", c.Origin(FieldInitiator).String(), tc.iOrigin},
			{"chap", c.CHAP.String(), tc.chap},
			{"ip mode", c.IP.Mode.String(), tc.mode.String()},
			{"address", addrString(c.IP.Address), tc.address},
			{"address origin", c.Origin(FieldAddress).String(), tc.aOrigin},
		} {
			if x.got != x.want {
				t.Errorf("%s: Merge %s = %q, want %q", tc.name, x.what, x.got, x.want)
			}
		}
		for _, w := range tc.warnings {
			if !slices.ContainsFunc(c.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
				t.Errorf("%s: Merge warnings = %q, want one containing %q", tc.name, c.Warnings, w)
			}
		}
	}
}

func addrString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func TestMergeDefaults(t *testing.T) {
	c := Resolve(Source{}, Source{}, Source{})
	for _, x := range []struct {
		f    Field
		got  any
		want any
	}{
		{FieldIPMode, c.IP.Mode, IPDHCP},
		{FieldDHCPTimeout, c.DHCPTimeout, 30 * time.Second},
		{FieldCarrierTimeout, c.CarrierTimeout, 10 * time.Second},
		{FieldRetries, c.Retries, 3},
		{FieldTimeout, c.Timeout, time.Duration(0)},
		{FieldRescue, c.Rescue, true},
		{FieldEntry, c.Entry, ""},
		{FieldMenuTimeout, c.MenuTimeout, time.Duration(0)},
		{FieldHandoff, c.Handoff, handoff.ModeAuto},
		{FieldForce, c.Force, false},
		{FieldHeaderDigest, c.HeaderDigest, DigestNone},
		{FieldDataDigest, c.DataDigest, DigestNone},
		{FieldLogLevel, c.LogLevel, slog.LevelInfo},
		{FieldAppend, c.Append, ""},
		{FieldIBFT, c.IBFT, IBFTFallback},
		{FieldMTU, c.IP.MTU, 0},
	} {
		if x.got != x.want {
			t.Errorf("Resolve() %s = %v, want %v", x.f, x.got, x.want)
		}
		if k := c.Origin(x.f).Kind; k != Default {
			t.Errorf("Resolve() %s origin = %v, want default", x.f, c.Origin(x.f))
		}
	}
	// Command-line values replace every default.
	c = Resolve(mustCmdline(t, "lunboot.dhcp_timeout=5 lunboot.carrier_timeout=1 lunboot.retries=0 lunboot.timeout=2m lunboot.rescue=0 "+
		"lunboot.entry=1 lunboot.menu_timeout=3 lunboot.handoff=ibft lunboot.force=1 lunboot.header_digest=prefer lunboot.data_digest=crc32c "+
		"lunboot.loglevel=error lunboot.append=quiet lunboot.ibft=prefer ip=eth0:dhcp:9000"), Source{}, Source{})
	if got := fmt.Sprintln(c.DHCPTimeout, c.CarrierTimeout, c.Retries, c.Timeout, c.Rescue, c.Entry, c.MenuTimeout, c.Handoff, c.Force,
		c.HeaderDigest, c.DataDigest, c.LogLevel, c.Append, c.IBFT, c.IP.MTU); got != "5s 1s 0 2m0s false 1 3s ibft true prefer crc32c ERROR quiet prefer 9000\n" {
		t.Errorf("Resolve(cmdline) = %s", got)
	}
	if o := c.Origin(FieldRetries); o != (Origin{Cmdline, "lunboot.retries"}) {
		t.Errorf("Resolve(cmdline) retries origin = %v", o)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name             string
		cmdline          string
		network          Network
		fw               *Firmware
		want             []string
		wantTarget, none bool
	}{
		{name: "nothing anywhere", want: []string{"no iSCSI target", "not DHCP: no lease yet", "no firmware iBFT was found", "no initiator name"}},
		{name: "lease without root-path", network: Network{Interface: "eth0", MAC: mac1, Lease: true},
			want: []string{"no iSCSI target", "the DHCP lease (option 17, option 43 sub-option 201)"}},
		{name: "static, no target", cmdline: "ip=192.0.2.10::192.0.2.254:24::eth0:off", network: Network{Interface: "eth0", MAC: mac1},
			want: []string{"not DHCP: the address is static (kernel cmdline ip)"}},
		{name: "iBFT without target", network: Network{MAC: mac1, Lease: true}, fw: &Firmware{Initiator: "iqn.2001-04.com.example:x"},
			want: []string{"the firmware iBFT (it has no target)"}},
		{name: "iBFT ignored", cmdline: "lunboot.ibft=ignore", network: Network{MAC: mac1, Lease: true}, fw: &Firmware{TargetAddr: netip.MustParseAddr("192.0.2.1"), TargetName: tgt},
			want: []string{"not the iBFT: lunboot.ibft=ignore"}},
		{name: "broken DHCP root-path", network: Network{MAC: mac1, Lease: true, RootPath: "iscsi:192.0.2.1:::12345:" + tgt},
			want: []string{`target from DHCP option 17: root-path "iscsi:192.0.2.1:::12345:` + tgt + `": LUN "12345": group "12345" has more than 4 hex digits`}},
		{name: "broken DHCP root-path beats a good iBFT", network: Network{MAC: mac1, Lease: true, RootPath: "iscsi:192.0.2.1:::12345:" + tgt},
			fw: &Firmware{TargetAddr: netip.MustParseAddr("192.0.2.1"), TargetName: tgt}, want: []string{"target from DHCP option 17"}},
		{name: "broken DHCP initiator", network: Network{MAC: mac1, Lease: true, RootPath: "iscsi:192.0.2.1::::" + tgt, InitiatorName: "node7", InitiatorNameOption: "option 43.203"},
			want: []string{`initiator from DHCP option 43.203: initiator name "node7"`}},
		{name: "broken iBFT CHAP", network: Network{MAC: mac1, Lease: true},
			fw:   &Firmware{TargetAddr: netip.MustParseAddr("192.0.2.1"), TargetName: tgt, CHAP: iscsi.CHAP{TargetUsername: "x", TargetSecret: "y"}},
			want: []string{"chap from iBFT target CHAP", "also needs one-way"}},
		{name: "iBFT target without address", network: Network{MAC: mac1, Lease: true}, fw: &Firmware{TargetName: tgt},
			want: []string{"has no IP address"}},
		{name: "complete", cmdline: "netroot=iscsi:192.0.2.1::::" + tgt, network: Network{MAC: mac1}, none: true},
	} {
		var fw Source
		if tc.fw != nil {
			fw = tc.fw.Source()
		}
		_, err := Merge(mustCmdline(t, tc.cmdline), tc.network.Source(), fw)
		if tc.none {
			if err != nil {
				t.Errorf("%s: Merge = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Merge = nil, want an error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Merge error = %q, want it to contain %q", tc.name, err, w)
			}
		}
	}
}

func TestNetworkSource(t *testing.T) {
	s := Network{Interface: "eth0", MAC: mac1, Lease: true, RootPath: "ISCSI:192.0.2.1::::IQN.2001-04.COM.EXAMPLE:DISK\x00",
		InitiatorName: "IQN.2001-04.com.example:Node\x00", InitiatorNameOption: "option 43.203"}.Source()
	// The target name's case is kept (pkg/rootpath setTarget).
	if s.Kind != DHCP || s.Target.Err != nil || s.Target.Value.Target != "IQN.2001-04.COM.EXAMPLE:DISK" || s.Target.Origin.String() != "DHCP option 17" {
		t.Errorf("Network.Source() target = %+v", s.Target)
	}
	if s.Initiator.Value != "iqn.2001-04.com.example:node" || s.Initiator.Origin.String() != "DHCP option 43.203" {
		t.Errorf("Network.Source() initiator = %+v", s.Initiator)
	}
	c := Resolve(Source{}, s, Source{})
	if len(c.Warnings) != 2 { // scheme case, initiator case
		t.Errorf("Resolve warnings = %q, want 2", c.Warnings)
	}
	static := Network{Interface: "eth0", MAC: mac1}.Source()
	if static.Kind != 0 || static.IPMode.IsSet() || static.InterfaceMAC.Origin.Kind != Detected {
		t.Errorf("static Network.Source() = %+v", static)
	}
}

func TestFirmwareSource(t *testing.T) {
	s := Firmware{MAC: mac2, DHCP: true, VLAN: 100, TargetAddr: netip.MustParseAddr("::ffff:192.0.2.1"), TargetPort: 0, TargetName: tgt,
		Address: netip.MustParsePrefix("::ffff:192.0.2.7/120"), DNS: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.53")}}.Source()
	if got := fmt.Sprint(s.DNS.Value); got != "[192.0.2.53]" {
		t.Errorf("Firmware.Source() DNS = %s, want [192.0.2.53]", got)
	}
	if st := (Firmware{Address: netip.MustParsePrefix("::ffff:192.0.2.7/120")}).Source(); st.Address.Value.String() != "192.0.2.7/24" {
		t.Errorf("Firmware.Source() address = %v, want 192.0.2.7/24", st.Address.Value)
	}
	if s.IPMode.Value != IPDHCP || s.Address.IsSet() {
		t.Errorf("Firmware{DHCP}.Source() ip = %+v %+v", s.IPMode, s.Address)
	}
	if s.Target.Err != nil || s.Target.Value.Portal() != "192.0.2.1:3260" {
		t.Errorf("Firmware.Source() target = %+v", s.Target)
	}
	if len(s.Warnings) != 0 || s.VLAN.Value != (VLAN{ID: 100}) || s.VLAN.Origin != (Origin{IBFT, "NIC"}) || s.VLAN.Err != nil {
		t.Errorf("Firmware.Source() VLAN = %+v, warnings %q; want VLAN 100 from the iBFT NIC", s.VLAN, s.Warnings)
	}
	if bad := (Firmware{MAC: mac2, VLAN: 4095}).Source(); bad.VLAN.Err == nil || !strings.Contains(bad.VLAN.Err.Error(), "4095") {
		t.Errorf("Firmware{VLAN: 4095}.Source() VLAN error = %v, want one naming 4095", bad.VLAN.Err)
	}
	if bad := (Firmware{TargetAddr: netip.MustParseAddr("192.0.2.1"), TargetName: "disk"}).Source(); bad.Target.Err == nil {
		t.Errorf("Firmware with target name %q: no error", "disk")
	}
}

func TestDefaultInitiatorName(t *testing.T) {
	for _, tc := range []struct {
		mac  net.HardwareAddr
		want string
	}{
		{mac1, "iqn.2026-11.org.lunboot:525400123456"},
		{net.HardwareAddr{0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF}, "iqn.2026-11.org.lunboot:aabbccddeeff"},
		{nil, ""},
	} {
		got := DefaultInitiatorName(tc.mac)
		if got != tc.want {
			t.Errorf("DefaultInitiatorName(%v) = %q, want %q", tc.mac, got, tc.want)
		}
		if got != "" {
			if _, err := rootpathNormalize(got); err != nil {
				t.Errorf("DefaultInitiatorName(%v) = %q is not a valid iSCSI name: %v", tc.mac, got, err)
			}
		}
	}
	// 20-byte IPoIB hardware addresses still give a valid name.
	ib := make(net.HardwareAddr, 20)
	if _, err := rootpathNormalize(DefaultInitiatorName(ib)); err != nil {
		t.Errorf("DefaultInitiatorName(20 bytes): %v", err)
	}
}

// TestSecretsNeverShown formats every type that can hold a password in
// every way the boot flow might, and greps for the passwords.
func TestSecretsNeverShown(t *testing.T) {
	const (
		pw   = "CmdlineSecret1"
		rpw  = "TargetSecret2"
		fwpw = "RomSecret123"
		dpw  = "DracutSecret3"
	)
	cmdlines := []string{
		"rd.iscsi.username=alice rd.iscsi.password=" + pw + " rd.iscsi.in.username=san rd.iscsi.in.password=" + rpw + " netroot=iscsi:192.0.2.1::::" + tgt,
		"netroot=iscsi:alice:" + dpw + ":san:" + rpw + "@192.0.2.1::::" + tgt,
		"lunboot.target=iscsi://alice%" + dpw + "@192.0.2.1/" + tgt + "/0?target_user=san&target_password=" + rpw,
		"iscsi_username=alice iscsi_password=" + pw + " iscsi_target_name=" + tgt + " iscsi_target_ip=192.0.2.1",
		"rd.iscsi.password=" + pw, // error: no user name
		"rd.iscsi.username=a rd.iscsi.password=" + pw + " rd.iscsi.password=" + dpw,               // error: conflict
		"netroot=iscsi:alice:" + dpw + "@192.0.2.1:::zz:" + tgt,                                   // error in the root-path
		"netroot=iscsi:alice:" + dpw + "@192.0.2.1::::" + tgt + " rd.iscsi.username=bob",          // error: conflict
		"netroot=iscsi:alice:" + dpw + "@192.0.2.1::::" + tgt + " root=iscsi:192.0.2.2::::" + tgt, // error: two targets
		"lunboot.target=iscsi://alice%" + dpw + "@192.0.2.1/" + tgt + "/x",                        // error in the URL
		"rd.iscsi.in.username=san rd.iscsi.in.password=" + rpw,                                    // error: reverse only
		"lunboot.target=iscsi:alice:" + dpw + "@192.0.2.1::::" + tgt + " netroot=iscsi:alice:" + dpw + "@192.0.2.1::::" + tgt2,
	}
	var outs []string
	add := func(vs ...any) {
		for _, v := range vs {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
				outs = append(outs, fmt.Sprintf(verb, v))
			}
			js, err := json.Marshal(v)
			if err == nil {
				outs = append(outs, string(js))
			}
			var buf bytes.Buffer
			slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "v", v)
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "v", v)
			outs = append(outs, buf.String())
		}
	}
	for _, cl := range cmdlines {
		src, err := ParseCmdline(cl)
		if err != nil {
			add(err, err.Error())
			continue
		}
		fw := firmware()
		for _, srcs := range [][3]Source{
			{src, lease().Source(), fw.Source()},
			{src, Network{MAC: mac1, Lease: true}.Source(), fw.Source()},
			{Source{}, Network{MAC: mac1, Lease: true}.Source(), fw.Source()},
		} {
			c, err := Merge(srcs[0], srcs[1], srcs[2])
			add(src, srcs[2], c, &c, c.CHAP, c.Target, c.Report(), c.Warnings, c.LogValue())
			if err != nil {
				add(err)
			}
		}
	}
	for _, out := range outs {
		for _, s := range []string{pw, rpw, fwpw, dpw} {
			if strings.Contains(out, s) {
				t.Errorf("output shows secret %q: %s", s, out)
			}
		}
	}
	if len(outs) < 100 {
		t.Fatalf("only %d outputs checked", len(outs))
	}
	// The secrets are really there to leak: the parsed values hold them.
	src := mustCmdline(t, cmdlines[0])
	if src.CHAP.Value.Secret != pw || src.CHAP.Value.TargetSecret != rpw {
		t.Fatalf("ParseCmdline(%q) CHAP = %q/%q", cmdlines[0], src.CHAP.Value.Secret, src.CHAP.Value.TargetSecret)
	}
	var ce *CmdlineError
	if _, err := ParseCmdline(cmdlines[4]); !errors.As(err, &ce) {
		t.Fatalf("ParseCmdline(%q) = %v, want a *CmdlineError", cmdlines[4], err)
	}
}

func rootpathNormalize(s string) (string, error) { return rootpath.NormalizeName(s) }

// TestDocExamples parses the command lines docs/configuration.md shows,
// so the documentation cannot drift from the parser.
func TestDocExamples(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		report  []string
	}{
		{"", nil},
		{"netroot=iscsi:192.0.2.1:::1a:iqn.2001-04.com.example:node7 rd.iscsi.initiator=iqn.2001-04.com.example:node7",
			[]string{"target iscsi:192.0.2.1::3260:1a:iqn.2001-04.com.example:node7 (portal 192.0.2.1:3260, LUN 1a = Linux LUN 26) (from kernel cmdline netroot)"}},
		{"BOOTIF=01-52-54-00-12-34-56 ip=192.0.2.57::192.0.2.254:24:node7::off nameserver=192.0.2.53 " +
			"netroot=iscsi:192.0.2.1::::iqn.2001-04.com.example:node7 " +
			"rd.iscsi.username=node7 rd.iscsi.password=use-a-long-random-secret lunboot.rescue=0 lunboot.retries=forever",
			[]string{
				"initiator iqn.2026-11.org.lunboot:525400123456 (derived from MAC 52:54:00:12:34:56)",
				`chap one-way user "node7" (from kernel cmdline rd.iscsi.username)`,
				"interface 52:54:00:12:34:56 (from kernel cmdline BOOTIF)",
				"ip static 192.0.2.57/24 gateway 192.0.2.254 dns 192.0.2.53 hostname node7 (from kernel cmdline ip)",
				"network and login retried forever, no overall timeout, dhcp timeout 30s, carrier timeout 10s",
			}},
		{"lunboot.retries=0 lunboot.timeout=10m", []string{"network and login not retried, overall timeout 10m0s, dhcp timeout 30s", "chap none (default)", "interface any (default)"}},
		{"lunboot.retries=1 lunboot.iface=eth1", []string{"network and login retried once, no overall timeout", "interface eth1 (from kernel cmdline lunboot.iface)"}},
		{"rd.iscsi.firmware=1 lunboot.entry=1", []string{`handoff auto, force false, rescue true, entry "1", menu timeout 0s`}},
		{"ip=eth0:dhcp:9000", []string{"ip dhcp mtu 9000 (from kernel cmdline ip)"}},
		{"ip=192.0.2.10::192.0.2.254:255.255.255.0:node7:eth0:off", []string{"ip static 192.0.2.10/24 gateway 192.0.2.254 hostname node7 (from kernel cmdline ip)"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:none:192.0.2.53:192.0.2.54", []string{"ip static 192.0.2.10/24 gateway 192.0.2.254 dns 192.0.2.53,192.0.2.54 (from kernel cmdline ip)"}},
		{"ip=[2001:db8::10]::[2001:db8::1]:64::eth0:none", []string{"ip static 2001:db8::10/64 gateway 2001:db8::1 (from kernel cmdline ip)"}},
		{"ip=::::node7:eth0:dhcp", []string{"ip dhcp hostname node7 (from kernel cmdline ip)"}},
		{"lunboot.target=iscsi://192.0.2.1/iqn.2001-04.com.example:node7/26",
			[]string{"target iscsi:192.0.2.1::3260:1a:iqn.2001-04.com.example:node7 (portal 192.0.2.1:3260, LUN 1a = Linux LUN 26) (from kernel cmdline lunboot.target)"}},
		{`lunboot.entry="Debian GNU/Linux, with Linux 6.1" lunboot.append="console=ttyS0,115200 quiet" lunboot.dhcp-timeout=60`,
			[]string{`entry "Debian GNU/Linux, with Linux 6.1"`, "dhcp timeout 1m0s"}},
	} {
		src := mustCmdline(t, tc.cmdline)
		c := Resolve(src, Source{}, Source{})
		rep := strings.Join(c.Report(), "\n")
		for _, w := range tc.report {
			if !strings.Contains(rep, w) {
				t.Errorf("Resolve(ParseCmdline(%q)).Report() =\n%s\nwant a line containing %q", tc.cmdline, rep, w)
			}
		}
	}
}

// TestDigestPolicy: lunboot.*_digest= maps onto the login's policy, so the
// refusal of a required digest happens in the negotiation (iscsi).
func TestDigestPolicy(t *testing.T) {
	for d, want := range map[Digest]iscsi.Digest{0: iscsi.DigestNone, DigestNone: iscsi.DigestNone, DigestCRC32C: iscsi.DigestRequire, DigestPrefer: iscsi.DigestPrefer} {
		if got := d.Policy(); got != want {
			t.Errorf("Digest(%s).Policy() = %s, want %s", d, got, want)
		}
	}
}
