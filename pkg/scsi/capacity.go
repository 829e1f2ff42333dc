package scsi

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Capacity is what READ CAPACITY(10) or (16) returns (SBC-4 §5.19.2,
// §5.20.2).
type Capacity struct {
	// LastLBA is the address of the last logical block (RETURNED LOGICAL
	// BLOCK ADDRESS): the device has LastLBA+1 blocks. READ CAPACITY(10)
	// answers 0xFFFFFFFF when the device is too large for it.
	LastLBA uint64
	// BlockSize is the logical block length in bytes.
	BlockSize uint32
	// Long is set when the value came from READ CAPACITY(16); the fields
	// below are only meaningful then.
	Long bool
	// ProtectionEnabled (PROT_EN) and ProtectionType (P_TYPE, 0-based).
	ProtectionEnabled bool
	ProtectionType    byte
	// PIExponent is P_I_EXPONENT (protection information intervals).
	PIExponent byte
	// PhysicalExponent is LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT: a
	// physical block holds 1<<PhysicalExponent logical blocks.
	PhysicalExponent byte
	// LBPME is set when logical block provisioning management (thin
	// provisioning, UNMAP) is enabled; LBPRZ when unmapped blocks read as
	// zero.
	LBPME, LBPRZ bool
	// LowestAlignedLBA is the first LBA aligned to a physical block.
	LowestAlignedLBA uint16
}

// Blocks returns the number of logical blocks, LastLBA+1.
func (c *Capacity) Blocks() uint64 { return c.LastLBA + 1 }

// Bytes returns the capacity in bytes, or an error if it does not fit in
// an int64 (a hostile or broken answer).
func (c *Capacity) Bytes() (int64, error) {
	if c.BlockSize == 0 {
		return 0, fmt.Errorf("capacity: block size 0")
	}
	if c.LastLBA == math.MaxUint64 || c.Blocks() > uint64(math.MaxInt64)/uint64(c.BlockSize) {
		return 0, fmt.Errorf("capacity: %d blocks of %d bytes overflow int64", c.LastLBA, c.BlockSize)
	}
	return int64(c.Blocks() * uint64(c.BlockSize)), nil
}

// PhysicalBlockSize returns the physical block size in bytes.
func (c *Capacity) PhysicalBlockSize() uint64 {
	return uint64(c.BlockSize) << min(c.PhysicalExponent, 15)
}

// ParseReadCapacity10 decodes READ CAPACITY(10) parameter data.
func ParseReadCapacity10(b []byte) (*Capacity, error) {
	if len(b) < 8 {
		return nil, errShort("READ CAPACITY(10) data", 8, len(b))
	}
	return &Capacity{
		LastLBA:   uint64(binary.BigEndian.Uint32(b)),
		BlockSize: binary.BigEndian.Uint32(b[4:]),
	}, nil
}

// ParseReadCapacity16 decodes READ CAPACITY(16) parameter data. It needs
// the first 12 bytes; the provisioning and alignment fields (bytes 12-15)
// read as zero if the device sent fewer.
func ParseReadCapacity16(b []byte) (*Capacity, error) {
	if len(b) < 12 {
		return nil, errShort("READ CAPACITY(16) data", 12, len(b))
	}
	var f [32]byte
	copy(f[:], b)
	return &Capacity{
		LastLBA:           binary.BigEndian.Uint64(f[0:]),
		BlockSize:         binary.BigEndian.Uint32(f[8:]),
		Long:              true,
		ProtectionType:    (f[12] >> 1) & 0x7,
		ProtectionEnabled: f[12]&0x01 != 0,
		PIExponent:        f[13] >> 4,
		PhysicalExponent:  f[13] & 0x0f,
		LBPME:             f[14]&0x80 != 0,
		LBPRZ:             f[14]&0x40 != 0,
		LowestAlignedLBA:  binary.BigEndian.Uint16(f[14:]) & 0x3fff,
	}, nil
}

// Marshal encodes c as READ CAPACITY(16) data (32 bytes) when c.Long is
// set, else as READ CAPACITY(10) data (8 bytes, LastLBA clamped to
// 0xFFFFFFFF as SBC-4 §5.19.2 requires for large devices).
func (c *Capacity) Marshal() []byte {
	if !c.Long {
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b, uint32(min(c.LastLBA, math.MaxUint32)))
		binary.BigEndian.PutUint32(b[4:], c.BlockSize)
		return b
	}
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, c.LastLBA)
	binary.BigEndian.PutUint32(b[8:], c.BlockSize)
	b[12] = (c.ProtectionType & 7) << 1
	if c.ProtectionEnabled {
		b[12] |= 1
	}
	b[13] = c.PIExponent<<4 | c.PhysicalExponent&0x0f
	binary.BigEndian.PutUint16(b[14:], c.LowestAlignedLBA&0x3fff)
	if c.LBPME {
		b[14] |= 0x80
	}
	if c.LBPRZ {
		b[14] |= 0x40
	}
	return b
}

