// Package docs holds no code: its tests keep the documentation honest. The
// DHCP server configurations in docs/dhcp are checked by each server's own
// syntax checker, the blocks the pages quote from them must still be in
// them, and every relative link of the pages must lead somewhere.
package docs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// checker is a DHCP server's own configuration test.
type checker struct {
	file string   // in docs/dhcp
	bin  string   // the server binary
	args []string // its arguments; "FILE" is replaced by the file's path
	// breakOld/breakNew turn the file into one the checker must refuse,
	// so the test proves the checker looks at the file at all.
	breakOld, breakNew string
}

var checkers = []checker{
	// dnsmasq(8): --test reads the configuration and exits.
	{file: "dnsmasq.conf", bin: "dnsmasq", args: []string{"--test", "-C", "FILE"},
		breakOld: "dhcp-range=", breakNew: "dhcp-rangee="},
	// dhcpd(8): -t tests the configuration file's syntax, without leases.
	{file: "dhcpd.conf", bin: "dhcpd", args: []string{"-t", "-cf", "FILE"},
		breakOld: "fixed-address 192.0.2.57;", breakNew: "fixed-adress 192.0.2.57;"},
	// kea-dhcp4(8): -t loads the configuration, checks it and exits; an
	// option-data naming an undefined option fails the check.
	{file: "kea-dhcp4.conf", bin: "kea-dhcp4", args: []string{"-t", "FILE"},
		breakOld: `"name": "iscsi-initiator-iqn", "data"`, breakNew: `"name": "iscsi-initiator-iq", "data"`},
}

// run runs the checker on path and returns its output and error.
func (c checker) run(t *testing.T, bin, path string) ([]byte, error) {
	t.Helper()
	args := make([]string, len(c.args))
	for i, a := range c.args {
		if a == "FILE" {
			a = path
		}
		args[i] = a
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}

func TestDHCPConfigsPassTheirServersChecks(t *testing.T) {
	for _, c := range checkers {
		t.Run(c.file, func(t *testing.T) {
			bin := testenv.RequireBinaries(t, c.bin)[0]
			path := filepath.Join("dhcp", c.file)
			if out, err := c.run(t, bin, path); err != nil {
				t.Fatalf("%s %v on %s: %v\n%s", c.bin, c.args, path, err, out)
			}

			// The same file, broken, must be refused.
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(src, []byte(c.breakOld)) {
				t.Fatalf("%s no longer contains %q, which the test breaks", path, c.breakOld)
			}
			bad := filepath.Join(t.TempDir(), c.file)
			if err := os.WriteFile(bad, bytes.Replace(src, []byte(c.breakOld), []byte(c.breakNew), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := c.run(t, bin, bad); err == nil {
				t.Errorf("%s accepted %s with %q replaced by %q; the check proves nothing\n%s", c.bin, c.file, c.breakOld, c.breakNew, out)
			}
		})
	}
}

// TestDHCPConfigsMatchLunboot checks that the configurations select lunboot
// by the vendor class it sends and hand out the options it reads.
func TestDHCPConfigsMatchLunboot(t *testing.T) {
	vc := netconf.DefaultVendorClass
	want := map[string][]string{
		"dnsmasq.conf": {
			"dhcp-vendorclass=set:lunboot," + vc + "\n",
			"vendor:" + vc + ",201,",
			"vendor:" + vc + ",203,",
			"option:root-path,",
			",203,",
		},
		"dhcpd.conf": {
			`option vendor-class-identifier = "` + vc + `"`,
			"code 201 = text;",
			"code 203 = text;",
			"option root-path ",
		},
		"kea-dhcp4.conf": {
			`option[vendor-class-identifier].text == '` + vc + `'`,
			`"code": 201,`,
			`"code": 203,`,
			`"encapsulate": "lunboot"`,
		},
	}
	for file, subs := range want {
		b, err := os.ReadFile(filepath.Join("dhcp", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if !strings.Contains(string(b), s) {
				t.Errorf("dhcp/%s does not contain %q", file, s)
			}
		}
	}
}

// quoteMark precedes a fenced block that a page quotes from a file:
// <!-- quoted from dhcp/dnsmasq.conf -->.
var quoteMark = regexp.MustCompile(`<!-- quoted from ([^ ]+) -->\n+` + "```[a-z]*\n((?s:.*?))```")

// TestQuotedBlocksAreInTheirFiles keeps the pages' excerpts of the example
// files in step with the files: each quoted block must appear in its file
// as consecutive lines.
func TestQuotedBlocksAreInTheirFiles(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range quoteMark.FindAllStringSubmatch(string(b), -1) {
			n++
			src, err := os.ReadFile(filepath.FromSlash(m[1]))
			if err != nil {
				t.Errorf("%s quotes %s: %v", page, m[1], err)
				continue
			}
			if !strings.Contains(string(src), m[2]) {
				t.Errorf("%s quotes from %s a block that is not in it (update the page or the file):\n%s", page, m[1], m[2])
			}
		}
	}
	if n == 0 {
		t.Fatal("no quoted blocks found; the marker or the pattern changed")
	}
}

// mdLink is a Markdown link target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinksResolve checks every relative link of the pages: the file exists
// and, for a link with #anchor into a Markdown page, a heading makes that
// anchor (GitHub's rule: lower case, punctuation dropped, spaces to '-').
func TestLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join("..", "README.md"))
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(stripCode(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), filepath.FromSlash(file))
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s: %v", page, target, err)
				continue
			}
			if anchor == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			anchors, err := headingAnchors(path)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors[anchor] {
				t.Errorf("%s links to %s: no heading in %s makes #%s", page, target, path, anchor)
			}
		}
	}
}

// stripCode blanks fenced code blocks, whose brackets are not links.
func stripCode(b []byte) []byte {
	var out bytes.Buffer
	in := false
	for line := range bytes.Lines(b) {
		if bytes.HasPrefix(bytes.TrimSpace(line), []byte("```")) {
			in = !in
			out.WriteByte('\n')
			continue
		}
		if in {
			out.WriteByte('\n')
			continue
		}
		out.Write(line)
	}
	return out.Bytes()
}

// headingAnchors returns the anchors GitHub makes for a page's headings.
func headingAnchors(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	for line := range bytes.Lines(stripCode(b)) {
		s := strings.TrimSpace(string(line))
		if !strings.HasPrefix(s, "#") {
			continue
		}
		s = strings.TrimSpace(strings.TrimLeft(s, "#"))
		a := slug(s)
		if k := seen[a]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", a, k)] = true
		} else {
			anchors[a] = true
		}
		seen[a]++
	}
	return anchors, nil
}

// slug is GitHub's heading anchor: lower case; letters, digits, '-', '_'
// and spaces kept, spaces turned into '-'; everything else dropped.
func slug(h string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			sb.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
