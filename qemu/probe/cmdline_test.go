package probe

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want Cmdline
	}{
		{"", nil},
		{"  quiet  ", Cmdline{{Key: "quiet", Raw: "quiet"}}},
		{"a=1 b= c", Cmdline{{Key: "a", Value: "1", HasValue: true, Raw: "a=1"}, {Key: "b", HasValue: true, Raw: "b="}, {Key: "c", Raw: "c"}}},
		{`x="two words" y=z`, Cmdline{{Key: "x", Value: "two words", HasValue: true, Raw: `x="two words"`}, {Key: "y", Value: "z", HasValue: true, Raw: "y=z"}}},
		{`"quoted key=v"`, Cmdline{{Key: "quoted key", Value: "v", HasValue: true, Raw: `"quoted key=v"`}}},
		{"ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off\tk=v=w", Cmdline{
			{Key: "ip", Value: "10.0.0.2::10.0.0.1:255.255.255.0::eth0:off", HasValue: true, Raw: "ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off"},
			{Key: "k", Value: "v=w", HasValue: true, Raw: "k=v=w"}}},
		// As the kernel reads them (lib/cmdline.c next_arg): quotes inside
		// a name stay, an '=' in first place is part of the name, the
		// last quote goes once, \v separates, the words after "--" stay.
		{"\"a\"=b =x \"c=\"d\"\"\ve -- f", Cmdline{
			{Key: `a"`, Value: "b", HasValue: true, Raw: `"a"=b`},
			{Key: "=x", Raw: "=x"},
			{Key: "c", Value: `d"`, HasValue: true, Raw: `"c="d""`},
			{Key: "e", Raw: "e"}, {Key: "--", Raw: "--"}, {Key: "f", Raw: "f"}}},
	}
	for _, tt := range tests {
		if got := ParseCmdline(tt.in); !cmp.Equal(got, tt.want, cmpopts.EquateEmpty()) {
			t.Errorf("ParseCmdline(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestCmdlineGetLastWins(t *testing.T) {
	c := ParseCmdline("root=/dev/sda1 iscsi_auto root=UUID=abc")
	if v, ok := c.Get("root"); !ok || v != "UUID=abc" {
		t.Errorf("Get(root) = %q, %v, want UUID=abc, true", v, ok)
	}
	if !c.Has("iscsi_auto") || c.Has("ip") {
		t.Errorf("Has(iscsi_auto), Has(ip) = %v, %v, want true, false", c.Has("iscsi_auto"), c.Has("ip"))
	}
}

func TestMasked(t *testing.T) {
	tests := []struct{ in, want string }{
		{"iscsi_password=hunter22 iscsi_in_password=x rd.iscsi.password=y",
			"iscsi_password=*** iscsi_in_password=*** rd.iscsi.password=***"},
		{"netroot=iscsi:u:pw@10.0.0.1::3260:1:iqn.2026-11.org.x:t",
			"netroot=iscsi:u:***@10.0.0.1::3260:1:iqn.2026-11.org.x:t"},
		{"netroot=iscsi:u:pw:ru:rpw@10.0.0.1::::iqn.2026-11.org.x:t",
			"netroot=iscsi:u:***:ru:***@10.0.0.1::::iqn.2026-11.org.x:t"},
		// Unparseable: the whole credential part goes.
		{"root=iscsi:u:pw@@bad", "root=iscsi:***@@bad"},
		{`lunboot.chap-secret=abc x="a b"`, `lunboot.chap-secret=*** x="a b"`},
		{"iscsi_auto quiet", "iscsi_auto quiet"},
		// Unmasked parameters are written as they were, so they split the
		// same way again.
		{`"a b=c" d="e" iscsi_password="p w"`, `"a b=c" d="e" iscsi_password=***`},
	}
	for _, tt := range tests {
		if got := ParseCmdline(tt.in).Masked(); got != tt.want {
			t.Errorf("Masked(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFirmware(t *testing.T) {
	c := ParseCmdline("quiet iscsi_auto rd.iscsi.firmware=1 rd.iscsi.ibft ip=ibft ip=dhcp")
	want := []string{"iscsi_auto", "rd.iscsi.firmware=1", "rd.iscsi.ibft", "ip=ibft"}
	if got := c.Firmware(); !cmp.Equal(got, want) {
		t.Errorf("Firmware() = %q, want %q", got, want)
	}
}

func TestHandoffs(t *testing.T) {
	const tgt = "iqn.2026-11.org.lunboot.lab:disk"
	tests := []struct {
		name    string
		cmdline string
		want    []Handoff
		secrets [][2]string
	}{
		{
			name:    "none",
			cmdline: "console=ttyS0 root=UUID=x",
		},
		{
			name:    "dracut",
			cmdline: "netroot=iscsi:10.1.2.1::3260:1:" + tgt + " rd.iscsi.initiator=iqn.2026-11.org.x:i ip=dhcp",
			want:    []Handoff{{Source: "dracut", Portal: "10.1.2.1:3260", Target: tgt, LUN: "1", Initiator: "iqn.2026-11.org.x:i", IP: "dhcp"}},
		},
		{
			name: "dracut credentials in netroot override rd.iscsi",
			cmdline: "netroot=iscsi:u:p1:ru:p2@10.1.2.1::::" + tgt +
				" rd.iscsi.username=other rd.iscsi.password=zzz",
			want:    []Handoff{{Source: "dracut", Portal: "10.1.2.1:3260", Target: tgt, LUN: "0", CHAPUser: "u", ReverseUser: "ru"}},
			secrets: [][2]string{{"p1", "p2"}},
		},
		{
			name:    "dracut legacy names",
			cmdline: "netroot=iscsi:10.1.2.1::::" + tgt + " iscsi_initiator=iqn.2026-11.org.x:i iscsi_username=u iscsi_password=s",
			want:    []Handoff{{Source: "dracut", Portal: "10.1.2.1:3260", Target: tgt, LUN: "0", Initiator: "iqn.2026-11.org.x:i", CHAPUser: "u"}},
			secrets: [][2]string{{"s", ""}},
		},
		{
			name: "initramfs-tools",
			cmdline: "ip=dhcp iscsi_initiator=iqn.2026-11.org.x:i iscsi_target_name=" + tgt +
				" iscsi_target_ip=10.1.2.1 iscsi_target_port=3261 iscsi_username=u iscsi_password=s iscsi_in_username=ru iscsi_in_password=rs",
			want: []Handoff{{Source: "initramfs-tools", Portal: "10.1.2.1:3261", Target: tgt, Initiator: "iqn.2026-11.org.x:i",
				CHAPUser: "u", ReverseUser: "ru", IP: "dhcp"}},
			secrets: [][2]string{{"s", "rs"}},
		},
		{
			name:    "initramfs-tools without address",
			cmdline: "iscsi_target_name=" + tgt,
			want: []Handoff{{Source: "initramfs-tools", Target: tgt,
				Warnings: []string{"iscsi_target_name without iscsi_target_ip: local-top/iscsi would not log in"}}},
		},
		{
			name:    "initramfs-tools bad port",
			cmdline: "iscsi_target_name=" + tgt + " iscsi_target_ip=10.1.2.1 iscsi_target_port=99999",
			want: []Handoff{{Source: "initramfs-tools", Target: tgt,
				Warnings: []string{`iscsi_target_port="99999" is not a port`}}},
		},
		{
			name:    "root=iscsi and initramfs-tools together",
			cmdline: "root=iscsi:10.1.2.1::::" + tgt + " root=UUID=x iscsi_target_name=" + tgt + " iscsi_target_ip=10.1.2.1",
			want: []Handoff{
				{Source: "root=iscsi", Portal: "10.1.2.1:3260", Target: tgt, LUN: "0"},
				{Source: "initramfs-tools", Portal: "10.1.2.1:3260", Target: tgt},
			},
		},
		{
			name:    "lunboot passthrough",
			cmdline: "lunboot.target=iscsi://10.1.2.1/" + tgt + "/1 lunboot.initiator=iqn.2026-11.org.x:i",
			want:    []Handoff{{Source: "lunboot", Portal: "10.1.2.1:3260", Target: tgt, LUN: "1", Initiator: "iqn.2026-11.org.x:i"}},
		},
		{
			name:    "IPv6 portal",
			cmdline: "netroot=iscsi:[fd00::1]::3260:1:" + tgt,
			want:    []Handoff{{Source: "dracut", Portal: "[fd00::1]:3260", Target: tgt, LUN: "1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseCmdline(tt.cmdline).Handoffs()
			if !cmp.Equal(got, tt.want, cmpopts.EquateEmpty(), cmpopts.IgnoreUnexported(Handoff{})) {
				t.Errorf("Handoffs(%q) = %+v, want %+v", tt.cmdline, got, tt.want)
			}
			for i, s := range tt.secrets {
				if i >= len(got) {
					break
				}
				if a, b := got[i].Secrets(); a != s[0] || b != s[1] {
					t.Errorf("Handoffs(%q)[%d].Secrets() = %q, %q, want %q, %q", tt.cmdline, i, a, b, s[0], s[1])
				}
			}
		})
	}
}

func TestHandoffMalformedNetroot(t *testing.T) {
	hs := ParseCmdline("netroot=iscsi:10.1.2.1::nope::iqn.2026-11.org.x:t").Handoffs()
	if len(hs) != 1 || hs[0].Portal != "" || len(hs[0].Warnings) != 1 || !strings.Contains(hs[0].Warnings[0], "port") {
		t.Errorf("Handoffs(bad port) = %+v, want one hand-off without portal and a warning about the port", hs)
	}
}

func TestCHAPMode(t *testing.T) {
	tests := []struct {
		h    Handoff
		want string
	}{
		{Handoff{}, "none"},
		{Handoff{CHAPUser: "u"}, "one-way"},
		{Handoff{CHAPUser: "u", ReverseUser: "r"}, "mutual"},
	}
	for _, tt := range tests {
		if got := tt.h.CHAPMode(); got != tt.want {
			t.Errorf("%+v.CHAPMode() = %q, want %q", tt.h, got, tt.want)
		}
	}
}

func TestParseIP(t *testing.T) {
	tests := []struct {
		in     string
		method string
		s      StaticIP
	}{
		{"", "dhcp", StaticIP{}},
		{"dhcp", "dhcp", StaticIP{}},
		{"on", "dhcp", StaticIP{}},
		{"off", "off", StaticIP{}},
		{"ibft", "ibft", StaticIP{}},
		{"eth0:dhcp", "dhcp", StaticIP{Device: "eth0"}},
		{"10.0.0.2::10.0.0.1:255.255.255.0:host:eth0:off", "static",
			StaticIP{Address: "10.0.0.2", Gateway: "10.0.0.1", Netmask: "255.255.255.0", Hostname: "host", Device: "eth0"}},
		{"10.0.0.2:::24", "static", StaticIP{Address: "10.0.0.2", Netmask: "24"}},
		{":::::eth1:dhcp", "dhcp", StaticIP{Device: "eth1"}},
	}
	for _, tt := range tests {
		m, s := ParseIP(tt.in)
		if m != tt.method || s != tt.s {
			t.Errorf("ParseIP(%q) = %q, %+v, want %q, %+v", tt.in, m, s, tt.method, tt.s)
		}
	}
}

// FuzzCmdline checks that parsing never panics and that Masked never shows
// the value of a password parameter.
func FuzzCmdline(f *testing.F) {
	f.Add("iscsi_password=hunter22 netroot=iscsi:u:pw@10.0.0.1::::iqn.2026-11.org.x:t")
	f.Add(`x="a b" "y=c d" iscsi_target_name=iqn.2026-11.org.x:t iscsi_target_ip=1.2.3.4 iscsi_target_port=x`)
	f.Add("lunboot.target=iscsi://u%p@h/t/1 ip=1.2.3.4::::::")
	f.Add(`""=" ="`)
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseCmdline(s)
		masked := c.Masked()
		for _, p := range c {
			if p.HasValue && isSecretKey(p.Key) && len(p.Value) >= 4 && strings.Contains(masked, p.Key+"="+p.Value) {
				t.Errorf("Masked(%q) = %q shows %s", s, masked, p.Key)
			}
		}
		_ = c.Handoffs()
		_ = c.Firmware()
		_ = c.Lunboot()
		if v, ok := c.Get("ip"); ok {
			ParseIP(v)
		}
	})
}