// ParseReportLUNs decodes REPORT LUNS parameter data (SPC-4 §6.33.2). It
// returns the LUNs present in b, never more than the LUN LIST LENGTH says,
// and that length in bytes: when it exceeds len(b)-8 the list was cut by the
// allocation length and the caller may ask again with a larger one.
func ParseReportLUNs(b []byte) (luns []LUN, listLen uint32, err error) {
	if len(b) < 8 {
		return nil, 0, errShort("REPORT LUNS data", 8, len(b))
	}
	listLen = binary.BigEndian.Uint32(b)
	n := min(uint64(listLen)/8, uint64(len(b)-8)/8)
	luns = make([]LUN, n)
	for i := range luns {
		copy(luns[i][:], b[8+8*i:])
	}
	return luns, listLen, nil
}

// MarshalReportLUNs encodes REPORT LUNS parameter data listing luns.
func MarshalReportLUNs(luns []LUN) []byte {
	b := make([]byte, 8+8*len(luns))
	binary.BigEndian.PutUint32(b, uint32(8*len(luns)))
	for i, l := range luns {
		copy(b[8+8*i:], l[:])
	}
	return b
}

// ModeHeader is the mode parameter header of MODE SENSE(6) or (10) data
// (SPC-4 §7.5.5), with the direct-access device-specific parameter decoded
// (SBC-4 §6.5.1): the fields a block initiator needs.
type ModeHeader struct {
	MediumType byte
	// WriteProtect (WP): the medium is write-protected.
	WriteProtect bool
	// DPOFUA: the device honours the DPO and FUA bits.
	DPOFUA bool
	// BlockDescriptorLength is the length of the block descriptors that
	// follow the header.
	BlockDescriptorLength uint16
	// Long (MODE SENSE(10)) selects the 8-byte header form.
	Long bool
}

// ParseModeSense6 decodes the 4-byte MODE SENSE(6) header.
func ParseModeSense6(b []byte) (*ModeHeader, error) {
	if len(b) < 4 {
		return nil, errShort("MODE SENSE(6) header", 4, len(b))
	}
	return &ModeHeader{
		MediumType:            b[1],
		WriteProtect:          b[2]&0x80 != 0,
		DPOFUA:                b[2]&0x10 != 0,
		BlockDescriptorLength: uint16(b[3]),
	}, nil
}

// ParseModeSense10 decodes the 8-byte MODE SENSE(10) header.
func ParseModeSense10(b []byte) (*ModeHeader, error) {
	if len(b) < 8 {
		return nil, errShort("MODE SENSE(10) header", 8, len(b))
	}
	return &ModeHeader{
		MediumType:            b[2],
		WriteProtect:          b[3]&0x80 != 0,
		DPOFUA:                b[3]&0x10 != 0,
		BlockDescriptorLength: binary.BigEndian.Uint16(b[6:]),
		Long:                  true,
	}, nil
}

// Marshal encodes the header (with MODE DATA LENGTH covering only the
// header) in the 10-byte-CDB form when h.Long is set, else the 6-byte form.
func (h *ModeHeader) Marshal() []byte {
	var dsp byte
	if h.WriteProtect {
		dsp |= 0x80
	}
	if h.DPOFUA {
		dsp |= 0x10
	}
	if h.Long {
		b := make([]byte, 8)
		binary.BigEndian.PutUint16(b, 6)
		b[2], b[3] = h.MediumType, dsp
		binary.BigEndian.PutUint16(b[6:], h.BlockDescriptorLength)
		return b
	}
	return []byte{3, h.MediumType, dsp, byte(min(h.BlockDescriptorLength, 0xff))}
}
