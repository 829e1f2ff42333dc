package scsi

import "testing"

func TestLUNLinux(t *testing.T) {
	for _, tt := range []struct {
		lun   LUN
		linux uint64
		str   string
	}{
		{LUN{}, 0, "0"},
		{LUN{0, 1}, 1, "1"},
		{LUN{0, 0x1a}, 26, "1a"},
		{LUN{0x40, 0x40}, 0x4040, "4040"},
		{LUN{0x40, 0, 0, 1}, 0x14000, "4000-0001"},
		{LUN{1, 2, 3, 4, 5, 6, 7, 8}, 0x0708050603040102, "102-0304-0506-0708"},
	} {
		if got := tt.lun.Linux(); got != tt.linux {
			t.Errorf("%x.Linux() = %#x, want %#x", tt.lun, got, tt.linux)
		}
		if got := LUNFromLinux(tt.linux); got != tt.lun {
			t.Errorf("LUNFromLinux(%#x) = %x, want %x", tt.linux, got, tt.lun)
		}
		if got := tt.lun.String(); got != tt.str {
			t.Errorf("%x.String() = %q, want %q", tt.lun, got, tt.str)
		}
	}
}

func TestFormatLUNs(t *testing.T) {
	for _, tt := range []struct {
		luns []LUN
		want string
	}{
		{nil, "no LUNs"},
		{[]LUN{{0, 1}}, "LUN 1 (Linux 1)"},
		{[]LUN{{}, {0, 1}, {0, 0x1a}}, "LUNs 0 (Linux 0), 1 (Linux 1), 1a (Linux 26)"},
		{[]LUN{{0x40, 0, 0, 1}}, "LUN 4000-0001 (Linux 81920)"},
	} {
		if got := FormatLUNs(tt.luns); got != tt.want {
			t.Errorf("FormatLUNs(%x) = %q, want %q", tt.luns, got, tt.want)
		}
	}
}
