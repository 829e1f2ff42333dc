package initramfs

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

var configLine = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)

// readConfig returns the symbol=value lines of a kernel config file, and
// the symbols it names as "# CONFIG_X is not set".
func readConfig(t *testing.T, path string) (set map[string]string, unset map[string]bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set, unset = map[string]string{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if m := configLine.FindStringSubmatch(line); m != nil {
			if _, dup := set[m[1]]; dup {
				t.Errorf("%s:%d: %s set twice", path, n, m[1])
			}
			set[m[1]] = m[2]
			continue
		}
		if s, ok := strings.CutPrefix(line, "# "); ok && strings.HasSuffix(s, " is not set") {
			unset[strings.TrimSuffix(s, " is not set")] = true
			continue
		}
		if line != "" && !strings.HasPrefix(line, "#") {
			t.Errorf("%s:%d: %q is neither CONFIG_X=value nor a comment", path, n, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return set, unset
}

// TestLinuxbootConfig checks the fragment: everything built in, and every
// symbol known to the Debian kernel's Kconfig (a typo would be dropped by
// olddefconfig without a word).
func TestLinuxbootConfig(t *testing.T) {
	frag, _ := readConfig(t, "linuxboot.config")
	if len(frag) == 0 {
		t.Fatal("linuxboot.config sets nothing")
	}
	for sym, v := range frag {
		if v != "y" {
			t.Errorf("linuxboot.config: %s=%s, want =y (the point is to need no modules)", sym, v)
		}
	}
	configs, _ := filepath.Glob(filepath.Join(testenv.KernelDir(), "boot", "config-*"))
	if len(configs) != 1 {
		testenv.Missing(t, "the Debian kernel's boot/config-* under "+testenv.KernelDir()+" (make deps)")
	}
	deb, debUnset := readConfig(t, configs[0])
	for sym := range frag {
		if _, ok := deb[sym]; !ok && !debUnset[sym] {
			t.Errorf("linuxboot.config: %s is not in %s: misspelt or gone from Kconfig", sym, configs[0])
		}
	}
}
