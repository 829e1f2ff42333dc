// Package depmod resolves Linux kernel modules and their dependencies from an
// unpacked kernel tree, at image build time, the way depmod(8) and modprobe(8)
// would on an installed system.
//
// Debian's linux-image packages ship no modules.dep (the postinst runs depmod
// on the target), so the dependencies are read from each module's ELF
// .modinfo section: "depends=" lists the modules whose symbols it uses
// (scripts/mod/modpost.c writes it), "softdep=pre: …" the modules a loader
// should insert first although no symbol ties them (crc32c for ext4, for
// example), and "alias=" the names a module can be asked for by.
//
// This package reads files with debug/elf and belongs in build tools, not in
// the boot image; the image's run-time loader is package kmod, which only
// reads the load order written from Resolve's result.
package depmod

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// ErrUnknownModule is returned (wrapped) when a requested module, or one a
// module depends on, is neither a .ko file in the tree nor built in.
var ErrUnknownModule = errors.New("unknown module")

// ErrCycle is returned (wrapped) when the dependencies form a cycle, which a
// loader could never satisfy.
var ErrCycle = errors.New("dependency cycle")

// maxModinfo bounds how much of a .modinfo section is read. The largest in a
// Debian 6.1 kernel is a few KiB (firmware and alias lists); anything near
// this bound is not a kernel module.
const maxModinfo = 1 << 20

// Module is one module of a resolved set.
type Module struct {
	// Name is the kernel's name for the module, as /proc/modules and
	// /sys/module spell it: '-' in file names becomes '_'.
	Name string
	// Path is the .ko file on the build host; empty when Builtin.
	Path string
	// Rel is Path relative to the module directory (lib/modules/<release>),
	// e.g. "kernel/drivers/net/virtio_net.ko": where the file goes in an
	// image. Empty when Builtin.
	Rel string
	// Depends lists the modules that must be loaded before this one: its
	// .modinfo depends= entries, then its "softdep=pre:" modules: those
	// named like a module file (pulled in, as modprobe would) and those
	// that another module of the set provides by name or alias. Every
	// name is earlier in Resolve's result.
	Depends []string
	// MissingSoftdeps lists "softdep=pre:" names that nothing in the set
	// and nothing built in provides. A loader without modprobe cannot
	// fetch them later, so the builder should warn: the module may fail
	// where it needs one (ext4 mounts fail without crc32c).
	MissingSoftdeps []string
	// Builtin is true when the kernel has the module compiled in: there
	// is nothing to load.
	Builtin bool
	// Aliases are the module's .modinfo alias= values, in file order:
	// the device patterns and names modprobe would find it by. The image
	// builder writes them to the image's modules.alias (see kmod.AliasFile).
	Aliases []string
}

// Tree is the modules of one kernel release.
type Tree struct {
	// Dir is the module directory, e.g. <kernelDir>/lib/modules/6.1.0-56-amd64.
	Dir string
	// Release is the kernel release the modules are for (uname -r).
	Release string

	files          map[string]string // module name -> path relative to Dir
	builtin        map[string]bool   // built-in module names
	builtinAliases map[string]bool   // aliases of built-in modules
}

// Resolve opens the kernel tree at kernelDir (see Open) and resolves names
// (see Tree.Resolve).
func Resolve(kernelDir string, names []string) ([]Module, error) {
	t, err := Open(kernelDir)
	if err != nil {
		return nil, err
	}
	return t.Resolve(names)
}

// Open indexes the modules of a kernel. kernelDir is either an unpacked
// kernel package (holding lib/modules/<release> or usr/lib/modules/<release>
// for exactly one release) or a module directory itself.
func Open(kernelDir string) (*Tree, error) {
	dir, err := moduleDir(kernelDir)
	if err != nil {
		return nil, err
	}
	t := &Tree{
		Dir:            dir,
		Release:        filepath.Base(dir),
		files:          map[string]string{},
		builtin:        map[string]bool{},
		builtinAliases: map[string]bool{},
	}
	if err := t.index(); err != nil {
		return nil, err
	}
	if err := t.readBuiltin(); err != nil {
		return nil, err
	}
	return t, nil
}

