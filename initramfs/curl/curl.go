// Package curl is the boot image's stand-in for u-root's pkg/curl: the same
// API for the local "file" scheme, and nothing else.
//
// u-root v0.16.0's GRUB and syslinux parsers (pkg/boot/grub,
// pkg/boot/syslinux), which lunboot's osfind runs on the LUN's file
// systems, take a curl.Schemes to open what a config names, so they import
// pkg/curl, whose package-level DefaultSchemes holds an HTTP and a TFTP
// client. Package initialisation keeps those reachable, and the linker
// with them net/http, crypto/tls, crypto/x509 and pack.ag/tftp: about
// 0.3 MiB of the compressed image for code the boot never runs (lunboot
// reads a disk's config from the disk; an entry that points at the network
// is not one it boots).
//
// initramfs/mkimage builds the image with `go build -overlay`, which puts
// this file in place of u-root's pkg/curl/schemes.go (overlay.go there):
// grub and syslinux compile unchanged against this API and open local files
// exactly as before (Schemes.Fetch, the lazy openers of Schemes.LazyFetch,
// the same URLError), while a URL of any other scheme fails with
// ErrNoSuchScheme as an unknown scheme always did. The host build and the
// tests use u-root's package; TestOverlay in mkimage checks the image's
// dependency list and this API against the u-root version go.mod pins.
//
// Only the names that the image's importers of pkg/curl use are here: a
// command added to the image that needs HTTP or TFTP (u-root's wget,
// pxeboot) fails to build, which is the signal to revisit this.
package curl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/u-root/uio/uio"
)

// ErrNoSuchScheme is returned (inside a URLError) for a URL whose scheme
// has no FileScheme: in the image, any scheme but "file".
var ErrNoSuchScheme = errors.New("no such scheme")

// ErrStatusNotOk is u-root's error for an HTTP reply other than 200; the
// image has no HTTP, it stays for the API.
var ErrStatusNotOk = errors.New("not status 200")

// File is a reference to a file fetched through this package.
type File interface {
	fmt.Stringer
	// URL is the file's original URL.
	URL() *url.URL
}

// FileWithCache is an io.ReaderAt that also names its URL.
type FileWithCache interface {
	io.ReaderAt
	File
}

// FileWithoutCache is an io.Reader that also names its URL.
type FileWithoutCache interface {
	io.Reader
	File
}

// FileScheme opens the files of one URL scheme.
type FileScheme interface {
	// Fetch returns a reader of the contents of u.
	Fetch(ctx context.Context, u *url.URL) (io.ReaderAt, error)
	// FetchWithoutCache returns a sequential reader of the contents of u.
	FetchWithoutCache(ctx context.Context, u *url.URL) (io.Reader, error)
}

// DefaultSchemes are the schemes the image supports: local files only.
var DefaultSchemes = Schemes{
	"file": &LocalFileClient{},
}

// URLError is an error opening a URL.
type URLError struct {
	URL *url.URL
	Err error
}

// Error implements error, in u-root's wording.
func (e *URLError) Error() string {
	return fmt.Sprintf("encountered error %v with %q", e.Err, e.URL)
}

// Unwrap returns the cause.
func (e *URLError) Unwrap() error { return e.Err }

// IsURLError reports whether err is a *URLError (not wrapped: the parsers
// test the error a fetch returned, as u-root's does).
func IsURLError(err error) bool {
	_, ok := err.(*URLError)
	return ok
}

// Schemes maps a URL scheme to what opens its files.
type Schemes map[string]FileScheme

// RegisterScheme adds a scheme to DefaultSchemes.
func RegisterScheme(scheme string, fs FileScheme) { DefaultSchemes.Register(scheme, fs) }

// Register adds or replaces the FileScheme of scheme.
func (s Schemes) Register(scheme string, fs FileScheme) { s[scheme] = fs }

// Fetch opens u with DefaultSchemes.
func Fetch(ctx context.Context, u *url.URL) (FileWithCache, error) {
	return DefaultSchemes.Fetch(ctx, u)
}

