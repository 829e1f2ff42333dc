package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestScenarioRefusals: combinations that cannot work are refused by name,
// before anything is built or started.
func TestScenarioRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-scenario", "ipv6"}, []string{"-scenario ipv6 needs -os dracut", "not -os debian", "klibc ipconfig"}},
		{[]string{"-scenario", "ipv6", "-os", "probe"}, []string{"needs -os dracut", "not -os probe"}},
		{[]string{"-scenario", "ipv6", "-pxe"}, []string{"-scenario ipv6 cannot be combined with -pxe"}},
		{[]string{"-scenario", "ipv6", "-os", "dracut", "-ipxe"}, []string{"cannot be combined with -ipxe"}},
		{[]string{"-scenario", "ipv5", "-os", "dracut"}, []string{`-scenario "ipv5"`, "ipv6"}},
	} {
		err := run(context.Background(), append(tc.args, "-out", t.TempDir()), io.Discard, io.Discard)
		if err == nil {
			t.Errorf("run(%q) = nil, want a refusal", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("run(%q) = %v, want it to say %q", tc.args, err, w)
			}
		}
	}
	// The possible combination gets past the check (to the missing image).
	err := run(context.Background(), []string{"-scenario", "ipv6", "-os", "dracut", "-out", t.TempDir()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "make image") {
		t.Errorf("run(-scenario ipv6 -os dracut) with no image = %v, want the missing image named", err)
	}
}
