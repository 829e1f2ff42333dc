package bytesize

import (
	"math"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{512, "512 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1 << 20, "1.0 MiB"},
		{8 << 20, "8.0 MiB"},
		{3 << 40, "3.0 TiB"},
		{1 << 62, "4.0 EiB"},
		{math.MaxInt64, "8.0 EiB"},
	} {
		if got := Format(tt.n); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestMiB(t *testing.T) {
	if got := MiB(6356992); got != "6.06 MiB" {
		t.Errorf("MiB(6356992) = %q, want %q", got, "6.06 MiB")
	}
}
