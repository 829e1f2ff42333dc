package main

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/lunboot/lunboot/pkg/kmod"
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
	"github.com/u-root/u-root/pkg/cpio"
)

// firstModuleIno numbers the module records' inodes apart from u-root's.
// With NLink 1 the kernel never links records by inode (init/initramfs.c,
// maybe_link), so the numbers only need to be stable.
const firstModuleIno = 1 << 24

// mergeModules writes out: the records of the u-root archive at base, then
// lib/modules/<release>/ with the resolved modules, the load order and a
// modules.dep, then the trailer. It returns how many module files it added
// and their total size.
func mergeModules(base, out string, tree *depmod.Tree, mods []depmod.Module, header string) (int, int64, error) {
	in, err := os.Open(base)
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(in)})
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", base, err)
	}
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Name] = true
	}

	extra, n, size, err := moduleRecords(tree, mods, header)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range extra {
		if have[r.Name] && r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			return 0, 0, fmt.Errorf("the u-root archive already has %s", r.Name)
		}
	}

	f, err := os.Create(out)
	if err != nil {
		return 0, 0, err
	}
	w := cpio.Newc.Writer(f)
	for _, r := range recs {
		if err := w.WriteRecord(r); err != nil {
			f.Close()
			return 0, 0, fmt.Errorf("write %s: %w", out, err)
		}
	}
	for _, r := range extra {
		if have[r.Name] {
			continue
		}
		if err := w.WriteRecord(r); err != nil {
			f.Close()
			return 0, 0, fmt.Errorf("write %s: %w", out, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		f.Close()
		return 0, 0, err
	}
	return n, size, f.Close()
}

// moduleRecords returns the records for lib/modules/<release>/: parent
// directories first, then files in load order, each reproducible (no
// owner, no time).
func moduleRecords(tree *depmod.Tree, mods []depmod.Module, header string) ([]cpio.Record, int, int64, error) {
	dir := path.Join("lib", "modules", tree.Release)
	var files []cpio.Record
	var entries []kmod.Entry
	var aliases []kmod.Alias
	var size int64
	paths := map[string]string{}
	for _, m := range mods {
		if m.Builtin {
			continue
		}
		b, err := os.ReadFile(m.Path)
		if err != nil {
			return nil, 0, 0, err
		}
		size += int64(len(b))
		files = append(files, cpio.StaticRecord(b, cpio.Info{Name: path.Join(dir, m.Rel), Mode: cpio.S_IFREG | 0o644}))
		entries = append(entries, kmod.Entry{Name: m.Name, Path: m.Rel, Depends: m.Depends})
		for _, a := range m.Aliases {
			aliases = append(aliases, kmod.Alias{Pattern: a, Module: m.Name})
		}
		paths[m.Name] = m.Rel
	}

	var order bytes.Buffer
	if err := kmod.WriteOrder(&order, header, entries); err != nil {
		return nil, 0, 0, err
	}
	// The boot loads only the drivers the machine's devices match
	// (kmod.Options.MatchHardware): it needs each module's aliases.
	var alias bytes.Buffer
	if err := kmod.WriteAliases(&alias, header, aliases); err != nil {
		return nil, 0, 0, err
	}
	files = append(files,
		cpio.StaticRecord(order.Bytes(), cpio.Info{Name: path.Join(dir, kmod.OrderFile), Mode: cpio.S_IFREG | 0o644}),
		cpio.StaticRecord(alias.Bytes(), cpio.Info{Name: path.Join(dir, kmod.AliasFile), Mode: cpio.S_IFREG | 0o644}),
		cpio.StaticRecord(modulesDep(entries), cpio.Info{Name: path.Join(dir, "modules.dep"), Mode: cpio.S_IFREG | 0o644}),
	)
	if b, err := os.ReadFile(path.Join(tree.Dir, "modules.builtin")); err == nil {
		// u-root's kmodule reads it to skip what is built in.
		files = append(files, cpio.StaticRecord(b, cpio.Info{Name: path.Join(dir, "modules.builtin"), Mode: cpio.S_IFREG | 0o644}))
	}

	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var dirNames []string
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames) // parents sort before their children
	var recs []cpio.Record
	for _, d := range dirNames {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	recs = append(recs, files...)
	for i := range recs {
		recs[i].Ino = uint64(firstModuleIno + i)
		recs[i].NLink = 1
		recs[i] = cpio.MakeReproducible(recs[i])
	}
	return recs, len(entries), size, nil
}

// modulesDep renders entries as modules.dep: "path: dep-path ...", with
// every module a module needs, directly or not, nearest first as depmod
// writes it. Unlike depmod's, it also lists "pre:" soft dependencies, so
// u-root's kmodule, which knows no softdeps, loads crc32c before ext4.
func modulesDep(entries []kmod.Entry) []byte {
	byName := map[string]kmod.Entry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	var b bytes.Buffer
	for _, e := range entries {
		var deps []string
		seen := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			for _, d := range byName[n].Depends {
				if !seen[d] {
					seen[d] = true
					deps = append(deps, byName[d].Path)
					walk(d)
				}
			}
		}
		walk(e.Name)
		fmt.Fprintf(&b, "%s:", e.Path)
		if len(deps) > 0 {
			fmt.Fprintf(&b, " %s", strings.Join(deps, " "))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
