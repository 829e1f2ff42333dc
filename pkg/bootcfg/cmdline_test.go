package bootcfg

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

// TestParseCmdlineSplit checks that options are split as the kernel
// splits them (pkg/cmdline has the splitter's own cases).
func TestParseCmdlineSplit(t *testing.T) {
	for _, tc := range []struct {
		in, appendix, entry string
	}{
		{`lunboot.append="console=ttyS0 quiet" lunboot.entry=x`, "console=ttyS0 quiet", "x"},
		{`"lunboot.append=console=ttyS0 quiet" "lunboot.entry=Debian GNU"`, "console=ttyS0 quiet", "Debian GNU"},
		{"lunboot.append=a=b\tlunboot.entry=x\r\n", "a=b", "x"},
		{`lunboot.append=x"y z"w lunboot.entry="unterminated b=c`, `x"y z"w`, "unterminated b=c"},
		// The kernel's isspace() includes 0xA0, the second byte of "à".
		{"lunboot.entry=Voil\xc3\xa0 lunboot.append=\"Voil\xc3\xa0\"", "Voil\xc3\xa0", "Voil\xc3"},
		// After "--" the words are init's arguments, not options.
		{"lunboot.entry=x -- lunboot.entry=y lunboot.append=z", "", "x"},
		{`lunboot.entry=x "--" lunboot.entry=y`, "", "x"},
	} {
		s, err := ParseCmdline(tc.in)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.in, err)
			continue
		}
		if s.Append.Value != tc.appendix || s.Entry.Value != tc.entry {
			t.Errorf("ParseCmdline(%q) append, entry = %q, %q; want %q, %q", tc.in, s.Append.Value, s.Entry.Value, tc.appendix, tc.entry)
		}
	}
}

var (
	mac1 = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	mac2 = net.HardwareAddr{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}
)

const (
	tgt  = "iqn.2001-04.com.example:disk"
	tgt2 = "iqn.2001-04.com.example:other"
)

func mustTarget(t *testing.T, s string) rootpath.RootPath {
	t.Helper()
	r, err := rootpath.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return r.WithoutCredentials()
}

func cmd(key string) Origin { return Origin{Cmdline, key} }

