package vmtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/lunboot/lunboot/internal/testenv"
)

func TestRunPattern(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"TestKernel", "^TestKernel$"},
		{"TestKernel/read_write", "^TestKernel$/^read_write$"},
		{"TestX/a+b(1)", `^TestX$/^a\+b\(1\)$`},
	}
	for _, tt := range tests {
		if got := runPattern(tt.name); got != tt.want {
			t.Errorf("runPattern(%q) = %q, want %q", tt.name, got, tt.want)
		}
		// Each level must match its own name and not a longer one.
		for i, p := range strings.Split(runPattern(tt.name), "/") {
			part := strings.Split(tt.name, "/")[i]
			re := regexp.MustCompile(p)
			if !re.MatchString(part) || re.MatchString(part+"2") {
				t.Errorf("runPattern(%q) level %d = %q does not select exactly %q", tt.name, i, p, part)
			}
		}
	}
}

func TestGuestTimeout(t *testing.T) {
	for _, tt := range []struct{ total, want time.Duration }{
		{3 * time.Minute, 160 * time.Second},
		{30 * time.Second, 15 * time.Second},
	} {
		if got := guestTimeout(tt.total); got != tt.want {
			t.Errorf("guestTimeout(%v) = %v, want %v", tt.total, got, tt.want)
		}
	}
}

func TestWriteInitramfs(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "bin")
	os.WriteFile(host, []byte("#!binary"), 0o755)
	sub := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(sub, "a"), 0o755)
	os.WriteFile(filepath.Join(sub, "a", "f.txt"), []byte("hello"), 0o644)
	extra, err := expandFiles(map[string]string{"/data/tree": sub})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	entries := append([]entry{
		{Name: "init", Host: host, Mode: 0o755},
		{Name: "/vmtest/config.json", Data: []byte(`{}`)},
		{Name: "vmtest/modules/nbd.ko", Data: []byte("ko")},
	}, extra...)
	if err := writeInitramfs(out, entries); err != nil {
		t.Fatalf("writeInitramfs = %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	seen := map[string]cpio.Record{}
	var order []string
	for _, r := range recs {
		seen[r.Name] = r
		order = append(order, r.Name)
	}
	content := func(name string) string {
		r := seen[name]
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		return string(b)
	}
	files := map[string]string{
		"init":                  "#!binary",
		"vmtest/config.json":    "{}",
		"vmtest/modules/nbd.ko": "ko",
		"data/tree/a/f.txt":     "hello",
	}
	for name, want := range files {
		if got := content(name); got != want {
			t.Errorf("initramfs %s = %q, want %q", name, got, want)
		}
	}
	if m := seen["init"].Mode; m&0o777 != 0o755 || m&cpio.S_IFMT != cpio.S_IFREG {
		t.Errorf("init mode = %o, want a 0755 regular file", m)
	}
	con := seen["dev/console"]
	if con.Mode&cpio.S_IFMT != cpio.S_IFCHR || con.Rmajor != 5 || con.Rminor != 1 {
		t.Errorf("dev/console = %+v, want char device 5:1", con.Info)
	}
	// Every directory must come before what it holds.
	idx := map[string]int{}
	for i, n := range order {
		idx[n] = i
	}
	for _, n := range order {
		for d := filepath.Dir(n); d != "." && d != "/"; d = filepath.Dir(d) {
			if i, ok := idx[d]; !ok || i > idx[n] {
				t.Errorf("directory %s missing or after %s", d, n)
			}
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run"} {
		if seen[d].Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("initramfs lacks directory %s", d)
		}
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", 70<<10)
	in := "one\r\ntwo\n\n" + long + "\nlast"
	ch := make(chan string, 16)
	go func() { readLines(strings.NewReader(in), ch); close(ch) }()
	var got []string
	for l := range ch {
		got = append(got, l)
	}
	if len(got) != 6 || got[0] != "one" || got[1] != "two" || got[2] != "" || got[5] != "last" ||
		len(got[3])+len(got[4]) != len(long) {
		t.Errorf("readLines split %d bytes into %d lines: %q…", len(in), len(got), got[:min(3, len(got))])
	}
}

func TestLimitedWriter(t *testing.T) {
	var b bytes.Buffer
	w := &limitedWriter{w: &b, n: 5}
	w.Write([]byte("abc"))
	if n, err := w.Write([]byte("defgh")); n != 5 || err != nil {
		t.Errorf("Write = %d, %v, want 5, nil (the caller must not see the cut)", n, err)
	}
	if diff := cmp.Diff("abcde", b.String()); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
}

func TestGuestReady(t *testing.T) {
	goTool := findGo()
	if goTool == "" {
		testenv.Missing(t, "no go command on PATH or in GOROOT")
	}
	static := filepath.Join(t.TempDir(), "init")
	if err := goBuild(t.Context(), goTool, "build", "-o", static, "github.com/lunboot/lunboot/internal/vmtest/guestinit"); err != nil {
		t.Fatal(err)
	}
	if !guestReady(static) {
		t.Errorf("guestReady(static linux/amd64 v1 build) = false, want true")
	}
	for _, p := range []string{"/bin/sh", "/nonexistent"} {
		if _, err := os.Stat(p); err == nil || p == "/nonexistent" {
			if guestReady(p) {
				t.Errorf("guestReady(%s) = true, want false (dynamic or missing)", p)
			}
		}
	}
}
