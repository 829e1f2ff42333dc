package main

import (
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"45M": 45 << 20, "512K": 512 << 10, "1G": 1 << 30, "4096": 4096} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1M", "x"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = nil error, want one", bad)
		}
	}
	if got, err := parseInts("1, 8,32,128"); err != nil || len(got) != 4 || got[3] != 128 {
		t.Errorf("parseInts() = %v, %v", got, err)
	}
	if _, err := parseInts("1,0"); err == nil {
		t.Errorf("parseInts(1,0) = nil error, want one")
	}
}

func TestMedRange(t *testing.T) {
	rs := []storm{{mbps: 30}, {mbps: 10}, {mbps: 20}}
	if got, want := medRange(rs, func(s storm) float64 { return s.mbps }, "%.0f"), "20 [10–30]"; got != want {
		t.Errorf("medRange() = %q, want %q", got, want)
	}
	if got := medRange(rs[:1], func(s storm) float64 { return s.p50.Seconds() }, "%.1f s"); got != "0.0 s" {
		t.Errorf("medRange(one) = %q", got)
	}
}