// TestParseCmdlineKeys checks every accepted option: the value it sets and
// the origin recorded.
func TestParseCmdlineKeys(t *testing.T) {
	type check func(t *testing.T, s Source) (got, want any)
	target := func(spec, key string) check {
		return func(t *testing.T, s Source) (any, any) {
			return fmt.Sprintf("%v %v", s.Target.Value, s.Target.Origin), fmt.Sprintf("%v %v", mustTarget(t, spec), cmd(key))
		}
	}
	field := func(get func(Source) (any, Origin), want any, key string) check {
		return func(t *testing.T, s Source) (any, any) {
			v, o := get(s)
			return fmt.Sprintf("%v %v", v, o), fmt.Sprintf("%v %v", want, cmd(key))
		}
	}
	chap := func(c iscsi.CHAP, key string) check {
		return func(t *testing.T, s Source) (any, any) {
			v := s.CHAP.Value
			return fmt.Sprintf("%q %q %q %q %v", v.Username, v.Secret, v.TargetUsername, v.TargetSecret, s.CHAP.Origin),
				fmt.Sprintf("%q %q %q %q %v", c.Username, c.Secret, c.TargetUsername, c.TargetSecret, cmd(key))
		}
	}
	ifname := func(s Source) (any, Origin) { return s.InterfaceName.Value, s.InterfaceName.Origin }
	ifmac := func(s Source) (any, Origin) { return s.InterfaceMAC.Value, s.InterfaceMAC.Origin }
	mode := func(s Source) (any, Origin) { return s.IPMode.Value, s.IPMode.Origin }
	addr := func(s Source) (any, Origin) { return s.Address.Value, s.Address.Origin }
	gw := func(s Source) (any, Origin) { return s.Gateway.Value, s.Gateway.Origin }
	dns := func(s Source) (any, Origin) { return s.DNS.Value, s.DNS.Origin }
	host := func(s Source) (any, Origin) { return s.Hostname.Value, s.Hostname.Origin }
	mtu := func(s Source) (any, Origin) { return s.MTU.Value, s.MTU.Origin }
	ibft := func(s Source) (any, Origin) { return s.IBFT.Value, s.IBFT.Origin }
	ini := func(s Source) (any, Origin) { return s.Initiator.Value, s.Initiator.Origin }
	pfx := netip.MustParsePrefix
	ad := netip.MustParseAddr

	for _, tc := range []struct {
		cmdline string
		checks  []check
	}{
		// Targets.
		{"netroot=iscsi:192.0.2.1:::1a:" + tgt, []check{target("iscsi:192.0.2.1:::1a:"+tgt, "netroot")}},
		{"root=iscsi:192.0.2.1::::" + tgt + " root=UUID=1234", []check{target("iscsi:192.0.2.1::::"+tgt, "root")}},
		{"iscsiroot=iscsi:192.0.2.1::::" + tgt, []check{target("iscsi:192.0.2.1::::"+tgt, "iscsiroot")}},
		{"lunboot.target=iscsi://192.0.2.1:3261/" + tgt + "/26", []check{target("iscsi:192.0.2.1::3261:1a:"+tgt, "lunboot.target")}},
		{"lunboot.target=iscsi:[2001:db8::1]::::" + tgt, []check{target("iscsi:[2001:db8::1]::::"+tgt, "lunboot.target")}},
		{"iscsi_target_name=" + tgt + " iscsi_target_ip=192.0.2.1 iscsi_target_port=3262",
			[]check{target("iscsi:192.0.2.1::3262::"+tgt, "iscsi_target_name/iscsi_target_ip")}},
		{"iscsi_target_ip=192.0.2.1 iscsi_target_name=" + tgt, []check{target("iscsi:192.0.2.1::::"+tgt, "iscsi_target_name/iscsi_target_ip")}},
		// root=iscsi:… wins over netroot= (dracut's parse-iscsiroot.sh).
		{"netroot=iscsi:192.0.2.1::::" + tgt + " root=iscsi:192.0.2.1::3260:0:" + tgt, []check{target("iscsi:192.0.2.1::::"+tgt, "root")}},
		{"netroot=iscsi:192.0.2.1::::" + tgt + " root=iscsi:192.0.2.2::::" + tgt2, []check{target("iscsi:192.0.2.2::::"+tgt2, "root")}},
		{"root=iscsi:192.0.2.2::::" + tgt2 + " netroot=dhcp", []check{target("iscsi:192.0.2.2::::"+tgt2, "root")}},
		{"netroot=iscsi:u:pw@192.0.2.1::::" + tgt + " root=iscsi:192.0.2.2::::" + tgt2, []check{target("iscsi:192.0.2.2::::"+tgt2, "root"),
			func(t *testing.T, s Source) (any, any) { return s.CHAP.IsSet(), false }}},
		// The same target twice (dracut and lunboot spelling) is fine.
		{"netroot=iscsi:192.0.2.1::::" + tgt + " lunboot.target=iscsi:192.0.2.1::3260:0:" + tgt, []check{target("iscsi:192.0.2.1::::"+tgt, "netroot")}},
		// dracut's iscsiroot= is a root-path without the scheme.
		{"iscsiroot=192.0.2.1::3261:1a:" + tgt, []check{target("iscsi:192.0.2.1::3261:1a:"+tgt, "iscsiroot")}},
		{"iscsiroot=[2001:db8::1]::::" + tgt, []check{target("iscsi:[2001:db8::1]::::"+tgt, "iscsiroot")}},
		{"netroot=iscsi:192.0.2.1::3260::eth1:0:" + tgt, []check{target("iscsi:192.0.2.1::::"+tgt, "netroot"), field(ifname, "eth1", "netroot")}},
		{"netroot=dhcp", nil},
		{"netroot=iscsi rd.iscsi.firmware=1", []check{field(ibft, IBFTPrefer, "rd.iscsi.firmware")}},
		{"root=/dev/sda1 root=LABEL=x", nil},
		// Initiator.
		{"rd.iscsi.initiator=iqn.2001-04.com.example:host", []check{field(ini, "iqn.2001-04.com.example:host", "rd.iscsi.initiator")}},
		{"iscsi_initiator=iqn.2001-04.com.example:host", []check{field(ini, "iqn.2001-04.com.example:host", "iscsi_initiator")}},
		{"lunboot.initiator=IQN.2001-04.Com.Example:Host", []check{field(ini, "iqn.2001-04.com.example:host", "lunboot.initiator")}},
		{"lunboot.initiator=ipxe", []check{field(func(s Source) (any, Origin) { return s.IPXEInitiator.Value, s.IPXEInitiator.Origin }, true, "lunboot.initiator"),
			func(t *testing.T, s Source) (any, any) { return s.Initiator.IsSet(), false }}},
		// open-iscsi node parameters, kept in order for the OS.
		{"rd.iscsi.param=node.session.timeo.replacement_timeout=30 rd.iscsi.param=node.conn[0].timeo.noop_out_interval=0",
			[]check{field(func(s Source) (any, Origin) { return s.ISCSIParams.Value, s.ISCSIParams.Origin },
				[]string{"node.session.timeo.replacement_timeout=30", "node.conn[0].timeo.noop_out_interval=0"}, "rd.iscsi.param")}},
		// CHAP.
		{"rd.iscsi.username=alice rd.iscsi.password=pw", []check{chap(iscsi.CHAP{Username: "alice", Secret: "pw"}, "rd.iscsi.username")}},
		{"iscsi_password=pw iscsi_username=alice iscsi_in_username=san iscsi_in_password=rpw",
			[]check{chap(iscsi.CHAP{Username: "alice", Secret: "pw", TargetUsername: "san", TargetSecret: "rpw"}, "iscsi_username")}},
		{"rd.iscsi.username=alice rd.iscsi.password=pw rd.iscsi.in.username=san rd.iscsi.in.password=rpw",
			[]check{chap(iscsi.CHAP{Username: "alice", Secret: "pw", TargetUsername: "san", TargetSecret: "rpw"}, "rd.iscsi.username")}},
		{"netroot=iscsi:alice:pw@192.0.2.1::::" + tgt, []check{chap(iscsi.CHAP{Username: "alice", Secret: "pw"}, "netroot"), target("iscsi:192.0.2.1::::"+tgt, "netroot")}},
		{"netroot=iscsi:alice:pw:san:rpw@192.0.2.1::::" + tgt + " rd.iscsi.username=alice", []check{chap(iscsi.CHAP{Username: "alice", Secret: "pw", TargetUsername: "san", TargetSecret: "rpw"}, "netroot")}},
		{"lunboot.target=iscsi://alice%pw@192.0.2.1/" + tgt + "/0", []check{chap(iscsi.CHAP{Username: "alice", Secret: "pw"}, "lunboot.target")}},
		// iBFT preference.
		{"rd.iscsi.firmware", []check{field(ibft, IBFTPrefer, "rd.iscsi.firmware")}},
		{"rd.iscsi.firmware=0", []check{func(t *testing.T, s Source) (any, any) { return s.IBFT.IsSet(), false }}},
		{"rd.iscsi.ibft=1", []check{field(ibft, IBFTPrefer, "rd.iscsi.ibft")}},
		{"iscsi_firmware", []check{field(ibft, IBFTPrefer, "iscsi_firmware")}},
		{"iscsi_auto", []check{field(ibft, IBFTPrefer, "iscsi_auto")}},
		{"ip=ibft", []check{field(ibft, IBFTPrefer, "ip")}},
		{"lunboot.ibft=ignore", []check{field(ibft, IBFTIgnore, "lunboot.ibft")}},
		{"lunboot.ibft=0", []check{field(ibft, IBFTIgnore, "lunboot.ibft")}},
		{"lunboot.ibft=fallback rd.iscsi.firmware=0", []check{field(ibft, IBFTFallback, "lunboot.ibft")}},
		// Interface selection.
		{"BOOTIF=01-52-54-00-12-34-56", []check{field(ifmac, mac1, "BOOTIF")}},
		{"BOOTIF=52:54:00:12:34:56", []check{field(ifmac, mac1, "BOOTIF")}},
		{"BOOTIF=52-54-00-12-34-56", []check{field(ifmac, mac1, "BOOTIF")}},
		{"lunboot.iface=eth1", []check{field(ifname, "eth1", "lunboot.iface")}},
		{"lunboot.iface=52:54:00:12:34:56 BOOTIF=01-52-54-00-12-34-56", []check{field(ifmac, mac1, "lunboot.iface")}},
		// ip=.
		{"ip=dhcp", []check{field(mode, IPDHCP, "ip")}},
		{"ip=on", []check{field(mode, IPDHCP, "ip")}},
		{"ip=any", []check{field(mode, IPDHCP, "ip")}},
		{"ip=eth0:dhcp", []check{field(mode, IPDHCP, "ip"), field(ifname, "eth0", "ip")}},
		{"ip=eth0:dhcp:9000", []check{field(mode, IPDHCP, "ip"), field(mtu, 9000, "ip")}},
		{"ip=192.0.2.10::192.0.2.254:255.255.255.0:myhost:eth0:off",
			[]check{field(mode, IPStatic, "ip"), field(addr, pfx("192.0.2.10/24"), "ip"), field(gw, ad("192.0.2.254"), "ip"),
				field(host, "myhost", "ip"), field(ifname, "eth0", "ip")}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:none:192.0.2.53:192.0.2.54",
			[]check{field(addr, pfx("192.0.2.10/24"), "ip"), field(dns, []netip.Addr{ad("192.0.2.53"), ad("192.0.2.54")}, "ip")}},
		{"ip=192.0.2.10:::255.255.255.128:::", []check{field(mode, IPStatic, "ip"), field(addr, pfx("192.0.2.10/25"), "ip")}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:none:1500", []check{field(mtu, 1500, "ip")}},
		{"ip=[2001:db8::10]::[2001:db8::1]:64::eth0:none",
			[]check{field(addr, pfx("2001:db8::10/64"), "ip"), field(gw, ad("2001:db8::1"), "ip")}},
		{"ip=::::myhost:eth0:dhcp", []check{field(mode, IPDHCP, "ip"), field(host, "myhost", "ip")}},
		{"ip=::::myhost:eth0:", []check{field(mode, IPDHCP, "ip")}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:dhcp", []check{field(mode, IPDHCP, "ip"),
			func(t *testing.T, s Source) (any, any) { return s.Address.IsSet() || s.Gateway.IsSet(), false }}},
		{"nameserver=192.0.2.53 nameserver=2001:db8::53 nameserver=192.0.2.53",
			[]check{field(dns, []netip.Addr{ad("192.0.2.53"), ad("2001:db8::53")}, "nameserver")}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:none:192.0.2.53 nameserver=192.0.2.54",
			[]check{field(dns, []netip.Addr{ad("192.0.2.53"), ad("192.0.2.54")}, "ip, nameserver")}},
		// Timeouts and behaviour.
		{"lunboot.dhcp_timeout=45", []check{field(func(s Source) (any, Origin) { return s.DHCPTimeout.Value, s.DHCPTimeout.Origin }, 45*time.Second, "lunboot.dhcp_timeout")}},
		{"lunboot.dhcp-timeout=1m30s", []check{field(func(s Source) (any, Origin) { return s.DHCPTimeout.Value, s.DHCPTimeout.Origin }, 90*time.Second, "lunboot.dhcp_timeout")}},
		{"rd.net.timeout.dhcp=20", []check{field(func(s Source) (any, Origin) { return s.DHCPTimeout.Value, s.DHCPTimeout.Origin }, 20*time.Second, "rd.net.timeout.dhcp")}},
		{"lunboot.carrier_timeout=0", []check{field(func(s Source) (any, Origin) { return s.CarrierTimeout.Value, s.CarrierTimeout.Origin }, time.Duration(0), "lunboot.carrier_timeout")}},
		{"rd.net.timeout.carrier=7", []check{field(func(s Source) (any, Origin) { return s.CarrierTimeout.Value, s.CarrierTimeout.Origin }, 7*time.Second, "rd.net.timeout.carrier")}},
		{"lunboot.retries=5", []check{field(func(s Source) (any, Origin) { return s.Retries.Value, s.Retries.Origin }, 5, "lunboot.retries")}},
		{"lunboot.retries=forever", []check{field(func(s Source) (any, Origin) { return s.Retries.Value, s.Retries.Origin }, RetryForever, "lunboot.retries")}},
		{"lunboot.timeout=10m", []check{field(func(s Source) (any, Origin) { return s.Timeout.Value, s.Timeout.Origin }, 10*time.Minute, "lunboot.timeout")}},
		{"lunboot.rescue=0", []check{field(func(s Source) (any, Origin) { return s.Rescue.Value, s.Rescue.Origin }, false, "lunboot.rescue")}},
		{"lunboot.rescue", []check{field(func(s Source) (any, Origin) { return s.Rescue.Value, s.Rescue.Origin }, true, "lunboot.rescue")}},
		{"lunboot.entry=Debian GNU/Linux", []check{field(func(s Source) (any, Origin) { return s.Entry.Value, s.Entry.Origin }, "Debian", "lunboot.entry")}},
		{`lunboot.entry="Debian GNU/Linux"`, []check{field(func(s Source) (any, Origin) { return s.Entry.Value, s.Entry.Origin }, "Debian GNU/Linux", "lunboot.entry")}},
		{"lunboot.menu_timeout=5", []check{field(func(s Source) (any, Origin) { return s.MenuTimeout.Value, s.MenuTimeout.Origin }, 5*time.Second, "lunboot.menu_timeout")}},
		{"lunboot.handoff=cmdline", []check{field(func(s Source) (any, Origin) { return s.Handoff.Value, s.Handoff.Origin }, handoff.ModeCmdline, "lunboot.handoff")}},
		{"lunboot.handoff=auto", []check{field(func(s Source) (any, Origin) { return s.Handoff.Value, s.Handoff.Origin }, handoff.ModeAuto, "lunboot.handoff")}},
		{"lunboot.handoff=IBFT", []check{field(func(s Source) (any, Origin) { return s.Handoff.Value, s.Handoff.Origin }, handoff.ModeIBFT, "lunboot.handoff")}},
		{"lunboot.force=yes", []check{field(func(s Source) (any, Origin) { return s.Force.Value, s.Force.Origin }, true, "lunboot.force")}},
		{"lunboot.header_digest=crc32c lunboot.data_digest=prefer", []check{
			field(func(s Source) (any, Origin) { return s.HeaderDigest.Value, s.HeaderDigest.Origin }, DigestCRC32C, "lunboot.header_digest"),
			field(func(s Source) (any, Origin) { return s.DataDigest.Value, s.DataDigest.Origin }, DigestPrefer, "lunboot.data_digest")}},
		{"lunboot.debug", []check{field(func(s Source) (any, Origin) { return s.LogLevel.Value, s.LogLevel.Origin }, slog.LevelDebug, "lunboot.debug")}},
		{"lunboot.loglevel=warn", []check{field(func(s Source) (any, Origin) { return s.LogLevel.Value, s.LogLevel.Origin }, slog.LevelWarn, "lunboot.loglevel")}},
		{`lunboot.append="console=ttyS0,115200 systemd.unit=multi-user.target"`, []check{
			field(func(s Source) (any, Origin) { return s.Append.Value, s.Append.Origin }, "console=ttyS0,115200 systemd.unit=multi-user.target", "lunboot.append")}},
	} {
		s, err := ParseCmdline(tc.cmdline)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.cmdline, err)
			continue
		}
		for i, c := range tc.checks {
			if got, want := c(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ParseCmdline(%q) check %d = %v, want %v", tc.cmdline, i, got, want)
			}
		}
	}
}

