// Package derive makes the lab's variant disks from a built Debian system
// (package qemu/distro) by changing its root file system inside a copy of
// the disk image with debugfs: no loop device, no mount, no second
// debootstrap. The variants are what carry-in must cope with or refuse
// (issue 15): an OS whose kernel modules are compressed as Ubuntu and
// Fedora ship them (.ko.xz, indexed again by depmod), an OS kernel without
// the data path's module (nbd.ko), an OS kernel without its module tree.
//
// Each derived disk lives in <distro cache>/derived/<name>/ with a
// manifest (a distro.System), keyed by the base disk's key, the variant
// and this package's sources: a rebuilt base rebuilds it, an unchanged one
// is reused. This package is apart from qemu/distro on purpose: the base
// disks' keys hash that package's sources, and a change here must not make
// every base disk stale.
package derive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/flock"
	"github.com/lunboot/lunboot/qemu/distro"
)

// recipe versions every derived disk: bump it when a change here is not
// visible in the sources' hash (never so far).
const recipe = "distro-derive-v1"

// Tools are the programs Build runs.
var Tools = []string{"debugfs", "e2fsck", "sfdisk", "cp", "xz", "depmod"}

// Variant is one way of changing a base system's root.
type Variant struct {
	// Name is the derived system's name and folder.
	Name string
	// apply changes the root file system through d.
	apply func(d *deriver, ctx context.Context) error
}

// The variants.
var (
	// NoNBD is the base without the data path's module: nbd.ko removed
	// and modules.dep written without it, as for a kernel built without
	// CONFIG_BLK_DEV_NBD. Its binary indexes (modules.*.bin) are removed
	// too rather than rebuilt: the disk is for lunboot's refusal, the OS
	// never runs from it.
	NoNBD = Variant{Name: "noiscsi-nonbd", apply: (*deriver).noNBD}
	// NoModuleTree is the base whose /lib/modules/<release> is renamed
	// to <release>.hidden (a directory entry moved, the file system stays
	// consistent): the OS kernel has no module tree.
	NoModuleTree = Variant{Name: "noiscsi-nomodtree", apply: (*deriver).noModuleTree}
	// XZModules is the base with every kernel module compressed with xz
	// (--check=crc32, the kernel's own choice for in-kernel
	// decompression; preset 0 to keep the build short) and the indexes
	// rebuilt by the host's depmod: the OS's udev and modprobe load the
	// .ko.xz files, and carry-in must carry them as they are.
	XZModules = Variant{Name: "noiscsi-xz", apply: (*deriver).xzModules}
	// DracutNoISCSI is the dracut system (base: distro.NameDracut) whose
	// initrd has its iSCSI support taken out (dracutNoISCSI): a dracut
	// disk without iSCSI, which lunboot boots by carry-in.
	DracutNoISCSI = Variant{Name: "dracut-noiscsi", apply: (*deriver).dracutNoISCSI}
)

