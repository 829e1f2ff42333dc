// Package sbin finds the system programs the project runs (tgtd, tgtadm,
// dnsmasq, sfdisk, mkfs.*): exec.LookPath, then /usr/sbin and /sbin, which
// a non-root user's PATH, and sudo's or CI's reduced one, often lack.
package sbin

import (
	"os"
	"os/exec"
	"path/filepath"
)

// Look returns the path of the executable name: from PATH, else from
// /usr/sbin or /sbin. It returns exec.ErrNotFound when there is none.
func Look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}
