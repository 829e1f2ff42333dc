package scsi

import "encoding/binary"

// Operation codes of the commands this package builds (SPC-4 Annex E,
// SBC-4 table 13).
const (
	OpTestUnitReady      = 0x00
	OpRequestSense       = 0x03
	OpInquiry            = 0x12
	OpModeSense6         = 0x1a
	OpReadCapacity10     = 0x25
	OpRead10             = 0x28
	OpWrite10            = 0x2a
	OpSynchronizeCache10 = 0x35
	OpUnmap              = 0x42
	OpModeSense10        = 0x5a
	OpRead16             = 0x88
	OpWrite16            = 0x8a
	OpSynchronizeCache16 = 0x91
	OpServiceActionIn16  = 0x9e
	OpReportLUNs         = 0xa0

	// SAReadCapacity16 is the SERVICE ACTION IN(16) service action of
	// READ CAPACITY(16) (SBC-4 §5.20.1).
	SAReadCapacity16 = 0x10
)

// fuaBit is the FUA (force unit access) bit in byte 1 of READ/WRITE(10/16)
// (SBC-4 §5.13, §5.39): the command completes only once the data is on
// non-volatile media.
const fuaBit = 0x08

// TestUnitReadyCDB builds TEST UNIT READY (SPC-4 §6.47).
func TestUnitReadyCDB() []byte { return make([]byte, 6) }

// RequestSenseCDB builds REQUEST SENSE (SPC-4 §6.39); desc asks for
// descriptor-format sense data.
func RequestSenseCDB(desc bool, alloc byte) []byte {
	c := []byte{OpRequestSense, 0, 0, 0, alloc, 0}
	if desc {
		c[1] = 0x01
	}
	return c
}

// InquiryCDB builds INQUIRY (SPC-4 §6.6). With evpd false it asks for the
// standard data and page must be 0; with evpd true it asks for VPD page.
func InquiryCDB(evpd bool, page byte, alloc uint16) []byte {
	c := []byte{OpInquiry, 0, page, 0, 0, 0}
	if evpd {
		c[1] = 0x01
	}
	binary.BigEndian.PutUint16(c[3:], alloc)
	return c
}

// ReportLUNsCDB builds REPORT LUNS (SPC-4 §6.33). selectReport 0 lists the
// logical units with their LUN addressing; 2 lists every logical unit,
// including well-known ones.
func ReportLUNsCDB(selectReport byte, alloc uint32) []byte {
	c := make([]byte, 12)
	c[0] = OpReportLUNs
	c[2] = selectReport
	binary.BigEndian.PutUint32(c[6:], alloc)
	return c
}

// ReadCapacity10CDB builds READ CAPACITY(10) (SBC-4 §5.19).
func ReadCapacity10CDB() []byte {
	c := make([]byte, 10)
	c[0] = OpReadCapacity10
	return c
}

// ReadCapacity16CDB builds READ CAPACITY(16), SERVICE ACTION IN(16) with
// service action 0x10 (SBC-4 §5.20).
func ReadCapacity16CDB(alloc uint32) []byte {
	c := make([]byte, 16)
	c[0] = OpServiceActionIn16
	c[1] = SAReadCapacity16
	binary.BigEndian.PutUint32(c[10:], alloc)
	return c
}

// Read10CDB builds READ(10) (SBC-4 §5.15).
func Read10CDB(lba uint32, blocks uint16, fua bool) []byte {
	return rw10(OpRead10, lba, blocks, fua)
}

// Write10CDB builds WRITE(10) (SBC-4 §5.40).
func Write10CDB(lba uint32, blocks uint16, fua bool) []byte {
	return rw10(OpWrite10, lba, blocks, fua)
}

// Read16CDB builds READ(16) (SBC-4 §5.17).
func Read16CDB(lba uint64, blocks uint32, fua bool) []byte {
	return rw16(OpRead16, lba, blocks, fua)
}

// Write16CDB builds WRITE(16) (SBC-4 §5.42).
func Write16CDB(lba uint64, blocks uint32, fua bool) []byte {
	return rw16(OpWrite16, lba, blocks, fua)
}

func rw10(op byte, lba uint32, blocks uint16, fua bool) []byte {
	return putRW10(make([]byte, 10), op, lba, blocks, fua)
}