// moduleDir finds lib/modules/<release> under kernelDir.
func moduleDir(kernelDir string) (string, error) {
	if isModuleDir(kernelDir) {
		return filepath.Clean(kernelDir), nil
	}
	var found []string
	for _, base := range []string{"lib/modules", "usr/lib/modules"} {
		ents, err := os.ReadDir(filepath.Join(kernelDir, base))
		if err != nil {
			continue
		}
		for _, e := range ents {
			d := filepath.Join(kernelDir, base, e.Name())
			if e.IsDir() && isModuleDir(d) {
				found = append(found, d)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("open kernel modules: no lib/modules/<release> with modules.builtin or kernel/ under %s (is it an unpacked linux-image package?)", kernelDir)
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("open kernel modules: %s holds several releases (%s): pass one module directory", kernelDir, strings.Join(found, ", "))
	}
}

func isModuleDir(d string) bool {
	for _, n := range []string{"modules.builtin", "kernel"} {
		if _, err := os.Stat(filepath.Join(d, n)); err == nil {
			return true
		}
	}
	return false
}

// NameOf returns the kernel's name for a module given as a file name or a
// user-typed name: the base name without ".ko", '-' folded to '_' (the
// kernel's KBUILD_MODNAME does the same).
func NameOf(s string) string {
	s = filepath.Base(s)
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// index records every .ko file under Dir by module name.
func (t *Tree) index() error {
	err := filepath.WalkDir(t.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
			if strings.HasSuffix(name, ext) {
				return fmt.Errorf("%s is compressed: this resolver reads uncompressed modules only (unpack them with xz -d/zstd -d first)", p)
			}
		}
		if !strings.HasSuffix(name, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(t.Dir, p)
		if err != nil {
			return err
		}
		n := NameOf(name)
		// Like depmod's default search order, an updates/ copy wins
		// over the packaged one; otherwise the first in walk order stays.
		if old, dup := t.files[n]; dup {
			if !strings.HasPrefix(rel, "updates/") || strings.HasPrefix(old, "updates/") {
				return nil
			}
		}
		t.files[n] = rel
		return nil
	})
	if err != nil {
		return fmt.Errorf("index modules in %s: %w", t.Dir, err)
	}
	return nil
}

// readBuiltin reads modules.builtin (paths of built-in modules) and
// modules.builtin.modinfo (their modinfo, "name.key=value" NUL-separated),
// both written by the kernel build and shipped in the package. Either may be
// missing in a hand-made tree; then nothing counts as built in.
func (t *Tree) readBuiltin() error {
	f, err := os.Open(filepath.Join(t.Dir, "modules.builtin"))
	if err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				t.builtin[NameOf(line)] = true
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", f.Name(), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read built-in modules: %w", err)
	}

	b, err := os.ReadFile(filepath.Join(t.Dir, "modules.builtin.modinfo"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read built-in modinfo: %w", err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		mod, rest, ok := strings.Cut(kv, ".")
		if !ok {
			continue
		}
		t.builtin[NameOf(mod)] = true
		if v, ok := strings.CutPrefix(rest, "alias="); ok {
			t.builtinAliases[v] = true
		}
	}
	return nil
}

// modinfo is what the resolver needs from one module's .modinfo section.
type modinfo struct {
	name     string
	depends  []string
	softPre  []string
	aliases  []string
	vermagic string
}

// ReadModinfo returns the key=value strings of a module's .modinfo section,
// in file order (keys repeat: alias, softdep, firmware, parm…).
func ReadModinfo(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read modinfo: %w", err)
	}
	defer f.Close()
	kvs, err := readModinfo(f)
	if err != nil {
		return nil, fmt.Errorf("read modinfo of %s: %w", path, err)
	}
	return kvs, nil
}

func readModinfo(r io.ReaderAt) ([]string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section (not a kernel module?)")
	}
	if s.Size > maxModinfo {
		return nil, fmt.Errorf(".modinfo is %d bytes, over the %d-byte bound", s.Size, maxModinfo)
	}
	b, err := io.ReadAll(io.LimitReader(s.Open(), maxModinfo))
	if err != nil {
		return nil, err
	}
	var kvs []string
	for _, kv := range strings.Split(string(b), "\x00") {
		if kv != "" {
			kvs = append(kvs, kv)
		}
	}
	return kvs, nil
}

