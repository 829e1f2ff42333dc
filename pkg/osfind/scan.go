package osfind

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/boot"
	"github.com/u-root/u-root/pkg/boot/bls"
	"github.com/u-root/u-root/pkg/boot/grub"
	"github.com/u-root/u-root/pkg/boot/syslinux"
	"github.com/u-root/u-root/pkg/mount"
	"github.com/u-root/u-root/pkg/mount/block"
)

// ScanDir reads the boot entries of one mounted file system at dir, which
// is partition device. devices and pool let GRUB's `search --fs-uuid` reach
// other partitions of the same disk, and a GRUB stub on an ESP (stub.go)
// the file system it names; both may be nil.
func ScanDir(ctx context.Context, log *slog.Logger, dir, device string, devices block.BlockDevices, pool *mount.Pool) ([]*Entry, Partition) {
	if pool == nil {
		pool = &mount.Pool{}
	}
	return scanDir(ctx, log, dir, device, devices, pool, poolResolver(devices, pool))
}

func scanDir(ctx context.Context, log *slog.Logger, dir, device string, devices block.BlockDevices, pool *mount.Pool, resolve resolveFunc) ([]*Entry, Partition) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := Partition{Device: device, Mounted: dir, Found: map[Format]int{}}
	var entries []*Entry
	bids, gids := blsIDs(dir), grubIDs(dir)
	add := func(f Format, imgs []boot.OSImage) {
		es, skipped := toEntries(f, imgs, device, dir, gids, bids)
		entries = append(entries, es...)
		p.Skipped = append(p.Skipped, skipped...)
		p.Found[f] += len(es)
	}

	ulog := slogPrintf{log.With("partition", device)}
	if imgs, err := bls.ScanBLSEntries(ulog, dir, nil, ""); err == nil {
		add(BLS, blsDefaultFirst(dir, imgs))
	} else {
		log.Debug("no BLS entries", "partition", device, "err", err)
	}
	if s, ok := findStub(dir); ok {
		es, target, err := followStub(ctx, dir, device, s, resolve, devices, pool)
		if err != nil {
			p.Skipped = append(p.Skipped, err.Error())
		} else {
			log.Debug("followed GRUB stub", "partition", device, "stub", s.File, "uuid", s.UUID, "to", target, "config", s.Config)
			p.Followed = append(p.Followed, target)
		}
		entries = append(entries, es...)
		p.Found[GRUB] += len(es)
	} else if imgs, err := grub.ParseLocalConfig(ctx, dir, devices, pool); err == nil {
		add(GRUB, imgs)
	} else {
		log.Debug("no GRUB config", "partition", device, "err", err)
	}
	if imgs, err := syslinux.ParseLocalConfig(ctx, dir); err == nil {
		add(Syslinux, imgs)
	} else {
		log.Debug("no syslinux config", "partition", device, "err", err)
	}
	return entries, p
}

// toEntries turns u-root's images of format f, read from the file system
// at dir on device, into entries, with the ids of gids and bids; what
// cannot be booted is listed with the reason.
func toEntries(f Format, imgs []boot.OSImage, device, dir string, gids, bids map[string]string) ([]*Entry, []string) {
	var entries []*Entry
	var skipped []string
	for _, img := range imgs {
		li, ok := img.(*boot.LinuxImage)
		if !ok {
			skipped = append(skipped, f.label(img.Label())+" (not a Linux kernel entry)")
			continue
		}
		if li.Kernel == nil {
			skipped = append(skipped, f.label(li.Name)+" (kernel file missing)")
			continue
		}
		label := li.Name
		if label == "" {
			label = li.Label()
		}
		var id string
		switch f {
		case BLS:
			id = bids[li.Name]
		case GRUB:
			// grub.cfg's menuentry --id, or, for the BLS
			// entries GRUB's blscfg reads, the file's id.
			if id = gids[li.Name]; id == "" {
				id = bids[li.Name]
			}
		}
		entries = append(entries, &Entry{
			Label: label, ID: id, Format: f, Device: device, Root: dir,
			Cmdline: li.Cmdline, Kernel: li.Kernel, Initrd: li.Initrd, Image: li,
		})
	}
	return entries, skipped
}

func (f Format) label(name string) string { return string(f) + " entry " + quote(name) }

func quote(s string) string { return "\"" + s + "\"" }

// blsDefaultFirst moves the entry named by loader/loader.conf's `default`
// (a glob over entry file names, systemd-boot's loader.conf(5)) to the
// front. u-root v0.16.0's bls.sortImages never honours it (its match test
// is inverted), so without this the newest-sorting file name would win.
func blsDefaultFirst(dir string, imgs []boot.OSImage) []boot.OSImage {
	pattern := readLoaderConfDefault(filepath.Join(dir, "loader", "loader.conf"))
	if pattern == "" || len(imgs) < 2 {
		return imgs
	}
	for _, entriesDir := range []string{"loader/entries", "boot/loader/entries"} {
		files, _ := filepath.Glob(filepath.Join(dir, entriesDir, "*.conf"))
		sort.Sort(sort.Reverse(sort.StringSlice(files)))
		for _, file := range files {
			id := strings.TrimSuffix(filepath.Base(file), ".conf")
			if ok, _ := filepath.Match(pattern, id); !ok && pattern != id+".conf" {
				continue
			}
			name := blsName(file)
			for i, img := range imgs {
				if li, ok := img.(*boot.LinuxImage); ok && li.Name == name {
					out := append([]boot.OSImage{img}, imgs[:i]...)
					return append(out, imgs[i+1:]...)
				}
			}
		}
	}
	return imgs
}

func readLoaderConfDefault(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(s.Text()), " ")
		if k == "default" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// blsName rebuilds the name u-root gives a BLS entry: "title version".
func blsName(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	vals := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		vals[k] = strings.TrimSpace(v)
	}
	var parts []string
	for _, k := range []string{"title", "version"} {
		if vals[k] != "" {
			parts = append(parts, vals[k])
		}
	}
	return strings.Join(parts, " ")
}

// closeEntries closes the entries' files that can be closed.
func closeEntries(entries []*Entry) error {
	for _, e := range entries {
		for _, r := range []io.ReaderAt{e.Kernel, e.Initrd} {
			if c, ok := r.(io.Closer); ok {
				c.Close()
			}
		}
	}
	return nil
}
