// Package fsutil holds the small file operations the build tools (mkimage,
// mkefi, mklinuxboot) share, so each is written once.
package fsutil

import (
	"fmt"
	"io"
	"os"
)

// CopyFile copies src to dst through a temporary file and a rename, so that
// dst is either the old file or the whole new one, never half of it.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// Size is the size of the file at p, 0 when it cannot be read (the build
// tools print it in their summaries; a missing file is reported elsewhere).
func Size(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}
