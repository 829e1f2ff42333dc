package kmod

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// AliasFile is the name of the image's alias list in a module directory
// (lib/modules/<release>/modules.alias). It has modules.alias(5)'s format,
// "alias <pattern> <module>", restricted to the modules the image carries,
// so that the boot can tell which drivers the machine's devices ask for
// without modprobe.
const AliasFile = "modules.alias"

// maxAliases bounds an alias list: a whole Debian 6.1 kernel has ~30000.
const maxAliases = 100000

// Alias is one line of an alias list: the module named Module handles the
// devices whose modalias matches Pattern (fnmatch(3) syntax, as the
// kernel's MODULE_DEVICE_TABLE entries are rendered by
// scripts/mod/file2alias.c).
type Alias struct {
	Pattern string
	Module  string
}

// WriteAliases writes aliases in modules.alias format after a comment
// header.
func WriteAliases(w io.Writer, header string, aliases []Alias) error {
	bw := bufio.NewWriter(w)
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		if line != "" {
			fmt.Fprintf(bw, "# %s\n", line)
		}
	}
	for _, a := range aliases {
		if !validName(a.Module) || a.Pattern == "" || strings.ContainsAny(a.Pattern, " \t\n") {
			return fmt.Errorf("write aliases: bad alias %q for module %q", a.Pattern, a.Module)
		}
		fmt.Fprintf(bw, "alias %s %s\n", a.Pattern, a.Module)
	}
	return bw.Flush()
}

