package vmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/vmtest/guest"
)

// ImageSpec describes a guest that runs one of the project's programs
// rather than a test: the same init (guestinit), module resolution and
// initramfs as Run's guests, for helpers such as the lab's LIO target VM.
type ImageSpec struct {
	// KernelDir is an unpacked kernel package (testenv.KernelDir() when
	// empty).
	KernelDir string
	// Modules are loaded, dependencies first, before Command runs.
	Modules []string
	// Programs maps guest paths to Go packages of this module, each built
	// static for the guest ("/bin/lioagent":
	// "github.com/lunboot/lunboot/internal/lio/cmd/lioagent").
	Programs map[string]string
	// Command is what the init runs; when it exits the guest powers off.
	Command []string
	// Env is added to Command's environment.
	Env []string
}

// BuildImage writes the guest's initramfs (uncompressed newc cpio) to out
// and returns the kernel to boot it with. It needs the go command.
func BuildImage(ctx context.Context, out string, spec ImageSpec) (kernel string, err error) {
	if len(spec.Command) == 0 {
		return "", errors.New("vmtest: image: no command")
	}
	if spec.KernelDir == "" {
		spec.KernelDir = testenv.KernelDir()
	}
	kernel, modDir, err := findKernel(spec.KernelDir)
	if err != nil {
		return "", fmt.Errorf("vmtest: image: %w", err)
	}
	goTool := findGo()
	if goTool == "" {
		return "", errors.New("vmtest: image: the go command is needed to build the guest's programs")
	}
	dir := filepath.Dir(out)
	initBin := filepath.Join(dir, "init.bin")
	if err := goBuild(ctx, goTool, "build", "-o", initBin, "github.com/lunboot/lunboot/internal/vmtest/guestinit"); err != nil {
		return "", fmt.Errorf("vmtest: image: build guest init: %w", err)
	}
	entries := []entry{{Name: "init", Host: initBin, Mode: 0o755}}
	guestPaths := make([]string, 0, len(spec.Programs))
	for p := range spec.Programs {
		guestPaths = append(guestPaths, p)
	}
	sort.Strings(guestPaths)
	for i, p := range guestPaths {
		bin := filepath.Join(dir, fmt.Sprintf("prog%d.bin", i))
		if err := goBuild(ctx, goTool, "build", "-o", bin, spec.Programs[p]); err != nil {
			return "", fmt.Errorf("vmtest: image: build %s: %w", spec.Programs[p], err)
		}
		entries = append(entries, entry{Name: p, Host: bin, Mode: 0o755})
	}
	mods, err := resolveModules(modDir, spec.Modules)
	if err != nil {
		return "", fmt.Errorf("vmtest: image: %w", err)
	}
	cfg := guest.Config{Command: spec.Command, Dir: "/tmp", Env: spec.Env}
	for _, m := range mods {
		p := "/vmtest/modules/" + m.Name + ".ko"
		entries = append(entries, entry{Name: p, Host: m.Path})
		cfg.Modules = append(cfg.Modules, guest.Module{Name: m.Name, Path: p})
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	entries = append(entries, entry{Name: guest.ConfigPath, Data: b})
	if err := writeInitramfs(out, entries); err != nil {
		return "", fmt.Errorf("vmtest: image: write initramfs: %w", err)
	}
	return kernel, nil
}
