package curl

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

func TestFetchLocal(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(p, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	// grub and syslinux build file URLs from the mounted root and the
	// config's relative path: unclean paths must open the same file.
	u := &url.URL{Scheme: "file", Path: dir + "/boot/../vmlinuz"}
	ctx := context.Background()

	f, err := DefaultSchemes.Fetch(ctx, u)
	if err != nil {
		t.Fatalf("Fetch(%s) = %v", u, err)
	}
	if got := read(t, io.NewSectionReader(f, 0, 1<<20)); got != "kernel" {
		t.Errorf("Fetch(%s) reads %q, want %q", u, got, "kernel")
	}
	if f.URL() != u || f.String() != u.String() {
		t.Errorf("Fetch(%s) names %v / %q, want the URL", u, f.URL(), f.String())
	}
	r, err := DefaultSchemes.FetchWithoutCache(ctx, u)
	if err != nil {
		t.Fatalf("FetchWithoutCache(%s) = %v", u, err)
	}
	if got := read(t, r); got != "kernel" {
		t.Errorf("FetchWithoutCache(%s) reads %q", u, got)
	}
	lf, err := LazyFetch(u)
	if err != nil {
		t.Fatalf("LazyFetch(%s) = %v", u, err)
	}
	if got := read(t, io.NewSectionReader(lf, 0, 1<<20)); got != "kernel" {
		t.Errorf("LazyFetch(%s) reads %q", u, got)
	}
	lr, err := LazyFetchWithoutCache(u)
	if err != nil {
		t.Fatalf("LazyFetchWithoutCache(%s) = %v", u, err)
	}
	if got := read(t, lr); got != "kernel" {
		t.Errorf("LazyFetchWithoutCache(%s) reads %q", u, got)
	}
}

// TestLazyMissing: a config may name a kernel that is not there; the lazy
// fetch succeeds and the first read fails with a URLError, as u-root's.
func TestLazyMissing(t *testing.T) {
	u := &url.URL{Scheme: "file", Path: filepath.Join(t.TempDir(), "missing")}
	f, err := DefaultSchemes.LazyFetch(u)
	if err != nil {
		t.Fatalf("LazyFetch(missing) = %v, want the error at the first read", err)
	}
	_, err = f.ReadAt(make([]byte, 1), 0)
	var ue *URLError
	if !errors.As(err, &ue) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadAt(missing) = %v, want a URLError wrapping ErrNotExist", err)
	}
	if _, err := Fetch(context.Background(), u); !IsURLError(err) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Fetch(missing) = %v, want a URLError wrapping ErrNotExist", err)
	}
}

// TestNoNetwork: the image opens local files only; a config's http or tftp
// URL fails at once, as any unknown scheme, with no traffic.
func TestNoNetwork(t *testing.T) {
	for _, raw := range []string{"http://192.0.2.1/vmlinuz", "tftp://192.0.2.1/vmlinuz", "https://example.invalid/x"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		_, err1 := DefaultSchemes.Fetch(ctx, u)
		_, err2 := DefaultSchemes.FetchWithoutCache(ctx, u)
		_, err3 := DefaultSchemes.LazyFetch(u)
		_, err4 := DefaultSchemes.LazyFetchWithoutCache(u)
		for i, err := range []error{err1, err2, err3, err4} {
			if !IsURLError(err) || !errors.Is(err, ErrNoSuchScheme) {
				t.Errorf("fetch %d of %s = %v, want a URLError wrapping ErrNoSuchScheme", i+1, raw, err)
			}
		}
	}
	if IsURLError(errors.New("x")) || IsURLError(nil) {
		t.Errorf("IsURLError(non-URL error) = true")
	}
}

func TestRegister(t *testing.T) {
	s := Schemes{}
	s.Register("file", LocalFileClient{})
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(context.Background(), &url.URL{Scheme: "file", Path: p}); err != nil {
		t.Errorf("Fetch with a registered scheme = %v", err)
	}
}

func read(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	return string(b)
}