// FetchWithoutCache opens u with DefaultSchemes for sequential reading.
func FetchWithoutCache(ctx context.Context, u *url.URL) (FileWithoutCache, error) {
	return DefaultSchemes.FetchWithoutCache(ctx, u)
}

// LazyFetch is DefaultSchemes.LazyFetch.
func LazyFetch(u *url.URL) (FileWithCache, error) { return DefaultSchemes.LazyFetch(u) }

// LazyFetchWithoutCache is DefaultSchemes.LazyFetchWithoutCache.
func LazyFetchWithoutCache(u *url.URL) (FileWithoutCache, error) {
	return DefaultSchemes.LazyFetchWithoutCache(u)
}

func (s Schemes) scheme(u *url.URL) (FileScheme, error) {
	fs, ok := s[u.Scheme]
	if !ok {
		return nil, &URLError{URL: u, Err: ErrNoSuchScheme}
	}
	return fs, nil
}

// Fetch opens u now with the FileScheme of its scheme.
func (s Schemes) Fetch(ctx context.Context, u *url.URL) (FileWithCache, error) {
	fs, err := s.scheme(u)
	if err != nil {
		return nil, err
	}
	r, err := fs.Fetch(ctx, u)
	if err != nil {
		return nil, &URLError{URL: u, Err: err}
	}
	return &readerAt{ReaderAt: r, url: u}, nil
}

// FetchWithoutCache opens u now for sequential reading.
func (s Schemes) FetchWithoutCache(ctx context.Context, u *url.URL) (FileWithoutCache, error) {
	fs, err := s.scheme(u)
	if err != nil {
		return nil, err
	}
	r, err := fs.FetchWithoutCache(ctx, u)
	if err != nil {
		return nil, &URLError{URL: u, Err: err}
	}
	return &reader{Reader: r, url: u}, nil
}

// LazyFetch checks the scheme now and opens u at the first read (a
// *uio.LazyOpenerAt, which pkg/boot's kexec loading recognises): a config
// can name many kernels, and only the one booted is read.
func (s Schemes) LazyFetch(u *url.URL) (FileWithCache, error) {
	fs, err := s.scheme(u)
	if err != nil {
		return nil, err
	}
	open := func() (io.ReaderAt, error) {
		r, err := fs.Fetch(context.Background(), u)
		if err != nil {
			return nil, &URLError{URL: u, Err: err}
		}
		return r, nil
	}
	return &readerAt{ReaderAt: uio.NewLazyOpenerAt(u.String(), open), url: u}, nil
}

// LazyFetchWithoutCache is LazyFetch for sequential reading.
func (s Schemes) LazyFetchWithoutCache(u *url.URL) (FileWithoutCache, error) {
	fs, err := s.scheme(u)
	if err != nil {
		return nil, err
	}
	open := func() (io.Reader, error) {
		r, err := fs.FetchWithoutCache(context.Background(), u)
		if err != nil {
			return nil, &URLError{URL: u, Err: err}
		}
		return r, nil
	}
	return &reader{Reader: uio.NewLazyOpener(u.String(), open), url: u}, nil
}

// readerAt and reader name the URL they read (fmt.Stringer, File).
type readerAt struct {
	io.ReaderAt
	url *url.URL
}

func (f *readerAt) URL() *url.URL  { return f.url }
func (f *readerAt) String() string { return f.url.String() }

type reader struct {
	io.Reader
	url *url.URL
}

func (f *reader) URL() *url.URL  { return f.url }
func (f *reader) String() string { return f.url.String() }

// LocalFileClient opens file URLs: the path, cleaned, on the local file
// systems.
type LocalFileClient struct{}

// Fetch opens u.Path.
func (LocalFileClient) Fetch(_ context.Context, u *url.URL) (io.ReaderAt, error) {
	return os.Open(filepath.Clean(u.Path))
}

// FetchWithoutCache opens u.Path.
func (LocalFileClient) FetchWithoutCache(_ context.Context, u *url.URL) (io.Reader, error) {
	return os.Open(filepath.Clean(u.Path))
}
