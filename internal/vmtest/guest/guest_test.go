package guest

import "testing"

func TestStatusLine(t *testing.T) {
	for _, code := range []int{0, 1, 2, 125, 137} {
		line := StatusLine(code)
		for _, l := range []string{line, "\r" + line + "\r", "[   12.3] random kernel text " + line} {
			got, ok := ParseStatusLine(l)
			if !ok || got != code {
				t.Errorf("ParseStatusLine(%q) = %d, %v, want %d", l, got, ok, code)
			}
		}
	}
	for _, l := range []string{"", "exit status 0", "<<<vmtest exit status >>>", "<<<vmtest exit status 1", "<<<vmtest exit status x>>>"} {
		if got, ok := ParseStatusLine(l); ok {
			t.Errorf("ParseStatusLine(%q) = %d, true, want no status", l, got)
		}
	}
}