// TestParseCmdlineIgnores checks what must not change the Source, and the
// warnings for options lunboot knows but does not use.
func TestParseCmdlineIgnores(t *testing.T) {
	for _, tc := range []struct {
		cmdline  string
		warnings int
	}{
		{"BOOT_IMAGE=/vmlinuz-6.1 ro quiet splash console=ttyS0 root=UUID=abc rd.lvm.lv=x netroot=iscsi", 0},
		{"rd.iscsi.param=node.session.timeo.replacement_timeout=30 rd.iscsi.waitnet=0 iscsi_target_group=1", 2},
		// dracut's network options are each named in a warning.
		{"bond=bond0:eth0,eth1 team=team0:eth0 bridge=br0:eth0 ifname=boot0:52:54:00:12:34:56", 4},
		{"rd.route=10.0.0.0/8:192.0.2.1 rd.peerdns=0 bootdev=eth0 rd.neednet=1 rd.net.dhcp.retry=3", 5},
		{"rd.net.timeout.iflink=5 rd.net.timeout.ifup=5 rd.net.timeout.route=5 rd.net.timeout.ipv6dad=5 rd.net.timeout.ipv6auto=5 rd.net.bogus=1", 6},
		{"iscsiroot=192.0.2.1::::" + tgt, 1}, // deprecated in dracut
		{"netroot=iscsi:192.0.2.1::::" + tgt + " root=iscsi:192.0.2.1::::" + tgt, 1},
		{"rd.iscsi.target.ip=192.0.2.1 rd.iscsi.unknown=1", 2},
		{"ip=192.0.2.10:192.0.2.1:192.0.2.254:24::eth0:off", 1}, // server field
		{"ip=192.0.2.10::192.0.2.254:24::eth0:off:192.0.2.53::192.0.2.123", 1},
		// Init's arguments, after "--", are not options.
		{"ro -- rd.iscsi.waitnet=0 lunboot.bogus=1 netroot=iscsi:bad lunboot.retries=x", 0},
	} {
		s, err := ParseCmdline(tc.cmdline)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.cmdline, err)
			continue
		}
		if (s.Target.IsSet() && !strings.Contains(tc.cmdline, "root=")) || s.CHAP.IsSet() || s.Initiator.IsSet() {
			t.Errorf("ParseCmdline(%q) set a target, CHAP or initiator: %+v", tc.cmdline, s)
		}
		if len(s.Warnings) != tc.warnings {
			t.Errorf("ParseCmdline(%q) warnings = %q, want %d", tc.cmdline, s.Warnings, tc.warnings)
		}
		// Each warning names its option.
		for _, w := range s.Warnings {
			key, _, _ := strings.Cut(strings.TrimPrefix(w, "kernel cmdline "), " ")
			key, _, _ = strings.Cut(key, "=")
			if !strings.Contains(tc.cmdline, key+"=") && !strings.Contains(tc.cmdline, key+" ") {
				t.Errorf("ParseCmdline(%q) warning %q does not name an option of the line", tc.cmdline, w)
			}
		}
	}
}

