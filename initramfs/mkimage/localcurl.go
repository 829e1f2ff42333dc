package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lunboot/lunboot/internal/fsutil"
)

// The image's u-root has a local-only pkg/curl (package
// github.com/lunboot/lunboot/initramfs/curl says why: it keeps net/http,
// crypto/tls and TFTP out of the image). go build -overlay cannot do it
// (the go command refuses to overlay files in the module cache), so
// mkimage builds from a copy of the u-root module directory made of
// symbolic links into the module cache, where only pkg/curl/schemes.go is
// lunboot's file, and a copy of the u-root module (initramfs/uroot) that
// replaces github.com/u-root/u-root with it.
const (
	urootPath = "github.com/u-root/u-root"
	// curlFile is the file of u-root's pkg/curl the image replaces, and
	// localCurl what replaces it (relative to the repository).
	curlFile  = "pkg/curl/schemes.go"
	curlTest  = "pkg/curl/schemes_test.go"
	localCurl = "initramfs/curl/curl.go"
)

// imageModule lays out, under tmp, the u-root module with the local-only
// pkg/curl (tmp/u-root) and the module the busybox is built in
// (tmp/uroot: initramfs/uroot's go.mod, go.sum and tools.go, with lunboot
// replaced by the repository and u-root by tmp/u-root). It returns the
// latter's directory, which is where go tool u-root and go list run.
func imageModule(ctx context.Context, repo, urootDir, tmp string) (string, error) {
	// go mod download, not go list -m: on a fresh machine the module is
	// not in the cache yet, and go list -m would give no directory.
	out, err := goCmd(ctx, urootDir, "mod", "download", "-json", urootPath)
	if err != nil {
		return "", err
	}
	var dl struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil {
		return "", fmt.Errorf("go mod download %s in %s: %w", urootPath, urootModule, err)
	}
	if dl.Error != "" || dl.Dir == "" {
		return "", fmt.Errorf("go mod download %s in %s: no directory: %s", urootPath, urootModule, dl.Error)
	}
	pinned := dl.Dir
	if _, err := os.Stat(filepath.Join(pinned, curlFile)); err != nil {
		return "", fmt.Errorf("u-root's %s, which the image replaces with %s: %w (a new u-root version: check what its pkg/curl declares and adapt %s)", curlFile, localCurl, err, localCurl)
	}
	local := filepath.Join(tmp, "u-root")
	if err := linkTree(pinned, local, curlFile); err != nil {
		return "", fmt.Errorf("local-curl u-root: %w", err)
	}
	if err := fsutil.CopyFile(filepath.Join(repo, localCurl), filepath.Join(local, curlFile)); err != nil {
		return "", fmt.Errorf("local-curl u-root: %w", err)
	}
	// u-root's tests of the HTTP and TFTP clients cannot build here.
	if err := os.Remove(filepath.Join(local, curlTest)); err != nil && !os.IsNotExist(err) {
		return "", err
	}

	mod := filepath.Join(tmp, "uroot")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return "", err
	}
	for _, n := range []string{"go.mod", "go.sum", "tools.go"} {
		if err := fsutil.CopyFile(filepath.Join(urootDir, n), filepath.Join(mod, n)); err != nil {
			return "", fmt.Errorf("image module: %w", err)
		}
	}
	if _, err := goCmd(ctx, mod, "mod", "edit",
		"-replace", "github.com/lunboot/lunboot="+repo,
		"-replace", urootPath+"="+local); err != nil {
		return "", err
	}
	return mod, nil
}

// linkTree makes dst a tree of symbolic links to src's entries, with real
// directories only along the path of except (a slash-separated path
// relative to src), whose file is left out for the caller to write.
func linkTree(src, dst, except string) error {
	first, rest, _ := strings.Cut(except, "/")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		switch {
		case e.Name() != first:
			if err := os.Symlink(s, d); err != nil {
				return err
			}
		case rest != "":
			if err := linkTree(s, d, rest); err != nil {
				return err
			}
		}
	}
	return nil
}
