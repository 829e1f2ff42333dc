package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestRefusedCombinations: what the demo cannot do is refused by name,
// before anything starts.
func TestRefusedCombinations(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-firmware", "uefi", "-pxe"}, "-firmware uefi -pxe"},
		{[]string{"-firmware", "uefi", "-os", "probe", "-ipxe"}, "-firmware uefi -ipxe"},
		{[]string{"-firmware", "coreboot"}, `unknown firmware "coreboot"`},
		{[]string{"-target", "lio", "-os", "probe"}, "-target lio boots the Debian disk under BIOS"},
		{[]string{"-target", "lio", "-pxe"}, "-pxe"},
		{[]string{"-target", "lio", "-os", "probe", "-ipxe"}, "-ipxe"},
		{[]string{"-target", "lio", "-firmware", "uefi"}, "-firmware uefi"},
		{[]string{"-lockdown"}, "-lockdown boots the probe OS under OVMF"},
		{[]string{"-lockdown", "-os", "probe"}, "needs -os probe -firmware uefi"},
		{[]string{"-lockdown", "-firmware", "uefi"}, "needs -os probe -firmware uefi"},
		{[]string{"-lockdown", "-os", "probe", "-firmware", "uefi", "-fixture", "gpt-bls-unsigned"}, "not -fixture gpt-bls-unsigned"},
		{[]string{"-target", "scst"}, `-target "scst": want tgtd or lio`},
		{[]string{"-golden", "5"}, "-golden 5: want 1 to 4 clients"},
		{[]string{"-golden", "2", "-os", "noiscsi"}, "-golden boots the Debian disk"},
		{[]string{"-golden", "2", "-scenario", "vlan"}, "-golden boots the Debian disk"},
	} {
		err := run(context.Background(), append([]string{"-out", t.TempDir()}, tt.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("demo %v = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
