package handoff

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// KernelRelease reads the release (what `uname -r` prints, "6.1.0-56-amd64")
// of an x86 bzImage: the setup header's kernel_version field points at
// "6.1.0-56-amd64 (debian-kernel@…) #1 SMP …" (Documentation/arch/x86/boot.rst).
// The release names the kernel's modules directory and its config-<release>.
func KernelRelease(r io.ReadSeeker) (string, error) {
	v, err := bzimage.KVer(r)
	if err != nil {
		return "", fmt.Errorf("handoff: kernel version: %w", err)
	}
	rel, _, _ := strings.Cut(v, " ")
	if rel == "" {
		return "", errors.New("handoff: kernel version: empty version string")
	}
	return rel, nil
}

// ReadKernelFacts reads what the OS kernel's build says about taking a
// table from the initrd (config-<release> at the top of a boot partition or
// in a root partition's boot/), and the modules it has built in
// (lib/modules/<release>/modules.builtin, also under usr/), from the OS's
// partitions. What cannot be read stays unknown: the zero KernelSupport.
func ReadKernelFacts(partitions []fs.FS, release string) (KernelSupport, []string) {
	var ks KernelSupport
	var builtin []string
	for _, p := range partitions {
		for _, dir := range []string{".", "boot"} {
			if f, err := p.Open(path.Join(dir, "config-"+release)); err == nil {
				if k, err := ParseKernelConfig(f); err == nil {
					ks = k
				}
				f.Close()
			}
		}
		for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
			raw, err := fs.ReadFile(p, path.Join(dir, release, "modules.builtin"))
			if err != nil {
				continue
			}
			for _, line := range strings.Fields(string(raw)) {
				builtin = append(builtin, strings.TrimSuffix(path.Base(line), ".ko"))
			}
		}
	}
	return ks, builtin
}
