package main

import (
	"strings"
	"testing"
)

func TestFindScenario(t *testing.T) {
	for _, tc := range []struct {
		name, os string
		osSet    bool
		wantOS   string
		wantErr  string
	}{
		{"vlan", "debian", false, "dracut", ""},
		{"vlan", "dracut", true, "dracut", ""},
		{"vlan", "debian", true, "", "-scenario vlan -os debian cannot work: an initramfs-tools initrd cannot boot over a VLAN"},
		{"vlan", "probe", true, "", "-scenario vlan -os probe cannot work"},
		{"dns", "debian", false, "debian", ""},
		{"dns", "dracut", true, "dracut", ""},
		{"static", "debian", true, "debian", ""},
		{"static", "probe", true, "", "cannot work"},
		{"static", "fedora", true, "", `-os "fedora": want debian or dracut`},
		{"ipv6", "debian", false, "dracut", ""},
		{"ipv6", "debian", true, "", "-scenario ipv6 -os debian cannot work: an initramfs-tools initrd cannot log in over IPv6"},
		{"bogus", "debian", false, "", `-scenario "bogus": want one of vlan, dns, static, ipv6`},
	} {
		s, os, err := findScenario(tc.name, tc.os, tc.osSet)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("findScenario(%q, %q, %v) = %v, want error %q", tc.name, tc.os, tc.osSet, err, tc.wantErr)
			}
			continue
		}
		if err != nil || s.name != tc.name || os != tc.wantOS {
			t.Errorf("findScenario(%q, %q, %v) = %v, %q, %v; want %s on %s", tc.name, tc.os, tc.osSet, s, os, err, tc.name, tc.wantOS)
		}
	}
}
