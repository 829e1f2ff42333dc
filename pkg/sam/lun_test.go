package sam

import (
	"strings"
	"testing"
)

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

// FuzzLUNLinux checks that every 8-byte LUN survives the round trip
// through the Linux number, and that String writes 1 to 4 groups.
func FuzzLUNLinux(f *testing.F) {
	f.Add(uint64(0))                  // LUN 0
	f.Add(uint64(1))                  // single level, LUN 1
	f.Add(uint64(0x4040))             // flat space addressing (SAM-5 §4.7.7)
	f.Add(uint64(0x14000))            // two levels: 4000-0001
	f.Add(uint64(0x0708050603040102)) // all four levels used
	f.Fuzz(func(t *testing.T, n uint64) {
		l := LUNFromLinux(n)
		if got := l.Linux(); got != n {
			t.Fatalf("LUNFromLinux(%#x).Linux() = %#x", n, got)
		}
		if got := LUNFromLinux(l.Linux()); got != l {
			t.Fatalf("LUNFromLinux(%x.Linux()) = %x", l, got)
		}
		if g := strings.Count(l.String(), "-") + 1; g > 4 {
			t.Fatalf("%x.String() = %q: %d groups", l, l.String(), g)
		}
	})
}
