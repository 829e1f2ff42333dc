package osfind

import (
	"bytes"
	"encoding/binary"
	"io"
)

// DetectFS names the file system whose superblock r starts with, for the
// three a boot partition uses and the image carries as modules: "ext4"
// (ext2, ext3 and ext4 alike: the ext4 driver mounts all three), "xfs" or
// "vfat"; "" for anything else or a short read.
func DetectFS(r io.ReaderAt) string {
	var b [4096]byte
	n, _ := r.ReadAt(b[:], 0)
	blk := b[:n]
	switch {
	case len(blk) >= 4 && string(blk[:4]) == "XFSB":
		// XFS superblock at offset 0 (xfs_format.h XFS_SB_MAGIC).
		return "xfs"
	case len(blk) >= 0x43a && binary.LittleEndian.Uint16(blk[0x438:]) == 0xef53:
		// ext2/3/4 superblock at 1024, s_magic at offset 56 in it.
		return "ext4"
	case len(blk) >= 512 && blk[510] == 0x55 && blk[511] == 0xaa &&
		(bytes.HasPrefix(blk[54:], []byte("FAT")) || bytes.HasPrefix(blk[82:], []byte("FAT32"))):
		// FAT boot sector: the signature and the file system type
		// string of the FAT12/16 (offset 54) or FAT32 (offset 82) BPB.
		return "vfat"
	case len(blk) >= 512 && fatBPB(blk):
		// The kernel's vfat checks neither the signature nor the type
		// string (fs/fat/inode.c fat_read_bpb): some formatters leave
		// them out, so a sane BIOS parameter block is enough, as for
		// blkid.
		return "vfat"
	}
	return ""
}

// fatBPB reports whether the boot sector b holds a plausible FAT BIOS
// parameter block: a jump instruction, a power-of-two sector size of
// 512–4096 bytes and cluster size, at least one reserved sector, one or
// two FATs and a valid media byte (0xf0, 0xf8–0xff). NTFS (no FATs, no
// reserved sectors) and exFAT (a zeroed BPB) fail it.
func fatBPB(b []byte) bool {
	if b[0] != 0xeb && b[0] != 0xe9 {
		return false
	}
	sector := binary.LittleEndian.Uint16(b[11:])
	cluster := b[13]
	reserved := binary.LittleEndian.Uint16(b[14:])
	fats := b[16]
	media := b[21]
	pow2 := func(v uint16) bool { return v != 0 && v&(v-1) == 0 }
	return pow2(sector) && sector >= 512 && sector <= 4096 &&
		pow2(uint16(cluster)) && reserved >= 1 && (fats == 1 || fats == 2) &&
		(media == 0xf0 || media >= 0xf8)
}
