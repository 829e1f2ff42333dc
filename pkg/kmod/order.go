package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// OrderFile is the name of the load order in a module directory
// (lib/modules/<release>/lunboot.order in the image).
const OrderFile = "lunboot.order"

// maxEntries bounds a load order: a whole Debian kernel has ~4000 modules.
const maxEntries = 10000

// Entry is one module of a load order.
type Entry struct {
	// Name is the kernel's module name ('_', not '-').
	Name string
	// Path is the .ko file relative to the module directory.
	Path string
	// Depends names earlier entries that must be loaded first.
	Depends []string
}

// WriteOrder writes entries in the load-order format: one module per line,
// "name path [dep,dep...]", after a comment header. Entries must already be
// in dependency order; WriteOrder checks that, as ParseOrder will.
func WriteOrder(w io.Writer, header string, entries []Entry) error {
	if err := validate(entries); err != nil {
		return fmt.Errorf("write load order: %w", err)
	}
	bw := bufio.NewWriter(w)
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		if line != "" {
			fmt.Fprintf(bw, "# %s\n", line)
		}
	}
	fmt.Fprintln(bw, "# name path [dependencies]")
	for _, e := range entries {
		fmt.Fprintf(bw, "%s %s", e.Name, e.Path)
		if len(e.Depends) > 0 {
			fmt.Fprintf(bw, " %s", strings.Join(e.Depends, ","))
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

// ParseOrder reads a load order written by WriteOrder. It rejects malformed
// lines, paths that leave the module directory, duplicate names and
// dependencies on entries that do not come earlier, so that a loader can
// trust the order as it stands.
func ParseOrder(r io.Reader) ([]Entry, error) {
	var entries []Entry
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(entries) == maxEntries {
			return nil, fmt.Errorf("load order line %d: more than %d modules", line, maxEntries)
		}
		f := strings.Fields(s)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("load order line %d: %q: want \"name path [dep,...]\"", line, s)
		}
		e := Entry{Name: f[0], Path: f[1]}
		if len(f) == 3 {
			e.Depends = strings.Split(f[2], ",")
		}
		if err := validateEntry(e, seen); err != nil {
			return nil, fmt.Errorf("load order line %d: %w", line, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read load order: %w", err)
	}
	return entries, nil
}

// validate checks a complete list of entries.
func validate(entries []Entry) error {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if err := validateEntry(e, seen); err != nil {
			return err
		}
	}
	return nil
}

// validateEntry checks e against the names seen before it and adds its own.
func validateEntry(e Entry, seen map[string]bool) error {
	if !validName(e.Name) {
		return fmt.Errorf("%q is not a module name", e.Name)
	}
	if seen[e.Name] {
		return fmt.Errorf("module %s listed twice", e.Name)
	}
	if !isModuleFile(e.Path) || path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || strings.HasPrefix(e.Path, "../") || strings.ContainsAny(e.Path, " \t") {
		return fmt.Errorf("module %s: path %q must be a clean relative .ko path (or .ko.xz, .ko.zst, .ko.gz)", e.Name, e.Path)
	}
	for _, d := range e.Depends {
		if !seen[d] {
			return fmt.Errorf("module %s depends on %q, which is not listed before it", e.Name, d)
		}
	}
	seen[e.Name] = true
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 { // MODULE_NAME_LEN is 64 with the NUL
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// isModuleFile reports whether p names a module file: ".ko", or one
// compressed as distributions ship them (Ubuntu and Fedora: ".ko.zst" or
// ".ko.xz"), which a carried load order lists as found on the OS's disk.
func isModuleFile(p string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}