// TestParseCmdlineErrors checks that malformed options fail with a message
// naming the option, and that secrets do not appear in it.
func TestParseCmdlineErrors(t *testing.T) {
	const secret = "Sup3rSecretPw"
	for _, tc := range []struct {
		cmdline string
		want    []string // substrings of the error, in order of appearance is not required
	}{
		{"lunboot.retrys=3", []string{"lunboot.retrys", "unknown lunboot option", "did you mean lunboot.retries"}},
		{"lunboot.Target=x", []string{"lunboot.Target", "did you mean lunboot.target"}},
		{"lunboot.nonsense_option_xyz=1", []string{"lunboot.nonsense_option_xyz", "unknown lunboot option;"}},
		{"lunboot.retries=-1", []string{`lunboot.retries="-1"`, "0 to 1000"}},
		{"lunboot.retries=1001", []string{"lunboot.retries", "0 to 1000"}},
		{"lunboot.retries", []string{"lunboot.retries:", "0 to 1000"}},
		{"lunboot.timeout=abc", []string{`lunboot.timeout="abc"`, "not a duration"}},
		{"lunboot.timeout=-5s", []string{"lunboot.timeout", "from 0s"}},
		{"lunboot.timeout=48h", []string{"lunboot.timeout", "24h0m0s"}},
		{"lunboot.dhcp_timeout=0", []string{"lunboot.dhcp_timeout", "from 1s"}},
		{"rd.net.timeout.dhcp=5s", []string{"rd.net.timeout.dhcp", "seconds"}},
		{"lunboot.rescue=maybe", []string{`lunboot.rescue="maybe"`, "boolean"}},
		{"lunboot.handoff=kexec", []string{"lunboot.handoff", "not one of auto, both, cmdline, ibft, carry"}},
		{"lunboot.header_digest=md5", []string{"lunboot.header_digest", "crc32c"}},
		{"lunboot.loglevel=loud", []string{"lunboot.loglevel", "debug"}},
		{"lunboot.ibft=maybe", []string{"lunboot.ibft", "prefer"}},
		{"lunboot.entry=", []string{"lunboot.entry", "empty"}},
		{"lunboot.iface=eth/0", []string{"lunboot.iface", "neither a MAC"}},
		{"lunboot.initiator=myhost", []string{`lunboot.initiator="myhost"`, "not a valid iSCSI name"}},
		{"rd.iscsi.initiator=iqn.x:t", []string{"rd.iscsi.initiator", "yyyy-mm"}},
		{"lunboot.target=10.0.0.1", []string{"lunboot.target", `scheme "10.0.0.1"`}},
		{"netroot=nfs:10.0.0.1:/srv", []string{"netroot", `"nfs" root is not iSCSI`}},
		{"netroot=iscsi:ibft", []string{"netroot", "rd.iscsi.firmware=1"}},
		{"netroot=dhcp6 ip=dhcp", []string{"netroot", "DHCPv6", "configures IPv4"}},
		{"netroot=dhcp ip=dhcp6", []string{"netroot", "option 17", "netroot=dhcp6"}},
		{"netroot", []string{"netroot", "needs a value"}},
		{"netroot=iscsi:192.0.2.1:::12345:iqn.x:t", []string{`kernel cmdline netroot: root-path "iscsi:192.0.2.1:::12345:iqn.x:t": LUN "12345": group "12345" has more than 4 hex digits`}},
		{"netroot=iscsi:u:" + secret + "@192.0.2.1:::zz:" + tgt, []string{"netroot", "u:***@", `LUN "zz"`}},
		{"root=iscsi:192.0.2.1::::" + tgt + " root=iscsi:192.0.2.2::::" + tgt, []string{"root", "lunboot boots from one target"}},
		{"root=iscsi:192.0.2.1::::" + tgt + " iscsiroot=192.0.2.2::::" + tgt, []string{"iscsiroot", "lunboot boots from one target"}},
		{"iscsiroot=192.0.2.1:::12345:" + tgt, []string{"iscsiroot", `LUN "12345"`}},
		{"lunboot.initiator=ipxe rd.iscsi.initiator=iqn.2001-04.com.example:h", []string{"rd.iscsi.initiator", "conflicts with lunboot.initiator=ipxe"}},
		{"rd.iscsi.initiator=iqn.2001-04.com.example:h lunboot.initiator=ipxe", []string{"lunboot.initiator", "conflicts with rd.iscsi.initiator"}},
		{"rd.iscsi.param=node.session.timeo.replacement_timeout", []string{"rd.iscsi.param", "<name>=<value>"}},
		{`rd.iscsi.param="a=b c"`, []string{"rd.iscsi.param", "without spaces"}},
		{"rd.iscsi.param=node.x=a*", []string{"rd.iscsi.param", "shell characters"}},
		{`rd.iscsi.param="node.session.auth.password=` + secret + ` x"`, []string{"rd.iscsi.param", "node.session.auth.password=***", "without spaces"}},
		{"netroot=iscsi:192.0.2.1::::" + tgt + " lunboot.target=iscsi:192.0.2.1::::" + tgt2, []string{"lunboot.target", "netroot named"}},
		{"netroot=dhcp netroot=iscsi:192.0.2.1::::" + tgt, []string{"netroot", "asks for the root-path from DHCP"}},
		{"netroot=dhcp ip=192.0.2.10::192.0.2.254:24::eth0:off", []string{"netroot", "static address"}},
		{"iscsi_target_name=" + tgt, []string{"iscsi_target_name/iscsi_target_ip", "go together"}},
		{"iscsi_target_ip=192.0.2.1", []string{"go together"}},
		{"iscsi_target_ip=192.0.2.1 iscsi_target_name=" + tgt + " iscsi_target_port=http", []string{`iscsi_target_port="http"`}},
		{"iscsi_target_ip=192.0.2.1 iscsi_target_name=disk", []string{"iscsi_target_name/iscsi_target_ip", "target name"}},
		{"rd.iscsi.username=alice", []string{"rd.iscsi.username", "needs both"}},
		{"rd.iscsi.password=" + secret, []string{"rd.iscsi.password", "needs both"}},
		{"rd.iscsi.username=a rd.iscsi.password=" + secret + " rd.iscsi.in.username=san", []string{"mutual CHAP needs both"}},
		{"rd.iscsi.in.username=san rd.iscsi.in.password=" + secret, []string{"also needs one-way"}},
		{"rd.iscsi.password=", []string{"rd.iscsi.password", "empty"}},
		{"rd.iscsi.password=a rd.iscsi.password=" + secret, []string{"rd.iscsi.password=\"***\"", "conflicts with rd.iscsi.password"}},
		{"rd.iscsi.username=bob netroot=iscsi:alice:" + secret + "@192.0.2.1::::" + tgt, []string{"netroot", "CHAP credentials", "conflicts with rd.iscsi.username"}},
		{"BOOTIF=02-52-54-00-12-34-56", []string{"BOOTIF", "not 01"}},
		{"BOOTIF=xyz", []string{`BOOTIF="xyz"`, "not a MAC"}},
		{"BOOTIF=01-52-54-00-12-34-56 lunboot.iface=52:54:00:ab:cd:ef", []string{"lunboot.iface", "conflicts with BOOTIF"}},
		{"ip=off", []string{`ip="off"`, "needs the network"}},
		{"ip=none", []string{"ip", "needs the network"}},
		{"ip=either6", []string{"ip", "auto6", "dhcp6"}},
		{"ip=eth0:link6", []string{"ip", "link-local"}},
		{"ip=bootp", []string{"ip", "only does DHCP"}},
		{"ip=eth0", []string{"ip", "not an autoconf method"}},
		{"ip=", []string{"ip", "empty"}},
		{"ip=192.0.2.10", []string{"ip", "needs a netmask"}},
		{"ip=192.0.2.10::192.0.2.254:255.0.255.0::eth0:off", []string{"ip", "contiguous"}},
		{"ip=192.0.2.10::192.0.2.254:33::eth0:off", []string{"ip", "0 to 32"}},
		{"ip=192.0.2.10::[2001:db8::1]:24::eth0:off", []string{"ip", "different IP versions"}},
		{"ip=192.0.2.999::192.0.2.254:24::eth0:off", []string{"ip", "client address"}},
		{"ip=192.0.2.10::gw:24::eth0:off", []string{"ip", "gateway"}},
		{"ip=192.0.2.10::192.0.2.254:24:bad_host:eth0:off", []string{"ip", "hostname"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0/1:off", []string{"ip", "device"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:static", []string{"ip", "autoconf"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:off:dns", []string{"ip", "DNS server"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:off:192.0.2.1:192.0.2.2:192.0.2.3:192.0.2.4", []string{"ip", "too many"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:off:1:2", []string{"ip", "MTU"}},
		{"ip=eth0:dhcp:1500:52:54:00:12:34:56", []string{"ip", "MAC address is not supported"}},
		{"ip=eth0:dhcp:10", []string{"ip", "MTU"}},
		{"ip=192.0.2.10::192.0.2.254:24::eth0:off:9000:52:54:00:12:34:56", []string{"ip", "MAC address"}},
		{"ip=2001:db8::10::2001:db8::1:64::eth0:none", []string{"ip"}},
		{"ip=dhcp ip=192.0.2.10::192.0.2.254:24::eth0:off", []string{"ip", "conflicts with ip"}},
		{"ip=eth0:dhcp ip=eth1:dhcp", []string{"conflicts with ip"}},
		{"nameserver=dns.example.com", []string{"nameserver", "not an IP"}},
		{"lunboot.append=\"a\nb\"", []string{"lunboot.append"}},
		// Several errors are reported together.
		{"lunboot.retries=x lunboot.timeout=y", []string{"lunboot.retries", "lunboot.timeout"}},
	} {
		s, err := ParseCmdline(tc.cmdline)
		if err == nil {
			t.Errorf("ParseCmdline(%q) = %+v, nil; want an error", tc.cmdline, s)
			continue
		}
		var ce *CmdlineError
		if !errors.As(err, &ce) {
			t.Errorf("ParseCmdline(%q) error %v has no *CmdlineError", tc.cmdline, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseCmdline(%q) error = %q, want it to contain %q", tc.cmdline, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseCmdline(%q) error %q shows the secret", tc.cmdline, err)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"",
		`BOOT_IMAGE=/vmlinuz netroot=iscsi:alice:pw@192.0.2.1:::1a:iqn.2001-04.com.example:disk rd.iscsi.initiator=iqn.2001-04.com.example:h ip=eth0:dhcp`,
		`lunboot.append="console=ttyS0 quiet" "lunboot.entry=Debian GNU" lunboot.retries=forever lunboot.timeout=1m`,
		`ip=192.0.2.10::192.0.2.254:255.255.255.0:myhost:eth0:off:192.0.2.53:192.0.2.54 BOOTIF=01-52-54-00-12-34-56`,
		`ip=[2001:db8::10]::[2001:db8::1]:64::eth0:none nameserver=2001:db8::53`,
		`iscsi_target_name=iqn.2001-04.com.example:disk iscsi_target_ip=192.0.2.1 iscsi_target_port=3261 iscsi_username=a iscsi_password=b`,
		`lunboot.target=iscsi://a%b@[fe80::1%eth0]:3261/iqn.2001-04.com.example:d/26?target_user=t&target_password=p`,
		`rd.iscsi.firmware=1 rd.iscsi.ibft netroot=iscsi lunboot.ibft=prefer lunboot.debug`,
		`lunboot.retrys=3 ip=eth0:dhcp:9000 a="b c`,
		`netroot=dhcp ip=::::h:eth0:dhcp rd.net.timeout.carrier=5 rd.iscsi.param=x`,
		`iscsiroot=192.0.2.1::3261:1a:iqn.2001-04.com.example:disk lunboot.initiator=ipxe rd.iscsi.param=node.session.timeo.replacement_timeout=30`,
		`netroot=iscsi:u:p@192.0.2.1::::iqn.2001-04.com.example:a root=iscsi:192.0.2.2::::iqn.2001-04.com.example:b bond=bond0:eth0 vlan=vlan5:eth0 rd.net.x=1`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		s, err := ParseCmdline(cmdline)
		if err != nil {
			var ce *CmdlineError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseCmdline(%q) error %v has no *CmdlineError", cmdline, err)
			}
			return
		}
		if s.Kind != Cmdline {
			t.Fatalf("ParseCmdline(%q).Kind = %v", cmdline, s.Kind)
		}
		if s.Target.IsSet() {
			if s.Target.Value.HasCredentials() {
				t.Fatalf("ParseCmdline(%q) kept credentials in the target", cmdline)
			}
			if _, err := rootpath.Parse(s.Target.Value.String()); err != nil {
				t.Fatalf("ParseCmdline(%q) target %q does not re-parse: %v", cmdline, s.Target.Value, err)
			}
		}
		if s.CHAP.IsSet() {
			if err := validateCHAP(s.CHAP.Value); err != nil {
				t.Fatalf("ParseCmdline(%q) accepted invalid CHAP: %v", cmdline, err)
			}
		}
		if s.IPMode.Value == IPStatic && !s.Address.Value.IsValid() {
			t.Fatalf("ParseCmdline(%q): static mode without an address", cmdline)
		}
		c, _ := Merge(s, Network{Interface: "eth0", MAC: mac1}.Source(), Source{})
		_ = c.Report()
		_ = fmt.Sprintf("%v %+v %#v", c, s, s)
	})
}

// TestOptionsDocumented checks that docs/configuration.md mentions every
// option the parser accepts.
func TestOptionsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, keys := range []map[string]handler{lunbootKeys, otherKeys} {
		for k := range keys {
			if !strings.Contains(string(doc), "`"+k) && !strings.Contains(string(doc), " "+k+"=") && !strings.Contains(string(doc), "("+k) {
				t.Errorf("option %s is not in docs/configuration.md", k)
			}
		}
	}
	for k := range ignoredKeys {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(k, ".name"), ".ip"), ".port"), ".group")
		if !strings.Contains(string(doc), base) {
			t.Errorf("ignored option %s is not in docs/configuration.md", k)
		}
	}
}