// Build returns base changed by v, building it when its cache is missing
// or stale. log receives progress (nil discards). Building needs root
// (file ownership in the image) and Tools.
func Build(ctx context.Context, base *distro.System, v Variant, log *slog.Logger) (*distro.System, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if base == nil || base.Layout != distro.LayoutBLS {
		return nil, fmt.Errorf("derive %s: the base must be a built %s-layout system", v.Name, distro.LayoutBLS)
	}
	dir := filepath.Join(filepath.Dir(filepath.Dir(base.Disk)), "derived", v.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	unlock, err := flock.Lock(ctx, filepath.Join(dir, ".lock"), func() {
		log.Info("waiting for another build of the derived disk", "system", v.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	defer unlock()
	k := key(recipe, base.Key, v.Name, sourceHash())
	manifest := filepath.Join(dir, distro.ManifestFile)
	var old distro.System
	if data, err := os.ReadFile(manifest); err == nil && json.Unmarshal(data, &old) == nil && old.Key == k {
		if info, err := os.Stat(old.Disk); err == nil && info.Size() == old.Size {
			log.Info("up to date", "system", v.Name, "disk", old.Disk, "key", k[:12])
			return &old, nil
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("derive %s: building needs root (file ownership in the image)", v.Name)
	}
	start := time.Now()
	log.Info("deriving", "system", v.Name, "from", base.Name)
	img := filepath.Join(dir, "disk.img")
	tmp := img + ".tmp"
	os.Remove(manifest)
	if _, err := run(ctx, "cp", "--sparse=always", "--reflink=auto", base.Disk, tmp); err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	defer os.Remove(tmp)
	off, err := rootOffset(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	work := filepath.Join(dir, "work")
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	d := &deriver{dev: fmt.Sprintf("%s?offset=%d", tmp, off), rel: base.KernelRelease, work: work, log: log}
	if boff, err := partOffset(ctx, tmp, "boot"); err == nil {
		d.boot = fmt.Sprintf("%s?offset=%d", tmp, boff)
	}
	if err := v.apply(d, ctx); err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	// The change must leave a consistent file system: e2fsck -n only
	// reads, and fails on any inconsistency.
	if out, err := run(ctx, "e2fsck", "-fn", d.dev); err != nil {
		return nil, fmt.Errorf("derive %s: the changed root does not check clean: %w\n%s", v.Name, err, out)
	}
	if d.initrd != "" {
		if out, err := run(ctx, "e2fsck", "-fn", d.boot); err != nil {
			return nil, fmt.Errorf("derive %s: the changed boot partition does not check clean: %w\n%s", v.Name, err, out)
		}
	}
	if err := os.Rename(tmp, img); err != nil {
		return nil, err
	}
	sys := *base
	sys.Name, sys.Disk, sys.Key = v.Name, img, k
	if d.initrd != "" {
		// The host's copy of the changed initrd, as a base system keeps one.
		sys.Initrd = filepath.Join(dir, filepath.Base(base.Initrd))
		if err := os.Rename(d.initrd, sys.Initrd); err != nil {
			return nil, fmt.Errorf("derive %s: %w", v.Name, err)
		}
	}
	if d.noISCSI {
		sys.ISCSI = false
	}
	sys.Built, sys.BuildTime = time.Now().UTC(), time.Since(start).Round(time.Millisecond)
	data, _ := json.MarshalIndent(&sys, "", "  ")
	if err := os.WriteFile(manifest, append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("derive %s: %w", v.Name, err)
	}
	log.Info("derived", "system", v.Name, "disk", img, "took", sys.BuildTime)
	return &sys, nil
}

// deriver is one derivation in progress.
type deriver struct {
	dev  string // debugfs's device: image?offset=<root partition>
	rel  string // the OS kernel release
	work string // a scratch folder
	log  *slog.Logger
	// boot is debugfs's device for the boot partition ("" when none).
	boot string
	// initrd, when set by the variant, is its changed initrd (in work),
	// written to the boot partition already; noISCSI says it has no iSCSI.
	initrd  string
	noISCSI bool
}

func (d *deriver) modDir() string { return "/lib/modules/" + d.rel }

// debugfs runs script (one request a line) writing to the root file
// system. debugfs exits 0 even when a request fails, so anything it
// writes to stderr but its banner is an error.
func (d *deriver) debugfs(ctx context.Context, script string) error {
	return d.debugfsOn(ctx, d.dev, script)
}

// debugfsOn is debugfs on another partition's device.
func (d *deriver) debugfsOn(ctx context.Context, dev, script string) error {
	f := filepath.Join(d.work, "debugfs.cmds")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debugfs", "-w", "-f", f, dev)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = nil
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs: %w: %s", err, stderr.String())
	}
	var errs []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("debugfs: %s", strings.Join(errs, "; "))
	}
	return nil
}

// cat returns a file of the root file system.
func (d *deriver) cat(ctx context.Context, path string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "cat "+path, d.dev).Output()
	if err != nil {
		return nil, fmt.Errorf("debugfs cat %s: %w", path, err)
	}
	return out, nil
}

func (d *deriver) noNBD(ctx context.Context) error {
	const nbd = "kernel/drivers/block/nbd.ko"
	dep, err := d.cat(ctx, d.modDir()+"/modules.dep")
	if err != nil {
		return err
	}
	var kept []string
	found := false
	for _, l := range strings.Split(strings.TrimRight(string(dep), "\n"), "\n") {
		if strings.HasPrefix(l, nbd+":") {
			found = true
			continue
		}
		kept = append(kept, l)
	}
	if !found {
		return fmt.Errorf("the base's modules.dep has no %s", nbd)
	}
	local := filepath.Join(d.work, "modules.dep")
	if err := os.WriteFile(local, []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	s := fmt.Sprintf("rm %s/%s\ncd %s\nrm modules.dep\nwrite %s modules.dep\n", d.modDir(), nbd, d.modDir(), local)
	for _, b := range []string{"modules.dep.bin", "modules.alias.bin", "modules.symbols.bin"} {
		s += "rm " + b + "\n"
	}
	return d.debugfs(ctx, s)
}

func (d *deriver) noModuleTree(ctx context.Context) error {
	// ln and unlink leave the link counts alone: together they are a
	// rename of the directory entry.
	return d.debugfs(ctx, fmt.Sprintf("cd /lib/modules\nln %s %s.hidden\nunlink %s\n", d.rel, d.rel, d.rel))
}

func (d *deriver) xzModules(ctx context.Context) error {
	base := filepath.Join(d.work, "tree")
	local := filepath.Join(base, "lib", "modules")
	if err := os.MkdirAll(local, 0o755); err != nil {
		return err
	}
	// rdump writes lib/modules/<rel> under local, owners and modes kept.
	if out, err := run(ctx, "debugfs", "-R", "rdump "+d.modDir()+" "+local, d.dev); err != nil {
		return fmt.Errorf("dump the module tree: %w\n%s", err, out)
	}
	tree := filepath.Join(local, d.rel)
	var mods []string
	err := filepath.WalkDir(tree, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".ko") {
			mods = append(mods, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(mods) == 0 {
		return fmt.Errorf("no .ko file under %s", d.modDir())
	}
	sort.Strings(mods)
	d.log.Info("compressing the OS kernel's modules", "modules", len(mods))
	// xz takes many files at once; two processes share the work.
	half := len(mods) / 2
	errc := make(chan error, 2)
	for _, part := range [][]string{mods[:half], mods[half:]} {
		go func() {
			if len(part) == 0 {
				errc <- nil
				return
			}
			out, err := run(ctx, "xz", append([]string{"-0", "--check=crc32", "--"}, part...)...)
			if err != nil {
				err = fmt.Errorf("xz: %w\n%s", err, out)
			}
			errc <- err
		}()
	}
	for range 2 {
		if e := <-errc; e != nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	if out, err := run(ctx, "depmod", "-b", base, d.rel); err != nil {
		return fmt.Errorf("depmod: %w\n%s", err, out)
	}
	var s strings.Builder
	for _, m := range mods {
		rel, _ := filepath.Rel(tree, m)
		fmt.Fprintf(&s, "cd %s/%s\nrm %s\nwrite %s.xz %s.xz\n", d.modDir(), filepath.Dir(rel), filepath.Base(m), m, filepath.Base(m))
	}
	idx, _ := filepath.Glob(filepath.Join(tree, "modules.*"))
	fmt.Fprintf(&s, "cd %s\n", d.modDir())
	for _, f := range idx {
		fmt.Fprintf(&s, "rm %s\nwrite %s %s\n", filepath.Base(f), f, filepath.Base(f))
	}
	return d.debugfs(ctx, s.String())
}

// rootOffset is the byte offset of the partition named "root".
func rootOffset(ctx context.Context, img string) (int64, error) { return partOffset(ctx, img, "root") }

// partOffset is the byte offset of the partition named name.
func partOffset(ctx context.Context, img, name string) (int64, error) {
	out, err := run(ctx, "sfdisk", "-J", img)
	if err != nil {
		return 0, err
	}
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		return 0, fmt.Errorf("sfdisk -J %s: %w", img, err)
	}
	for _, p := range pt.PartitionTable.Partitions {
		if p.Name == name {
			return p.Start * max(pt.PartitionTable.SectorSize, 512), nil
		}
	}
	return 0, fmt.Errorf("no partition named %s in %s", name, img)
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", name, strings.Join(args[:min(len(args), 4)], " "), err)
	}
	return out, nil
}

//go:embed *.go
var sources embed.FS

// sourceHash hashes this package's non-test sources.
func sourceHash() string {
	h := sha256.New()
	names, _ := fs.Glob(sources, "*.go")
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, _ := sources.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// key hashes its parts, each length-prefixed.
func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