func parseModinfo(kvs []string) modinfo {
	var mi modinfo
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.name = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				// Names, not paths: fold '-' only. Anything odd
				// fails later as an unknown module, by name.
				if d = strings.TrimSpace(d); d != "" {
					mi.depends = append(mi.depends, strings.ReplaceAll(d, "-", "_"))
				}
			}
		case "alias":
			mi.aliases = append(mi.aliases, v)
		case "vermagic":
			mi.vermagic = v
		case "softdep":
			// "pre: a b post: c" (modprobe.d(5) softdep syntax).
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						mi.softPre = append(mi.softPre, w)
					}
				}
			}
		}
	}
	return mi
}

// Resolve returns the named modules and everything they depend on, each
// once, dependencies before their dependents. The order is deterministic:
// names in the given order, each preceded by its dependencies in .modinfo
// order. A requested module that is built in comes back with Builtin set; a
// dependency never is (modpost does not list built-in code).
//
// An unknown name wraps ErrUnknownModule and names the module that needed
// it; a cycle wraps ErrCycle and spells the loop.
func (t *Tree) Resolve(names []string) ([]Module, error) {
	r := resolver{t: t, info: map[string]modinfo{}, state: map[string]int{}}
	// First pass: the closure over depends=, and the modinfo of each member.
	for _, n := range names {
		n = NameOf(n)
		if n == "" {
			continue
		}
		if err := r.collect(n, ""); err != nil {
			return nil, err
		}
	}
	// Soft dependencies resolve against the final set: a module's "pre:"
	// name counts when a member is called so or has it as an alias.
	provides := map[string]string{}
	for _, n := range r.members {
		provides[n] = n
		for _, a := range r.info[n].aliases {
			if _, taken := provides[a]; !taken {
				provides[a] = n
			}
		}
	}
	deps := map[string][]string{}
	missing := map[string][]string{}
	for _, n := range r.members {
		mi := r.info[n]
		for _, d := range mi.depends {
			if !r.t.isBuiltinOnly(d) {
				deps[n] = append(deps[n], d)
			}
		}
		for _, s := range mi.softPre {
			p, ok := provides[s]
			if !ok {
				p, ok = provides[NameOf(s)]
			}
			switch {
			case ok && p != n && !slices.Contains(deps[n], p):
				deps[n] = append(deps[n], p)
			case ok:
			case t.builtin[NameOf(s)] || t.builtinAliases[s]:
			default:
				missing[n] = append(missing[n], s)
			}
		}
	}
	// Second pass: order by the full edge set, detecting cycles (softdeps
	// can add one that depends= alone does not have).
	o := orderer{deps: deps, state: map[string]int{}}
	for _, n := range names {
		if n = NameOf(n); n != "" && !t.isBuiltinOnly(n) {
			if err := o.visit(n, nil); err != nil {
				return nil, err
			}
		}
	}
	var mods []Module
	seenBuiltin := map[string]bool{}
	for _, n := range names {
		n = NameOf(n)
		if t.isBuiltinOnly(n) && !seenBuiltin[n] {
			seenBuiltin[n] = true
			mods = append(mods, Module{Name: n, Builtin: true})
		}
	}
	for _, n := range o.order {
		rel := t.files[n]
		mods = append(mods, Module{
			Name:            n,
			Path:            filepath.Join(t.Dir, rel),
			Rel:             filepath.ToSlash(rel),
			Depends:         deps[n],
			MissingSoftdeps: missing[n],
			Aliases:         r.info[n].aliases,
		})
	}
	return mods, nil
}

// isBuiltinOnly reports whether name is built in and has no .ko file.
func (t *Tree) isBuiltinOnly(name string) bool {
	_, file := t.files[name]
	return t.builtin[name] && !file
}

// Len returns how many module files Open found.
func (t *Tree) Len() int { return len(t.files) }

