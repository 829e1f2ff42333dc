package vmtest

import (
	"fmt"

	"github.com/lunboot/lunboot/pkg/kmod/depmod"
)

// resolveModules returns the modules the guest loads for names, each after
// the modules it needs, from the kernel's module directory modDir
// (lib/modules/<version>). It is depmod's resolution, the one the image
// builder uses, so a guest test loads what a lunboot image would; modules
// the kernel has built in are left out.
func resolveModules(modDir string, names []string) ([]depmod.Module, error) {
	ms, err := depmod.Resolve(modDir, names)
	if err != nil {
		return nil, fmt.Errorf("guest modules: %w", err)
	}
	out := ms[:0]
	for _, m := range ms {
		if !m.Builtin {
			out = append(out, m)
		}
	}
	return out, nil
}

func moduleNames(ms []depmod.Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}
