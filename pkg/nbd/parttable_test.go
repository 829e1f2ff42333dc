package nbd

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// Partition tables for the kernel tests, written the way fdisk would so
// the kernel's own parsers (block/partitions/msdos.c, efi.c) accept them.
// Sizes are in 512-byte sectors.

type testPart struct{ start, sectors uint64 }

// writeMBR puts a DOS partition table with Linux (0x83) partitions into
// disk's first sector.
func writeMBR(disk []byte, parts []testPart) {
	le := binary.LittleEndian
	clear(disk[446:510]) // unused entries and boot flags must be zero
	for i, p := range parts {
		e := disk[446+16*i:]
		e[4] = 0x83
		le.PutUint32(e[8:], uint32(p.start))
		le.PutUint32(e[12:], uint32(p.sectors))
	}
	disk[510], disk[511] = 0x55, 0xaa
}

// linuxFS is the GPT type GUID 0FC63DAF-8483-4772-8E79-3D69D8477DE4 in its
// on-disk byte order (the first three fields little-endian).
var linuxFS = [16]byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4}

// writeGPT puts a protective MBR, a primary and a backup GPT with the
// given partitions into disk (UEFI 2.x §5.3).
func writeGPT(disk []byte, parts []testPart) {
	le := binary.LittleEndian
	last := uint64(len(disk)/512) - 1
	// Protective MBR: one 0xEE partition covering the disk.
	clear(disk[446:510])
	pm := disk[446:]
	pm[4] = 0xee
	le.PutUint32(pm[8:], 1)
	le.PutUint32(pm[12:], uint32(min(last, 0xffffffff)))
	disk[510], disk[511] = 0x55, 0xaa

	entries := make([]byte, 128*128)
	for i, p := range parts {
		e := entries[128*i:]
		copy(e, linuxFS[:])
		for j := range 16 {
			e[16+j] = byte(0x10*i + j + 1) // unique partition GUID
		}
		le.PutUint64(e[32:], p.start)
		le.PutUint64(e[40:], p.start+p.sectors-1)
		for j, c := range utf16.Encode([]rune("lunboot test")) {
			le.PutUint16(e[56+2*j:], c)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	header := func(my, alt, entryLBA uint64) []byte {
		h := make([]byte, 92)
		copy(h, "EFI PART")
		le.PutUint32(h[8:], 0x00010000)
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[24:], my)
		le.PutUint64(h[32:], alt)
		le.PutUint64(h[40:], 34)
		le.PutUint64(h[48:], last-33)
		copy(h[56:72], "lunboot-nbd-test")
		le.PutUint64(h[72:], entryLBA)
		le.PutUint32(h[80:], 128)
		le.PutUint32(h[84:], 128)
		le.PutUint32(h[88:], entriesCRC)
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		return h
	}
	copy(disk[512:], header(1, last, 2))
	copy(disk[2*512:], entries)
	copy(disk[(last-32)*512:], entries)
	copy(disk[last*512:], header(last, 1, last-32))
}
