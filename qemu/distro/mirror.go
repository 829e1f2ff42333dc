package distro

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// source is one apt source: an archive URI with its suites and components.
type source struct {
	URIs       []string
	Suites     []string
	Components []string
	// From names the file (and line or stanza) it was read from.
	From string
}

// FindMirror returns the Debian archive the machine's apt uses for suite's
// main component, read from the apt configuration under etc (normally
// "/etc"): /etc/apt/sources.list (one-line format, sources.list(5)) and then
// /etc/apt/sources.list.d/*.list and *.sources (deb822) in name order, as
// apt reads them. The first "deb" source that carries suite and "main"
// wins. Sources debootstrap cannot use (cdrom:, apt's mirror+ methods) and
// disabled stanzas (Enabled: no) are skipped.
func FindMirror(etc, suite string) (string, error) {
	srcs, err := readSources(etc)
	if err != nil {
		return "", err
	}
	var seen []string
	for _, s := range srcs {
		if !contains(s.Suites, suite) || !contains(s.Components, "main") {
			seen = append(seen, s.From)
			continue
		}
		for _, u := range s.URIs {
			if usable(u) {
				return strings.TrimRight(u, "/"), nil
			}
		}
		seen = append(seen, s.From+" (no URI debootstrap can use)")
	}
	if len(seen) == 0 {
		return "", fmt.Errorf("distro: no deb (binary package) sources in %s/apt (sources.list, sources.list.d): set Options.Mirror", etc)
	}
	return "", fmt.Errorf("distro: no apt source with suite %s and component main among %s: set Options.Mirror", suite, strings.Join(seen, ", "))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// usable reports whether debootstrap can fetch from u (http, https, file).
func usable(u string) bool {
	for _, p := range []string{"http://", "https://", "file:/"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// readSources reads every apt source in apt's order.
func readSources(etc string) ([]source, error) {
	var out []source
	main := filepath.Join(etc, "apt", "sources.list")
	if f, err := os.Open(main); err == nil {
		out = append(out, parseOneLine(f, main)...)
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("distro: read apt sources: %w", err)
	}
	dir := filepath.Join(etc, "apt", "sources.list.d")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("distro: read apt sources: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		var parse func(io.Reader, string) []source
		switch {
		case strings.HasSuffix(n, ".list"):
			parse = parseOneLine
		case strings.HasSuffix(n, ".sources"):
			parse = parseDeb822
		default:
			continue // apt ignores other names (.disabled, .save…)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("distro: read apt sources: %w", err)
		}
		out = append(out, parse(io.LimitReader(f, 1<<20), p)...)
		f.Close()
	}
	return out, nil
}

// parseOneLine reads the one-line format: "deb [options] uri suite
// [component…]"; deb-src lines and comments are skipped.
func parseOneLine(r io.Reader, name string) []source {
	var out []source
	s := bufio.NewScanner(r)
	n := 0
	for s.Scan() {
		n++
		line, _, _ := strings.Cut(s.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options run to the first field ending in "]".
			i := 0
			for i < len(f) && !strings.HasSuffix(f[i], "]") {
				i++
			}
			f = f[min(i+1, len(f)):]
		}
		// cdrom: URIs carry the disc's label in brackets, spaces and all.
		if strings.Contains(f[0], "[") && !strings.Contains(f[0], "]") {
			i := 1
			for i < len(f) && !strings.Contains(f[i], "]") {
				i++
			}
			if i == len(f) {
				continue
			}
			f = append([]string{strings.Join(f[:i+1], " ")}, f[i+1:]...)
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, source{URIs: f[:1], Suites: f[1:2], Components: f[2:], From: fmt.Sprintf("%s:%d", name, n)})
	}
	return out
}

// parseDeb822 reads deb822 stanzas (sources.list(5) "DEB822-STYLE FORMAT"):
// blank-line separated, "Field: value" with continuation lines starting
// with white space, "#" comment lines.
func parseDeb822(r io.Reader, name string) []source {
	var out []source
	fields := map[string]string{}
	last := ""
	stanza, start := 0, 0
	flush := func() {
		if len(fields) == 0 {
			return
		}
		stanza++
		types := strings.Fields(fields["types"])
		enabled := strings.ToLower(strings.TrimSpace(fields["enabled"]))
		if contains(types, "deb") && enabled != "no" && enabled != "false" {
			out = append(out, source{
				URIs:       strings.Fields(fields["uris"]),
				Suites:     strings.Fields(fields["suites"]),
				Components: strings.Fields(fields["components"]),
				From:       fmt.Sprintf("%s:%d", name, start),
			})
		}
		fields, last = map[string]string{}, ""
	}
	s := bufio.NewScanner(r)
	n := 0
	for s.Scan() {
		n++
		line := s.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if len(fields) == 0 {
				start = n
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

// aptListName is the file name apt gives a downloaded index in
// /var/lib/apt/lists (apt-pkg/contrib/strutl.cc URItoFileName): the URI
// without scheme and credentials, a few characters %-escaped, "/" turned
// into "_".
func aptListName(uri, suite, file string) string {
	u := uri
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	} else if s, ok := strings.CutPrefix(u, "file:"); ok {
		u = s
	}
	if at := strings.LastIndex(u, "@"); at >= 0 && at < strings.IndexByte(u+"/", '/') {
		u = u[at+1:]
	}
	u = strings.TrimRight(u, "/") + "/dists/" + suite + "/" + file
	var b strings.Builder
	for i := 0; i < len(u); i++ {
		ch := u[i]
		if strings.IndexByte(`\|{}[]<>"^~_=!@#$%&*`, ch) >= 0 || ch <= ' ' || ch >= 0x7f {
			fmt.Fprintf(&b, "%%%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return strings.ReplaceAll(strings.TrimLeft(b.String(), "/"), "/", "_")
}

// ReleaseDate returns the Date field of suite's Release file as the
// machine's apt last downloaded it (lists under listsDir, normally
// /var/lib/apt/lists), without network access: `make deps` runs apt-get
// update, so a new point release of the suite shows up here and changes
// the cache key. It returns "" when apt has no copy.
func ReleaseDate(listsDir, mirror, suite string) string {
	for _, file := range []string{"InRelease", "Release"} {
		f, err := os.Open(filepath.Join(listsDir, aptListName(mirror, suite, file)))
		if err != nil {
			continue
		}
		d := releaseDate(io.LimitReader(f, 64<<10))
		f.Close()
		if d != "" {
			return d
		}
	}
	return ""
}

// releaseDate finds the Date field in the first paragraph of a Release file
// (clear-signed or not).
func releaseDate(r io.Reader) string {
	s := bufio.NewScanner(r)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "Date:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