type resolver struct {
	t       *Tree
	info    map[string]modinfo
	state   map[string]int // 1 collecting, 2 collected
	members []string       // discovery order
}

// collect reads the modinfo of name and, recursively, of its depends=.
// Cycles are left to the orderer, which sees all edges.
func (r *resolver) collect(name, neededBy string) error {
	if r.state[name] != 0 {
		return nil
	}
	rel, ok := r.t.files[name]
	if !ok {
		if r.t.builtin[name] {
			return nil
		}
		where := ""
		if neededBy != "" {
			where = fmt.Sprintf(" (needed by %s)", neededBy)
		}
		return fmt.Errorf("module %q%s: %w: no %s.ko under %s and not built in%s", name, where, ErrUnknownModule, name, r.t.Dir, r.suggest(name))
	}
	r.state[name] = 1
	path := filepath.Join(r.t.Dir, rel)
	kvs, err := ReadModinfo(path)
	if err != nil {
		return err
	}
	mi := parseModinfo(kvs)
	if mi.name != "" && NameOf(mi.name) != name {
		return fmt.Errorf("module file %s names itself %q in .modinfo, not %q: rename the file or fix the tree", path, mi.name, name)
	}
	if f := strings.Fields(mi.vermagic); len(f) > 0 && f[0] != r.t.Release {
		return fmt.Errorf("module %s is built for kernel %s, but it is in the tree of %s: the kernel would refuse it", path, f[0], r.t.Release)
	}
	r.info[name] = mi
	r.members = append(r.members, name)
	for _, d := range mi.depends {
		if err := r.collect(d, name); err != nil {
			return err
		}
	}
	// modprobe inserts "pre:" soft dependencies too. Those that name a
	// module file come along (r8169 wants the realtek PHY driver); those
	// that are aliases (crypto-crc32c) would need every module's modinfo
	// to resolve, so they count only when the list provides them.
	for _, s := range mi.softPre {
		if _, ok := r.t.files[NameOf(s)]; ok {
			if err := r.collect(NameOf(s), name); err != nil {
				return err
			}
		}
	}
	r.state[name] = 2
	return nil
}

// suggest names close matches for a mistyped module.
func (r *resolver) suggest(name string) string {
	var near []string
	for n := range r.t.files {
		if strings.Contains(n, name) || strings.Contains(name, n) && len(n) > 2 {
			near = append(near, n)
		}
	}
	if len(near) == 0 {
		return ""
	}
	sort.Strings(near)
	if len(near) > 5 {
		near = near[:5]
	}
	return " (did you mean " + strings.Join(near, ", ") + "?)"
}

type orderer struct {
	deps  map[string][]string
	state map[string]int // 1 on the stack, 2 placed
	order []string
}

func (o *orderer) visit(n string, stack []string) error {
	switch o.state[n] {
	case 2:
		return nil
	case 1:
		i := slices.Index(stack, n)
		loop := append(slices.Clone(stack[i:]), n)
		return fmt.Errorf("resolve modules: %w: %s", ErrCycle, strings.Join(loop, " -> "))
	}
	o.state[n] = 1
	stack = append(stack, n)
	for _, d := range o.deps[n] {
		if err := o.visit(d, stack); err != nil {
			return err
		}
	}
	o.state[n] = 2
	o.order = append(o.order, n)
	return nil
}

// ReadList reads a module list: one module name per line, '#' starts a
// comment, blank lines are ignored. Names are returned as NameOf spells
// them, each once, in file order.
func ReadList(r io.Reader) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(s)
		switch len(fields) {
		case 0:
			continue
		case 1:
		default:
			return nil, fmt.Errorf("module list line %d: %q: one module name per line", line, strings.TrimSpace(s))
		}
		n := NameOf(fields[0])
		if n == "" {
			// ".ko" alone, or a path ending in it, names no module; an
			// empty name would reach Resolve as a module it cannot find.
			return nil, fmt.Errorf("module list line %d: %q names no module", line, fields[0])
		}
		for _, c := range n {
			if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return nil, fmt.Errorf("module list line %d: %q is not a module name", line, fields[0])
			}
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read module list: %w", err)
	}
	return names, nil
}