// TestParseCmdlineIPv6 covers the dracut IPv6 forms lunboot follows:
// ip=dhcp6 and ip=auto6 (also with a device), and netroot=dhcp6, which
// alone means DHCPv6 on the NIC (dracut's ifup.sh does the same).
func TestParseCmdlineIPv6(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		mode    IPMode
		iface   string
	}{
		{"ip=dhcp6", IPDHCP6, ""},
		{"ip=auto6", IPAuto6, ""},
		{"ip=eth0:dhcp6", IPDHCP6, "eth0"},
		{"ip=:::::eth0:auto6", IPAuto6, "eth0"},
		{"netroot=dhcp6", IPDHCP6, ""},
		{"netroot=dhcp6 ip=auto6", IPAuto6, ""},
		{"ip=dhcp6 netroot=iscsi:[fd00::1]::::iqn.2024-01.test:d", IPDHCP6, ""},
	} {
		s, err := ParseCmdline(tc.cmdline)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.cmdline, err)
			continue
		}
		if s.IPMode.Value != tc.mode || s.InterfaceName.Value != tc.iface {
			t.Errorf("ParseCmdline(%q): mode, interface = %v, %q; want %v, %q", tc.cmdline, s.IPMode.Value, s.InterfaceName.Value, tc.mode, tc.iface)
		}
	}
}