func rw16(op byte, lba uint64, blocks uint32, fua bool) []byte {
	return putRW16(make([]byte, 16), op, lba, blocks, fua)
}

// putRW10 encodes a 10-byte READ or WRITE into c[:10] and returns it.
func putRW10(c []byte, op byte, lba uint32, blocks uint16, fua bool) []byte {
	c = c[:10]
	clear(c)
	c[0] = op
	if fua {
		c[1] = fuaBit
	}
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

// putRW16 encodes a 16-byte READ or WRITE into c[:16] and returns it.
func putRW16(c []byte, op byte, lba uint64, blocks uint32, fua bool) []byte {
	c = c[:16]
	clear(c)
	c[0] = op
	if fua {
		c[1] = fuaBit
	}
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return c
}

// SynchronizeCache10CDB builds SYNCHRONIZE CACHE(10) (SBC-4 §5.24). blocks
// 0 means from lba to the end of the medium.
func SynchronizeCache10CDB(lba uint32, blocks uint16) []byte {
	c := make([]byte, 10)
	c[0] = OpSynchronizeCache10
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], blocks)
	return c
}

// SynchronizeCache16CDB builds SYNCHRONIZE CACHE(16) (SBC-4 §5.25).
func SynchronizeCache16CDB(lba uint64, blocks uint32) []byte {
	c := make([]byte, 16)
	c[0] = OpSynchronizeCache16
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return c
}

// UnmapCDB builds UNMAP (SBC-4 §5.30) for a parameter list of paramLen
// bytes (see UnmapParameters).
func UnmapCDB(paramLen uint16) []byte {
	c := make([]byte, 10)
	c[0] = OpUnmap
	binary.BigEndian.PutUint16(c[7:], paramLen)
	return c
}

// ModeSense6CDB builds MODE SENSE(6) (SPC-4 §6.13). dbd suppresses block
// descriptors; page 0x3f asks for all pages.
func ModeSense6CDB(dbd bool, page, subpage, alloc byte) []byte {
	c := []byte{OpModeSense6, 0, page & 0x3f, subpage, alloc, 0}
	if dbd {
		c[1] = 0x08
	}
	return c
}

// ModeSense10CDB builds MODE SENSE(10) (SPC-4 §6.14).
func ModeSense10CDB(dbd bool, page, subpage byte, alloc uint16) []byte {
	c := make([]byte, 10)
	c[0] = OpModeSense10
	if dbd {
		c[1] = 0x08
	}
	c[2] = page & 0x3f
	c[3] = subpage
	binary.BigEndian.PutUint16(c[7:], alloc)
	return c
}

// UnmapDescriptor is one range in an UNMAP parameter list (SBC-4 §5.30.2).
type UnmapDescriptor struct {
	LBA    uint64
	Blocks uint32
}

// UnmapParameters encodes the UNMAP parameter list for descs (SBC-4
// §5.30.2, table 85): an 8-byte header followed by 16 bytes per range.
func UnmapParameters(descs []UnmapDescriptor) []byte {
	b := make([]byte, 8+16*len(descs))
	binary.BigEndian.PutUint16(b[0:], uint16(len(b)-2))
	binary.BigEndian.PutUint16(b[2:], uint16(16*len(descs)))
	for i, d := range descs {
		o := 8 + 16*i
		binary.BigEndian.PutUint64(b[o:], d.LBA)
		binary.BigEndian.PutUint32(b[o+8:], d.Blocks)
	}
	return b
}

// ParseUnmapParameters decodes an UNMAP parameter list, the inverse of
// UnmapParameters, bounded by the lengths in its header and the buffer.
func ParseUnmapParameters(b []byte) ([]UnmapDescriptor, error) {
	if len(b) < 8 {
		return nil, errShort("UNMAP parameter list", 8, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 8+n > len(b) {
		return nil, errShort("UNMAP parameter list", 8+n, len(b))
	}
	out := make([]UnmapDescriptor, 0, n/16)
	for o := 8; o+16 <= 8+n; o += 16 {
		out = append(out, UnmapDescriptor{
			LBA:    binary.BigEndian.Uint64(b[o:]),
			Blocks: binary.BigEndian.Uint32(b[o+8:]),
		})
	}
	return out, nil
}
