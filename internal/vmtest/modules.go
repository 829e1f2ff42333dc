package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Module is a loadable kernel module found in a kernel tree.
type Module struct {
	// Name is the module name with dashes as underscores ("nbd").
	Name string
	// Path is the module file (.ko, or .ko.xz/.ko.zst/.ko.gz).
	Path string
	// Depends lists the modules it needs, from its .modinfo "depends=".
	Depends []string
}

// maxModuleSize bounds what is read from one module file (the largest
// Debian 6.1 module, amdgpu, is about 15 MiB uncompressed).
const maxModuleSize = 256 << 20

// moduleName normalises a module or file name: "virtio-net.ko" and
// "virtio_net" are the same module to the kernel.
func moduleName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ResolveModules returns the modules to load for names, each after the
// modules it depends on. modDir is a kernel's lib/modules/<version>. Debian's
// kernel package ships no modules.dep, so dependencies come from each
// module's .modinfo section; modules listed in modules.builtin are skipped.
func ResolveModules(modDir string, names []string) ([]Module, error) {
	index, err := indexModules(modDir)
	if err != nil {
		return nil, err
	}
	builtin := readBuiltin(filepath.Join(modDir, "modules.builtin"))
	return resolve(names, func(name string) (Module, bool, error) {
		if builtin[name] {
			return Module{}, true, nil
		}
		path, ok := index[name]
		if !ok {
			return Module{}, false, fmt.Errorf("module %q not found under %s (nor built in)", name, modDir)
		}
		deps, err := moduleDepends(path)
		if err != nil {
			return Module{}, false, err
		}
		return Module{Name: name, Path: path, Depends: deps}, false, nil
	})
}

// resolve orders the modules depth first, dependencies before dependents.
// lookup returns a module, or builtin=true for one that needs no loading.
func resolve(names []string, lookup func(name string) (m Module, builtin bool, err error)) ([]Module, error) {
	var out []Module
	done := map[string]bool{}
	onPath := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = moduleName(name)
		if done[name] {
			return nil
		}
		chain = append(chain, name)
		if onPath[name] {
			return fmt.Errorf("module dependency cycle: %s", strings.Join(chain, " -> "))
		}
		m, builtin, err := lookup(name)
		if err != nil {
			if len(chain) > 1 {
				return fmt.Errorf("%w (needed by %s)", err, strings.Join(chain[:len(chain)-1], " -> "))
			}
			return err
		}
		if !builtin {
			onPath[name] = true
			for _, d := range m.Depends {
				if err := visit(d, chain); err != nil {
					return err
				}
			}
			onPath[name] = false
			out = append(out, m)
		}
		done[name] = true
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func indexModules(modDir string) (map[string]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(modDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if d.Type().IsRegular() && (strings.HasSuffix(n, ".ko") || strings.Contains(n, ".ko.")) {
			name := moduleName(n)
			if _, dup := index[name]; !dup {
				index[name] = path
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	return index, nil
}

// readBuiltin returns the names in modules.builtin (one "kernel/…/x.ko"
// per line); a missing file means none.
func readBuiltin(path string) map[string]bool {
	out := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := strings.TrimSpace(s.Text()); l != "" {
			out[moduleName(l)] = true
		}
	}
	return out
}

// ReadModule returns a module file's ELF image, decompressing .xz, .zst and
// .gz modules.
func ReadModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = xr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = gr
	}
	b, err := io.ReadAll(io.LimitReader(r, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxModuleSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxModuleSize)
	}
	return b, nil
}

func moduleDepends(path string) ([]string, error) {
	b, err := ReadModule(path)
	if err != nil {
		return nil, err
	}
	info, err := modinfo(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return splitDepends(info["depends"]), nil
}

// modinfo returns the key=value strings of an ELF module's .modinfo
// section (NUL-separated, written by MODULE_INFO in include/linux/module.h).
// Repeated keys (alias=, parm=) keep their first value.
func modinfo(image []byte) (map[string]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	defer ef.Close()
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		if _, dup := info[string(k)]; !dup {
			info[string(k)] = string(v)
		}
	}
	return info, nil
}

func splitDepends(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, moduleName(d))
		}
	}
	return out
}