// ParseAliases reads an alias list. Lines other than "alias <pattern>
// <module>" and comments are errors: the file is generated, and a loader
// that guessed would load the wrong drivers.
func ParseAliases(r io.Reader) ([]Alias, error) {
	var out []Alias
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(out) == maxAliases {
			return nil, fmt.Errorf("alias list line %d: more than %d aliases", line, maxAliases)
		}
		f := strings.Fields(s)
		if len(f) != 3 || f[0] != "alias" || !validName(f[2]) {
			return nil, fmt.Errorf("alias list line %d: %q: want \"alias <pattern> <module>\"", line, s)
		}
		out = append(out, Alias{Pattern: f[1], Module: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read alias list: %w", err)
	}
	return out, nil
}

// deviceBuses are the modalias prefixes of buses whose devices announce
// themselves in sysfs (include/linux/mod_devicetable.h,
// scripts/mod/file2alias.c). A module with an alias on one of them is a
// device driver: it is worth loading only when such a device is present.
// Other aliases (fs-ext4, crypto-crc32c, devname:nbd-control,
// block-major-43-*) name a service, not hardware.
var deviceBuses = map[string]bool{
	"pci": true, "usb": true, "virtio": true, "acpi": true, "platform": true,
	"of": true, "dmi": true, "cpu": true, "x86cpu": true, "hid": true,
	"auxiliary": true, "vmbus": true, "xen": true, "xen-backend": true,
	"mdio": true, "spi": true, "i2c": true, "sdio": true, "mmc": true,
	"ssb": true, "bcma": true, "pcmcia": true, "ieee1394": true,
	"serio": true, "input": true, "pnp": true, "eisa": true, "mei": true,
	"hdaudio": true, "ccw": true, "vio": true, "fsl-mc": true, "ishtp": true,
	"tbsvc": true, "typec": true, "wmi": true, "ipack": true, "mhi": true,
	"rpmsg": true, "apr": true, "ulpi": true, "cdx": true, "vchiq": true,
}

// IsDeviceAlias reports whether pattern is a device match (a modalias on
// a hardware bus) rather than a service name.
func IsDeviceAlias(pattern string) bool {
	bus, _, ok := strings.Cut(pattern, ":")
	return ok && deviceBuses[bus]
}

// Modaliases returns the modalias of every device sysfs lists on a bus
// (/sys/bus/*/devices/*/modalias): what the kernel would send udev in each
// device's MODALIAS= uevent. Devices a driver creates when it loads (the
// virtio devices behind virtio_pci) appear only afterwards, so callers
// read them again after each round of loading.
func Modaliases(sysfs string) ([]string, error) {
	if sysfs == "" {
		sysfs = "/sys"
	}
	files, err := filepath.Glob(filepath.Join(sysfs, "bus", "*", "devices", "*", "modalias"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		if _, err := os.Stat(filepath.Join(sysfs, "bus")); err != nil {
			return nil, fmt.Errorf("read device modaliases: %w", err)
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the device went away, or has no modalias to give
		}
		s := strings.TrimSpace(string(b))
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

// readAliases reads dir's AliasFile into module name -> patterns. An image
// built before the file existed has none: the error wraps fs.ErrNotExist.
func readAliases(dir string) (map[string][]string, error) {
	f, err := os.Open(filepath.Join(dir, AliasFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := ParseAliases(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	m := map[string][]string{}
	for _, a := range list {
		m[a.Module] = append(m[a.Module], a.Pattern)
	}
	return m, nil
}

// matcher decides, for one load order, which modules the present hardware
// and the boot need.
type matcher struct {
	entries []Entry
	aliases map[string][]string // module -> patterns
	isDep   map[string]bool     // some other entry depends on it
	later   []string            // Options.OnDemand: never wanted here
	// deferred holds what wanted left out for later: the OnDemand
	// modules and the dependencies nothing else wanted needs.
	deferred map[string]bool
}

func newMatcher(entries []Entry, aliases map[string][]string) *matcher {
	m := &matcher{entries: entries, aliases: aliases, isDep: map[string]bool{}}
	for _, e := range entries {
		for _, d := range e.Depends {
			m.isDep[d] = true
		}
	}
	return m
}

// isDriver reports whether the module has a device alias.
func (m *matcher) isDriver(name string) bool {
	for _, p := range m.aliases[name] {
		if IsDeviceAlias(p) {
			return true
		}
	}
	return false
}

// matches reports whether one of the module's device aliases matches one of
// the modaliases.
func (m *matcher) matches(name string, modaliases []string) bool {
	for _, p := range m.aliases[name] {
		if !IsDeviceAlias(p) {
			continue
		}
		for _, ma := range modaliases {
			if Match(p, ma) {
				return true
			}
		}
	}
	return false
}

// wanted returns, in load order, the entries to load for these
// modaliases: every device driver one of them matches, every module that
// is no driver and no other module's dependency (file systems, nbd: what
// the boot itself needs), and everything those depend on.
func (m *matcher) wanted(modaliases []string) map[string]bool {
	want := map[string]bool{}
	for _, e := range m.entries {
		if slices.Contains(m.later, e.Name) {
			continue
		}
		if m.isDriver(e.Name) {
			if m.matches(e.Name, modaliases) {
				want[e.Name] = true
			}
		} else if !m.isDep[e.Name] {
			want[e.Name] = true
		}
	}
	addDeps(m.entries, want)
	m.deferred = map[string]bool{}
	for i := len(m.entries) - 1; i >= 0; i-- {
		if e := m.entries[i]; !want[e.Name] && (slices.Contains(m.later, e.Name) || m.deferred[e.Name]) {
			m.deferred[e.Name] = true
			for _, d := range e.Depends {
				m.deferred[d] = !want[d]
			}
		}
	}
	return want
}

// Match reports whether s matches the fnmatch(3) pattern p without flags,
// as modprobe compares a modalias with modules.alias: '*' any run of
// characters ('/' included), '?' one character, "[...]" a class with
// ranges and '!' or '^' negation, '\' quoting the next character.
func Match(p, s string) bool {
	// Iterative matching with one backtrack point for the last '*': linear
	// for the patterns file2alias writes.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if n, ok := matchClass(p[px:], s[sx]); n > 0 {
					if ok {
						px += n
						sx++
						continue
					}
				} else if s[sx] == '[' { // unterminated: a literal '['
					px++
					sx++
					continue
				}
			case '\\':
				if px+1 < len(p) && p[px+1] == s[sx] {
					px += 2
					sx++
					continue
				}
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchClass matches c against the class at the start of p ("[...]"). It
// returns the class's length (0 when unterminated) and whether c is in it.
func matchClass(p string, c byte) (int, bool) {
	i := 1
	neg := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		neg = true
		i++
	}
	in := false
	first := true
	for i < len(p) {
		if p[i] == ']' && !first {
			return i + 1, in != neg
		}
		first = false
		lo := p[i]
		if lo == '\\' && i+1 < len(p) {
			i++
			lo = p[i]
		}
		hi := lo
		if i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']' {
			hi = p[i+2]
			i += 2
		}
		if lo <= c && c <= hi {
			in = true
		}
		i++
	}
	return 0, false
}

// addDeps adds to want everything its modules depend on, directly or not.
// Dependencies come earlier in the load order, so one backward walk does.
func addDeps(entries []Entry, want map[string]bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; want[e.Name] {
			for _, d := range e.Depends {
				want[d] = true
			}
		}
	}
}
