package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

// A fake kernel source: a Makefile with the targets mklinuxboot runs and
// the two kconfig scripts, enough to exercise the caches without a
// compiler. bzImage is a header plus the configured initramfs, and every
// make bzImage leaves a line in the tree's "links" file.
var fakeTree = map[string]string{
	"Makefile": `tinyconfig:
	echo CONFIG_64BIT=y > .config
olddefconfig:
	grep -v DROPME .config > .config.new; mv .config.new .config
bzImage:
	mkdir -p arch/x86/boot
	{ echo fake-kernel; cat "$$(sed -n 's/^CONFIG_INITRAMFS_SOURCE="\(.*\)"/\1/p' .config)"; } > arch/x86/boot/bzImage
	echo link >> links
`,
	// merge_config.sh -m -O DIR BASE FRAGMENT
	"scripts/kconfig/merge_config.sh": "#!/bin/sh\ngrep '^CONFIG_' \"$5\" >> \"$4\"\n",
	// config --file F --set-str K V --enable K2
	"scripts/config": "#!/bin/sh\nprintf 'CONFIG_%s=\"%s\"\\nCONFIG_%s=y\\n' \"$4\" \"$5\" \"$7\" >> \"$2\"\n",
}

func makeFakeSource(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"make", "tar", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (make deps)")
		}
	}
	dir := t.TempDir()
	top := filepath.Join(dir, "linux-source-6.1")
	for name, body := range fakeTree {
		p := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(dir, "linux-source-6.1.tar.xz")
	if out, err := exec.Command("tar", "-cJf", tarball, "-C", dir, "linux-source-6.1").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return tarball
}

// TestCaches: a cold build, then the same inputs (a copy from the image
// cache, no make), a new initramfs (a relink of the cached tree), an
// interrupted build (resumed without unpacking), the budget, and a
// fragment line that olddefconfig drops (named in the error).
func TestCaches(t *testing.T) {
	source := makeFakeSource(t)
	dir := t.TempDir()
	out, cache := filepath.Join(dir, "out"), filepath.Join(dir, "cache")
	frag := filepath.Join(dir, "frag.config")
	cpio := filepath.Join(dir, "lunboot-nomodules.cpio")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(frag, "# comment\nCONFIG_NBD=y\n")
	write(cpio, "image one\n")
	c := config{out: out, cache: cache, source: source, fragment: frag, initramfs: cpio, jobs: 1, budget: 1 << 20}
	tree := func() string {
		m, _ := filepath.Glob(filepath.Join(cache, "linuxboot", "tree-*[0-9a-f]"))
		if len(m) != 1 {
			t.Fatalf("trees in the cache: %q, want one", m)
		}
		return m[0]
	}
	run := func(want, image string) string {
		t.Helper()
		var log bytes.Buffer
		if err := build(t.Context(), c, &log); err != nil {
			t.Fatalf("build: %v", err)
		}
		if !strings.Contains(log.String(), want) {
			t.Errorf("build said %q, want %q", log.String(), want)
		}
		got, err := os.ReadFile(filepath.Join(out, outName))
		if err != nil {
			t.Fatal(err)
		}
		if w := "fake-kernel\n" + image; string(got) != w {
			t.Errorf("%s = %q, want %q", outName, got, w)
		}
		links, _ := os.ReadFile(filepath.Join(tree(), "src", "links"))
		return string(links)
	}

	if links := run("built cold", "image one\n"); links != "link\n" {
		t.Errorf("cold build linked %q times", links)
	}
	config, _ := os.ReadFile(filepath.Join(tree(), "src", ".config"))
	if !strings.Contains(string(config), "CONFIG_NBD=y") || !strings.Contains(string(config), "CONFIG_INITRAMFS_COMPRESSION_NONE=y") {
		t.Errorf("the tree's .config lacks the fragment or the uncompressed initramfs:\n%s", config)
	}
	if links := run("up to date", "image one\n"); links != "link\n" {
		t.Errorf("same inputs: make ran again (links %q)", links)
	}
	write(cpio, "image two\n")
	if links := run("relinking the cached kernel", "image two\n"); links != "link\nlink\n" {
		t.Errorf("new initramfs: links %q, want a second one", links)
	}
	os.Remove(filepath.Join(tree(), ".built"))
	write(cpio, "image three\n")
	if links := run("resuming", "image three\n"); links != "link\nlink\nlink\n" {
		t.Errorf("resumed build: links %q, want a third one", links)
	}

	c.budget = 4
	write(cpio, "image four\n")
	if err := build(t.Context(), c, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "over the") {
		t.Errorf("build over budget = %v, want an error saying so", err)
	}
	c.budget = 1 << 20

	write(frag, "CONFIG_NBD=y\nCONFIG_DROPME=y\n")
	err := build(t.Context(), c, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_DROPME=y") {
		t.Errorf("build with a line olddefconfig drops = %v, want an error naming it", err)
	}
}
