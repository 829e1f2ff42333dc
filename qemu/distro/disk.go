package distro

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	sectorSize = 512
	mib        = 1 << 20
	// firstLBA is where the first partition starts (1 MiB, sector 2048),
	// as partitioning tools align them.
	firstLBA = 2048
	// bootSize holds a kernel (~8 MiB) and a MODULES=most or no-hostonly
	// dracut initrd (40–90 MiB) twice over, as a distribution keeps the
	// previous kernel.
	bootSize = 256 * mib
	// minRootSize is the root partition's least size; it grows for a tree
	// that would fill it more than two thirds (rootSize).
	minRootSize = 2048 * mib
	// gptTail is the backup GPT at the end of the disk (33 sectors, rounded
	// to alignment).
	gptTail = 1 * mib
)

// layout is where the partitions go, in bytes.
type layout struct {
	BootStart, BootSize int64
	RootStart, RootSize int64
	Total               int64
}

// rootSize rounds the root partition up so the tree fills at most two
// thirds of it (room for logs, a kernel upgrade), and never below
// minRootSize.
func rootSize(used int64) int64 {
	size := int64(minRootSize)
	for used*3 > size*2 {
		size += 256 * mib
	}
	return size
}

func newLayout(rootUsed int64) layout {
	l := layout{BootStart: firstLBA * sectorSize, BootSize: bootSize}
	l.RootStart = l.BootStart + l.BootSize
	l.RootSize = rootSize(rootUsed)
	l.Total = l.RootStart + l.RootSize + gptTail
	return l
}

// sfdiskScript is the GPT for sfdisk(8)'s script mode.
func sfdiskScript(l layout, id ids) string {
	return fmt.Sprintf("label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: %d\n\n"+
		"start=%d, size=%d, type=%s, uuid=%s, name=\"boot\"\n"+
		"start=%d, size=%d, type=%s, uuid=%s, name=\"root\"\n",
		id.Disk, firstLBA,
		l.BootStart/sectorSize, l.BootSize/sectorSize, gptXBOOTLDR, id.BootPart,
		l.RootStart/sectorSize, l.RootSize/sectorSize, gptRootX8664, id.RootPart)
}

// assemble writes a sparse GPT disk image at path: sfdisk lays out the
// table on a file of the right size, then mkfs.ext4 -d builds each file
// system from its folder straight into the partition's place in the image
// (-E offset=), so nothing is mounted and no loop device is used.
// nodiscard keeps mke2fs from punching holes into the file (its discard of
// a regular file is a hole punch), the image's partition table included.
func (r *runner) assemble(ctx context.Context, path, bootDir, rootDir string, l layout, id ids) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(l.Total); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := r.run(ctx, cmdSpec{argv: []string{"sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path}, stdin: sfdiskScript(l, id)}); err != nil {
		return fmt.Errorf("partition %s: %w", path, err)
	}
	for _, p := range []struct {
		label, uuid, dir string
		start, size      int64
	}{
		{"boot", id.Boot, bootDir, l.BootStart, l.BootSize},
		{"root", id.Root, rootDir, l.RootStart, l.RootSize},
	} {
		argv := []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-L", p.label, "-U", p.uuid,
			"-d", p.dir, "-E", "offset=" + strconv.FormatInt(p.start, 10) + ",nodiscard",
			path, strconv.FormatInt(p.size/1024, 10) + "k"}
		if _, err := r.run(ctx, cmdSpec{argv: argv}); err != nil {
			return fmt.Errorf("make the %s file system: %w", p.label, err)
		}
	}
	return nil
}

// espSize is the ESP of LayoutUEFI. Debian's installer makes it 512 MiB;
// 64 MiB of FAT32 (its smallest sensible size with 512-byte sectors) holds
// the stub and keeps the image small.
const espSize = 64 * mib

// newUEFILayout puts the ESP first and the root after it; Boot* are the
// ESP's place.
func newUEFILayout(rootUsed int64) layout {
	l := layout{BootStart: firstLBA * sectorSize, BootSize: espSize}
	l.RootStart = l.BootStart + l.BootSize
	l.RootSize = rootSize(rootUsed)
	l.Total = l.RootStart + l.RootSize + gptTail
	return l
}

// sfdiskScriptUEFI is LayoutUEFI's GPT: the ESP, then the root as partman
// types it (generic Linux file system).
func sfdiskScriptUEFI(l layout, id ids) string {
	return fmt.Sprintf("label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: %d\n\n"+
		"start=%d, size=%d, type=%s, uuid=%s\n"+
		"start=%d, size=%d, type=%s, uuid=%s\n",
		id.Disk, firstLBA,
		l.BootStart/sectorSize, l.BootSize/sectorSize, gptESP, id.ESPPart,
		l.RootStart/sectorSize, l.RootSize/sectorSize, gptLinuxFS, id.RootPart)
}

// assembleUEFI writes LayoutUEFI's image: sfdisk lays out the table, the
// ESP is made as a FAT32 file with mkfs.vfat and filled with mtools' mcopy
// (no mount), then copied into its place, and mkfs.ext4 -d writes the root
// as in assemble.
func (r *runner) assembleUEFI(ctx context.Context, path, espDir, rootDir string, l layout, id ids) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(l.Total); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, err := r.run(ctx, cmdSpec{argv: []string{"sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path}, stdin: sfdiskScriptUEFI(l, id)}); err != nil {
		return fmt.Errorf("partition %s: %w", path, err)
	}
	esp := path + ".esp"
	defer os.Remove(esp)
	vol := strings.ReplaceAll(id.ESP, "-", "")
	if _, err := r.run(ctx, cmdSpec{argv: []string{"mkfs.vfat", "-F", "32", "-n", "EFI", "-i", vol, "-C", esp,
		strconv.FormatInt(l.BootSize/1024, 10)}}); err != nil {
		return fmt.Errorf("make the ESP: %w", err)
	}
	if _, err := r.run(ctx, cmdSpec{argv: []string{"mcopy", "-s", "-i", esp, filepath.Join(espDir, "EFI"), "::/"}}); err != nil {
		return fmt.Errorf("fill the ESP: %w", err)
	}
	if _, err := r.run(ctx, cmdSpec{argv: []string{"dd", "if=" + esp, "of=" + path, "bs=1M", "conv=notrunc,sparse", "status=none",
		"seek=" + strconv.FormatInt(l.BootStart, 10), "oflag=seek_bytes"}}); err != nil {
		return fmt.Errorf("place the ESP: %w", err)
	}
	argv := []string{"mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "root", "-U", id.Root,
		"-d", rootDir, "-E", "offset=" + strconv.FormatInt(l.RootStart, 10) + ",nodiscard",
		path, strconv.FormatInt(l.RootSize/1024, 10) + "k"}
	if _, err := r.run(ctx, cmdSpec{argv: argv}); err != nil {
		return fmt.Errorf("make the root file system: %w", err)
	}
	return nil
}

// treeSize adds up the bytes of the regular files under dir, each inode
// once.
func treeSize(dir string) (int64, error) {
	seen := map[uint64]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += info.Size()
		return nil
	})
	return total, err
}

// allocated is the space a (sparse) file occupies.
func allocated(path string) (int64, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512, nil
	}
	return info.Size(), nil
}
