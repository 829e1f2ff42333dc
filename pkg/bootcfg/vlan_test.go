package bootcfg

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCmdlineVLAN(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		vlan    VLAN
		iface   string
		warn    string
	}{
		// dracut's form: ip= configures the VLAN interface, whose parent
		// becomes the boot NIC.
		{"vlan=eth0.100:eth0 ip=eth0.100:dhcp", VLAN{100, "eth0.100", "eth0"}, "eth0", ""},
		{"ip=vlan0100:dhcp vlan=vlan0100:ens3", VLAN{100, "vlan0100", "ens3"}, "ens3", ""},
		{"vlan=vlan7:eth1 ip=dhcp", VLAN{7, "vlan7", "eth1"}, "eth1", ""},
		{"vlan=eth0.0042:eth0", VLAN{42, "eth0.0042", "eth0"}, "eth0", ""},
		// ip= on the parent: the untagged parent, as dracut would do.
		{"vlan=eth0.100:eth0 ip=eth0:dhcp", VLAN{}, "eth0", "configures eth0 itself"},
		// lunboot.vlan= tags whatever NIC is selected.
		{"lunboot.vlan=4094", VLAN{ID: 4094}, "", ""},
		{"lunboot.vlan=100 BOOTIF=01-52-54-00-12-34-56", VLAN{ID: 100}, "", ""},
		{"lunboot.vlan=100 vlan=eth0.100:eth0 ip=eth0.100:dhcp", VLAN{100, "eth0.100", "eth0"}, "eth0", ""},
		{"vlan=eth0.100:eth0 lunboot.vlan=100 ip=eth0.100:dhcp", VLAN{100, "eth0.100", "eth0"}, "eth0", ""},
	} {
		s, err := ParseCmdline(tc.cmdline)
		if err != nil {
			t.Errorf("ParseCmdline(%q) = %v", tc.cmdline, err)
			continue
		}
		if s.VLAN.Value != tc.vlan {
			t.Errorf("ParseCmdline(%q) VLAN = %+v, want %+v", tc.cmdline, s.VLAN.Value, tc.vlan)
		}
		if s.InterfaceName.Value != tc.iface {
			t.Errorf("ParseCmdline(%q) interface = %q, want %q", tc.cmdline, s.InterfaceName.Value, tc.iface)
		}
		if got := strings.Join(s.Warnings, "; "); !strings.Contains(got, tc.warn) || tc.warn == "" && got != "" {
			t.Errorf("ParseCmdline(%q) warnings = %q, want %q", tc.cmdline, got, tc.warn)
		}
	}
}

// TestCmdlineVLANErrors: each error names the option and what is wrong.
func TestCmdlineVLANErrors(t *testing.T) {
	for _, tc := range []struct{ cmdline, want string }{
		{"lunboot.vlan=0", `lunboot.vlan="0": VLAN id 0 is not a VLAN`},
		{"lunboot.vlan=4095", `lunboot.vlan="4095": VLAN id 4095 is reserved`},
		{"lunboot.vlan=5000", "out of range"},
		{"lunboot.vlan=x", `VLAN id "x" is not a number`},
		{"lunboot.vlan=", "is not a number"},
		{"vlan=eth0.0:eth0", `vlan="eth0.0:eth0": VLAN name "eth0.0": VLAN id 0`},
		{"vlan=vlan4095:eth0", "4095 is reserved"},
		{"vlan=eth0.100", "the form is vlan=<vlanname>:<parent>"},
		{"vlan=:eth0", "the form is"},
		{"vlan=mytag:eth0", `VLAN name "mytag" carries no VLAN id`},
		{"vlan=eth0.100:eth/0", "parent interface"},
		{"vlan=averyveryverylongname.100:eth0", "longer than 15"},
		{"vlan=eth0.100:eth0 vlan=eth1.200:eth1", "lunboot boots over one VLAN"},
		{"lunboot.vlan=100 lunboot.vlan=200", "conflicts"},
		{"vlan=eth0.100:eth0 lunboot.vlan=200", "VLAN 200 conflicts with VLAN 100 from vlan"},
		{"vlan=eth0.100:eth0 ip=eth1:dhcp", "creates eth0.100 on eth0, but ip boots over eth1"},
	} {
		_, err := ParseCmdline(tc.cmdline)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCmdline(%q) = %v, want an error containing %q", tc.cmdline, err, tc.want)
		}
	}
}

func TestResolveVLAN(t *testing.T) {
	cmd, err := ParseCmdline("vlan=eth0.100:eth0 ip=eth0.100:dhcp netroot=iscsi:192.0.2.1::::" + tgt)
	if err != nil {
		t.Fatal(err)
	}
	fw := Firmware{MAC: mac2, VLAN: 200, TargetAddr: netip.MustParseAddr("192.0.2.9"), TargetName: tgt}.Source()
	c := Resolve(cmd, Source{}, fw)
	if c.VLAN != (VLAN{100, "eth0.100", "eth0"}) || c.Origin(FieldVLAN).Kind != Cmdline {
		t.Errorf("Resolve VLAN = %+v from %v, want 100 from the command line", c.VLAN, c.Origin(FieldVLAN))
	}
	if !strings.Contains(strings.Join(c.Report(), "\n"), "vlan 100 (eth0.100 on eth0) (from kernel cmdline vlan)") {
		t.Errorf("Report() = %q, want the VLAN line", c.Report())
	}
	// Without a command-line VLAN the iBFT's applies.
	c = Resolve(Source{Kind: Cmdline}, Source{}, fw)
	if c.VLAN.ID != 200 || c.Origin(FieldVLAN).Kind != IBFT {
		t.Errorf("Resolve VLAN = %+v from %v, want 200 from the iBFT", c.VLAN, c.Origin(FieldVLAN))
	}
	// An invalid iBFT VLAN stops the boot, naming the field.
	bad := Firmware{MAC: mac2, VLAN: 4095, TargetAddr: netip.MustParseAddr("192.0.2.9"), TargetName: tgt}.Source()
	if _, err := Merge(Source{Kind: Cmdline}, Source{}, bad); err == nil || !strings.Contains(err.Error(), "vlan from iBFT NIC") {
		t.Errorf("Merge with iBFT VLAN 4095 = %v, want an error naming the vlan from the iBFT NIC", err)
	}
}
