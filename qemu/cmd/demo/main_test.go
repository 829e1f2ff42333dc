package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestRefusedCombinations: the combinations that make no sense are refused
// by name before anything starts.
func TestRefusedCombinations(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-firmware", "uefi", "-pxe"}, "-firmware uefi -pxe"},
		{[]string{"-firmware", "uefi", "-os", "probe", "-ipxe"}, "-firmware uefi -ipxe"},
		{[]string{"-firmware", "coreboot"}, `unknown firmware "coreboot"`},
	} {
		err := run(context.Background(), tt.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) = %v, want an error naming %q", tt.args, err, tt.want)
		}
	}
}
