// Package sysfs reads kernel attribute files (/sys/...): small text, at
// most a page each, ending in a newline or, in some firmware tables'
// attributes (iscsi_boot_sysfs), NUL padding.
package sysfs

import (
	"io"
	"os"
	"strings"
)

// MaxAttr bounds one read: sysfs shows at most a page per attribute, and a
// file that is not sysfs must not make the caller read without end.
const MaxAttr = 4096

// ReadAttr returns the attribute at path without its trailing newlines and
// NULs.
func ReadAttr(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxAttr))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n\x00"), nil
}