func TestCmdlinePortals(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d netroot=iscsi:10.0.0.2::3261::iqn.2026-11.org.x:d", []string{"10.0.0.2:3261"}},
		{"netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d", nil},
		{"netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d lunboot.portal=10.0.0.2,[fd00::2]:3262,san.example", []string{"10.0.0.2:3260", "[fd00::2]:3262", "san.example:3260"}},
	}
	for _, tt := range tests {
		src, err := ParseCmdline(tt.line)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tt.line, err)
			continue
		}
		if got := src.Portals.Value; !slices.Equal(got, tt.want) {
			t.Errorf("ParseCmdline(%q).Portals = %q, want %q", tt.line, got, tt.want)
		}
	}
	for _, bad := range []struct{ line, want string }{
		{"lunboot.portal=fd00::2", "brackets"},
		{"lunboot.portal=10.0.0.2:0", "port"},
		{"lunboot.portal=10.0.0.2,", "portal 2"},
		{"lunboot.portal", "needs a value"},
		{"netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d netroot=iscsi:10.0.0.2::::iqn.2026-11.org.x:other", "one target"},
	} {
		_, err := ParseCmdline(bad.line)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseCmdline(%q) = %v, want an error mentioning %q", bad.line, err, bad.want)
		}
	}
	src, _ := ParseCmdline("netroot=iscsi:10.0.0.1::::iqn.2026-11.org.x:d lunboot.portal=10.0.0.1,10.0.0.3 lunboot.multipath=1")
	c := Resolve(src, Source{}, Source{})
	if !slices.Equal(c.Portals, []string{"10.0.0.3:3260"}) || !c.Multipath {
		t.Errorf("Resolve: Portals %q Multipath %v, want [10.0.0.3:3260] (the primary left out) and true", c.Portals, c.Multipath)
	}
}
