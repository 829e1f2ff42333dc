package osfind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/mount"
	"github.com/u-root/u-root/pkg/mount/block"
)

// Scan mounts every partition of disk (a name such as "nbd0", or the whole
// disk when it has no partitions) read-only, and reads its boot entries.
// The returned Found must be closed: that closes the entries' files and
// unmounts everything, which must happen before the disk goes away.
func Scan(ctx context.Context, log *slog.Logger, disk string) (*Found, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	parts, err := partitions(disk)
	if err != nil {
		return nil, err
	}
	pool := &mount.Pool{}
	f := &Found{}
	f.closers = append(f.closers, func() error {
		if err := pool.UnmountAll(mount.MNT_DETACH); err != nil {
			return fmt.Errorf("unmounting %s partitions: %w", disk, err)
		}
		return nil
	})
	for _, d := range parts {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, err
		}
		dev := filepath.Join("/dev", d.Name)
		m, err := pool.Mount(d, mount.ReadOnly)
		if err != nil {
			f.Partitions = append(f.Partitions, Partition{Device: dev, Err: err})
			log.Debug("not mounted", "partition", dev, "err", err)
			continue
		}
		entries, p := ScanDir(ctx, log, m.Path, dev, parts, pool)
		f.Partitions = append(f.Partitions, p)
		f.Entries = append(f.Entries, entries...)
		f.closers = append(f.closers, func() error { return closeEntries(entries) })
	}
	dedupeFollowed(f)
	return f, nil
}

// partLess orders partition names numerically (nbd0p2 before nbd0p10).
func partLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// partitions lists the block devices Scan mounts for disk, in order.
func partitions(disk string) (block.BlockDevices, error) {
	disk = strings.TrimPrefix(disk, "/dev/")
	all, err := block.GetBlockDevices()
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	// Partitions of disk: nbd0p1, nbd0p2… (sda1 for disks whose name ends
	// in a letter). The whole disk is tried only when it has none, as a
	// partitionless file system.
	var parts block.BlockDevices
	for _, d := range all {
		rest, ok := strings.CutPrefix(d.Name, disk)
		if !ok || rest == "" {
			continue
		}
		rest = strings.TrimPrefix(rest, "p")
		if rest != "" && strings.Trim(rest, "0123456789") == "" {
			parts = append(parts, d)
		}
	}
	if len(parts) == 0 {
		parts = all.FilterName(disk)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("block device %s not found", disk)
	}
	sort.Slice(parts, func(i, j int) bool { return partLess(parts[i].Name, parts[j].Name) })
	return parts, nil
}

// FileSystems names the file system on each partition Scan would mount
// ("/dev/nbd0p1" → "vfat"), read from its superblock without mounting
// it, so that the caller can load the file system's module first; "" for
// one it does not recognise (see DetectFS). A partition that cannot be
// read is left out and named in the error, the others are still read.
func FileSystems(disk string) (map[string]string, error) {
	parts, err := partitions(disk)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var errs []error
	for _, d := range parts {
		dev := filepath.Join("/dev", d.Name)
		f, err := os.Open(dev)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the superblock of %s: %w", dev, err))
			continue
		}
		out[dev] = DetectFS(f)
		f.Close()
	}
	return out, errors.Join(errs...)
}
