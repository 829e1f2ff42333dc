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
	}
	return ""
}
