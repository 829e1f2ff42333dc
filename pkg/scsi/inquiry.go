package scsi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrShortData is wrapped by decoders given fewer bytes than the format's
// fixed part needs.
var ErrShortData = errors.New("data too short")

func errShort(what string, want, have int) error {
	return fmt.Errorf("%s: %w: need %d bytes, have %d", what, ErrShortData, want, have)
}

// DeviceType is the PERIPHERAL DEVICE TYPE of INQUIRY data (SPC-4 §6.6.2,
// table 146).
type DeviceType byte

// Peripheral device types a boot initiator tells apart.
const (
	TypeDisk       DeviceType = 0x00 // direct access block device (SBC)
	TypeTape       DeviceType = 0x01
	TypeCDROM      DeviceType = 0x05 // CD/DVD (MMC)
	TypeOptical    DeviceType = 0x07
	TypeController DeviceType = 0x0c // storage array controller (SCC), e.g. tgtd's LUN 0
	TypeEnclosure  DeviceType = 0x0d
	TypeRBC        DeviceType = 0x0e // simplified direct access (RBC)
	TypeWellKnown  DeviceType = 0x1e
	TypeUnknown    DeviceType = 0x1f // unknown or no device type
)

// String names the device type.
func (t DeviceType) String() string {
	switch t {
	case TypeDisk:
		return "disk"
	case TypeTape:
		return "tape"
	case 0x03:
		return "processor"
	case TypeCDROM:
		return "cd/dvd"
	case TypeOptical:
		return "optical"
	case 0x08:
		return "changer"
	case TypeController:
		return "controller"
	case TypeEnclosure:
		return "enclosure"
	case TypeRBC:
		return "rbc-disk"
	case TypeWellKnown:
		return "well-known"
	case TypeUnknown:
		return "unknown"
	}
	return fmt.Sprintf("type %#02x", byte(t))
}

// IsBlockDevice reports whether the type is read and written in logical
// blocks with SBC commands (direct access or RBC).
func (t DeviceType) IsBlockDevice() bool { return t == TypeDisk || t == TypeRBC }

// InquiryData is the standard INQUIRY data (SPC-4 §6.6.2, table 145).
type InquiryData struct {
	// Qualifier is the PERIPHERAL QUALIFIER: 0 a device is connected, 1
	// the device is not connected now, 3 no device can be on this LUN.
	Qualifier byte
	Type      DeviceType
	Removable bool
	// Version is the SPC version claimed (6 = SPC-4, 7 = SPC-5).
	Version            byte
	NormACA, HiSup     bool
	ResponseDataFormat byte
	// TPGS is the asymmetric logical unit access support (0-3).
	TPGS     byte
	ThreePC  bool
	Protect  bool
	MultiP   bool
	CmdQue   bool
	Vendor   string // T10 vendor identification, trailing spaces trimmed
	Product  string
	Revision string
	// VersionDescriptors lists the standards the device claims (bytes 58-73).
	VersionDescriptors []uint16
}

// Present reports whether a logical unit exists at the addressed LUN: a
// target answers INQUIRY for an absent LUN with qualifier 3 and type 0x1f
// (SPC-4 §6.6.2).
func (d *InquiryData) Present() bool { return d.Qualifier == 0 || d.Qualifier == 1 }

// asciiField trims a fixed-width SPC ASCII field: trailing spaces and NULs,
// and bytes outside printable ASCII replaced so hostile data cannot carry
// terminal escapes into a console.
func asciiField(b []byte) string {
	b = bytes.TrimRight(b, " \x00")
	var sb strings.Builder
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// ParseInquiry decodes standard INQUIRY data, bounded by ADDITIONAL LENGTH
// and the buffer. It needs the 5-byte header; vendor, product and revision
// fields are read if present (a short answer leaves them empty).
func ParseInquiry(b []byte) (*InquiryData, error) {
	if len(b) < 5 {
		return nil, errShort("standard INQUIRY data", 5, len(b))
	}
	b = b[:min(len(b), 5+int(b[4]))]
	var f [96]byte
	copy(f[:], b)
	d := &InquiryData{
		Qualifier:          f[0] >> 5,
		Type:               DeviceType(f[0] & 0x1f),
		Removable:          f[1]&0x80 != 0,
		Version:            f[2],
		NormACA:            f[3]&0x20 != 0,
		HiSup:              f[3]&0x10 != 0,
		ResponseDataFormat: f[3] & 0x0f,
		TPGS:               (f[5] >> 4) & 0x3,
		ThreePC:            f[5]&0x08 != 0,
		Protect:            f[5]&0x01 != 0,
		MultiP:             f[6]&0x10 != 0,
		CmdQue:             f[7]&0x02 != 0,
		Vendor:             asciiField(f[8:16]),
		Product:            asciiField(f[16:32]),
		Revision:           asciiField(f[32:36]),
	}
	for o := 58; o+2 <= min(len(b), 74); o += 2 {
		if v := binary.BigEndian.Uint16(b[o:]); v != 0 {
			d.VersionDescriptors = append(d.VersionDescriptors, v)
		}
	}
	return d, nil
}

// Marshal encodes d as 96 bytes of standard INQUIRY data, the inverse of
// ParseInquiry, for targets and tests. Text fields are space padded and
// truncated to their widths.
func (d *InquiryData) Marshal() []byte {
	b := make([]byte, 96)
	b[0] = d.Qualifier<<5 | byte(d.Type&0x1f)
	if d.Removable {
		b[1] = 0x80
	}
	b[2] = d.Version
	b[3] = d.ResponseDataFormat & 0x0f
	if d.NormACA {
		b[3] |= 0x20
	}
	if d.HiSup {
		b[3] |= 0x10
	}
	b[4] = byte(len(b) - 5)
	b[5] = (d.TPGS & 3) << 4
	if d.ThreePC {
		b[5] |= 0x08
	}
	if d.Protect {
		b[5] |= 0x01
	}
	if d.MultiP {
		b[6] |= 0x10
	}
	if d.CmdQue {
		b[7] |= 0x02
	}
	putASCII(b[8:16], d.Vendor)
	putASCII(b[16:32], d.Product)
	putASCII(b[32:36], d.Revision)
	for i, v := range d.VersionDescriptors {
		if i == 8 {
			break
		}
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

func putASCII(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

// VPD page codes (SPC-4 §7.8, SBC-4 §6.6).
const (
	VPDSupportedPages             = 0x00
	VPDUnitSerialNumber           = 0x80
	VPDDeviceIdentification       = 0x83
	VPDBlockLimits                = 0xb0
	VPDBlockDeviceCharacteristics = 0xb1
	VPDLogicalBlockProvisioning   = 0xb2
)

// vpdPayload checks a VPD page header (SPC-4 §7.8.1: qualifier/type, page
// code, 2-byte PAGE LENGTH) and returns the page body, bounded by PAGE
// LENGTH and the buffer.
func vpdPayload(b []byte, page byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, errShort(fmt.Sprintf("VPD page %#02x", page), 4, len(b))
	}
	if b[1] != page {
		return nil, fmt.Errorf("VPD page %#02x: target returned page %#02x", page, b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	return b[4:min(len(b), 4+n)], nil
}

func vpdHeader(page byte, body []byte) []byte {
	b := make([]byte, 4, 4+len(body))
	b[1] = page
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	return append(b, body...)
}

// ParseSupportedPages decodes VPD page 0x00, the list of supported VPD page
// codes (SPC-4 §7.8.16).
func ParseSupportedPages(b []byte) ([]byte, error) {
	p, err := vpdPayload(b, VPDSupportedPages)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), p...), nil
}

// MarshalSupportedPages encodes VPD page 0x00 listing pages.
func MarshalSupportedPages(pages []byte) []byte {
	return vpdHeader(VPDSupportedPages, pages[:min(len(pages), 0xffff)])
}

// ParseUnitSerialNumber decodes VPD page 0x80 (SPC-4 §7.8.18): the
// PRODUCT SERIAL NUMBER, an ASCII field with trailing spaces trimmed.
func ParseUnitSerialNumber(b []byte) (string, error) {
	p, err := vpdPayload(b, VPDUnitSerialNumber)
	if err != nil {
		return "", err
	}
	return strings.TrimLeft(asciiField(p), " "), nil
}

// MarshalUnitSerialNumber encodes VPD page 0x80 carrying serial.
func MarshalUnitSerialNumber(serial string) []byte {
	return vpdHeader(VPDUnitSerialNumber, []byte(serial[:min(len(serial), 0xffff)]))
}

// DesignatorType is the DESIGNATOR TYPE of a device identification
// descriptor (SPC-4 §7.8.6.1, table 594).
type DesignatorType byte

// Designator types.
const (
	DesigVendorSpecific  DesignatorType = 0x0
	DesigT10VendorID     DesignatorType = 0x1
	DesigEUI64           DesignatorType = 0x2
	DesigNAA             DesignatorType = 0x3
	DesigRelativePort    DesignatorType = 0x4
	DesigTargetPortGroup DesignatorType = 0x5
	DesigLUGroup         DesignatorType = 0x6
	DesigMD5             DesignatorType = 0x7
	DesigSCSIName        DesignatorType = 0x8
	DesigProtocolPort    DesignatorType = 0x9
	DesigUUID            DesignatorType = 0xa
)

// String names the designator type.
func (t DesignatorType) String() string {
	switch t {
	case DesigVendorSpecific:
		return "vendor-specific"
	case DesigT10VendorID:
		return "t10"
	case DesigEUI64:
		return "eui-64"
	case DesigNAA:
		return "naa"
	case DesigRelativePort:
		return "relative-target-port"
	case DesigTargetPortGroup:
		return "target-port-group"
	case DesigLUGroup:
		return "lu-group"
	case DesigMD5:
		return "md5"
	case DesigSCSIName:
		return "scsi-name"
	case DesigProtocolPort:
		return "protocol-port"
	case DesigUUID:
		return "uuid"
	}
	return fmt.Sprintf("designator-%#x", byte(t))
}

// Association is what a designator identifies (SPC-4 table 593).
type Association byte

// Associations.
const (
	AssocLogicalUnit Association = 0
	AssocTargetPort  Association = 1
	AssocTarget      Association = 2
)

// String names the association.
func (a Association) String() string {
	switch a {
	case AssocLogicalUnit:
		return "lun"
	case AssocTargetPort:
		return "port"
	case AssocTarget:
		return "target"
	}
	return "reserved"
}

// Designator is one identification descriptor of VPD page 0x83 (SPC-4
// §7.8.6.1).
type Designator struct {
	// ProtocolID is the transport protocol (5 = iSCSI), meaningful only
	// when PIV is set.
	ProtocolID  byte
	PIV         bool
	CodeSet     byte // 1 binary, 2 ASCII, 3 UTF-8
	Association Association
	Type        DesignatorType
	Value       []byte
}

// String formats the designator the way Linux names devices: "naa.<hex>",
// "eui.<hex>", "t10.<ascii>", the SCSI name string as is, else hex.
func (d Designator) String() string {
	switch {
	case d.Type == DesigNAA:
		return fmt.Sprintf("naa.%x", d.Value)
	case d.Type == DesigEUI64:
		return fmt.Sprintf("eui.%x", d.Value)
	case d.Type == DesigT10VendorID:
		return "t10." + asciiField(d.Value)
	case d.Type == DesigSCSIName, d.CodeSet == 2 || d.CodeSet == 3:
		return asciiField(d.Value)
	case d.Type == DesigUUID && len(d.Value) == 18:
		u := d.Value[2:]
		return fmt.Sprintf("uuid.%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	case d.Type == DesigRelativePort || d.Type == DesigTargetPortGroup:
		if len(d.Value) == 4 {
			return fmt.Sprint(binary.BigEndian.Uint16(d.Value[2:]))
		}
	}
	return fmt.Sprintf("%x", d.Value)
}

// ParseDeviceIdentification decodes VPD page 0x83 (SPC-4 §7.8.6) into its
// designators. A descriptor whose length runs past the page ends the walk
// with an error, returning the designators read so far.
func ParseDeviceIdentification(b []byte) ([]Designator, error) {
	p, err := vpdPayload(b, VPDDeviceIdentification)
	if err != nil {
		return nil, err
	}
	var out []Designator
	for len(p) > 0 {
		if len(p) < 4 {
			return out, errShort("VPD page 0x83 designator header", 4, len(p))
		}
		n := int(p[3])
		if 4+n > len(p) {
			return out, errShort("VPD page 0x83 designator", 4+n, len(p))
		}
		out = append(out, Designator{
			ProtocolID:  p[0] >> 4,
			CodeSet:     p[0] & 0x0f,
			PIV:         p[1]&0x80 != 0,
			Association: Association((p[1] >> 4) & 0x3),
			Type:        DesignatorType(p[1] & 0x0f),
			Value:       append([]byte(nil), p[4:4+n]...),
		})
		p = p[4+n:]
	}
	return out, nil
}

// MarshalDeviceIdentification encodes VPD page 0x83 holding ds. Values
// longer than 255 bytes are truncated.
func MarshalDeviceIdentification(ds []Designator) []byte {
	var body []byte
	for _, d := range ds {
		v := d.Value[:min(len(d.Value), 255)]
		h := []byte{d.ProtocolID<<4 | d.CodeSet&0x0f, byte(d.Association&3)<<4 | byte(d.Type&0x0f), 0, byte(len(v))}
		if d.PIV {
			h[1] |= 0x80
		}
		body = append(body, h...)
		body = append(body, v...)
	}
	return vpdHeader(VPDDeviceIdentification, body[:min(len(body), 0xffff)])
}

// BlockLimits is VPD page 0xB0 (SBC-4 §6.6.4). Lengths are in logical
// blocks; 0 means the device states no limit.
type BlockLimits struct {
	WSNZ                           bool
	MaxCompareAndWriteLength       byte
	OptimalTransferGranularity     uint16
	MaxTransferLength              uint32
	OptimalTransferLength          uint32
	MaxPrefetchLength              uint32
	MaxUnmapLBACount               uint32
	MaxUnmapBlockDescriptorCount   uint32
	OptimalUnmapGranularity        uint32
	UnmapGranularityAlignmentValid bool
	UnmapGranularityAlignment      uint32
	MaxWriteSameLength             uint64
}

// ParseBlockLimits decodes VPD page 0xB0. Devices implementing an older
// SBC return a shorter page; fields beyond its end read as zero (no limit).
func ParseBlockLimits(b []byte) (*BlockLimits, error) {
	p, err := vpdPayload(b, VPDBlockLimits)
	if err != nil {
		return nil, err
	}
	// Offsets below are from the page start; p starts at byte 4.
	var f [64]byte
	copy(f[4:], p)
	return &BlockLimits{
		WSNZ:                           f[4]&0x01 != 0,
		MaxCompareAndWriteLength:       f[5],
		OptimalTransferGranularity:     binary.BigEndian.Uint16(f[6:]),
		MaxTransferLength:              binary.BigEndian.Uint32(f[8:]),
		OptimalTransferLength:          binary.BigEndian.Uint32(f[12:]),
		MaxPrefetchLength:              binary.BigEndian.Uint32(f[16:]),
		MaxUnmapLBACount:               binary.BigEndian.Uint32(f[20:]),
		MaxUnmapBlockDescriptorCount:   binary.BigEndian.Uint32(f[24:]),
		OptimalUnmapGranularity:        binary.BigEndian.Uint32(f[28:]),
		UnmapGranularityAlignmentValid: f[32]&0x80 != 0,
		UnmapGranularityAlignment:      binary.BigEndian.Uint32(f[32:]) & 0x7fffffff,
		MaxWriteSameLength:             binary.BigEndian.Uint64(f[36:]),
	}, nil
}

// Marshal encodes the page with the SBC-4 page length 0x3C.
func (l *BlockLimits) Marshal() []byte {
	f := make([]byte, 64)
	if l.WSNZ {
		f[4] = 1
	}
	f[5] = l.MaxCompareAndWriteLength
	binary.BigEndian.PutUint16(f[6:], l.OptimalTransferGranularity)
	binary.BigEndian.PutUint32(f[8:], l.MaxTransferLength)
	binary.BigEndian.PutUint32(f[12:], l.OptimalTransferLength)
	binary.BigEndian.PutUint32(f[16:], l.MaxPrefetchLength)
	binary.BigEndian.PutUint32(f[20:], l.MaxUnmapLBACount)
	binary.BigEndian.PutUint32(f[24:], l.MaxUnmapBlockDescriptorCount)
	binary.BigEndian.PutUint32(f[28:], l.OptimalUnmapGranularity)
	binary.BigEndian.PutUint32(f[32:], l.UnmapGranularityAlignment&0x7fffffff)
	if l.UnmapGranularityAlignmentValid {
		f[32] |= 0x80
	}
	binary.BigEndian.PutUint64(f[36:], l.MaxWriteSameLength)
	return vpdHeader(VPDBlockLimits, f[4:])
}

// LogicalBlockProvisioning is VPD page 0xB2 (SBC-4 §6.6.6).
type LogicalBlockProvisioning struct {
	ThresholdExponent byte
	// LBPU: the device supports UNMAP.
	LBPU bool
	// LBPWS and LBPWS10: WRITE SAME(16)/(10) with UNMAP supported.
	LBPWS, LBPWS10 bool
	// LBPRZ: unmapped blocks read as zero (3-bit field in SBC-4; non-zero
	// means some form of provisioning initialisation pattern).
	LBPRZ  byte
	ANCSup bool
	DP     bool
	// ProvisioningType: 0 not reported, 1 resource provisioned, 2 thin.
	ProvisioningType byte
}

// ParseLogicalBlockProvisioning decodes VPD page 0xB2.
func ParseLogicalBlockProvisioning(b []byte) (*LogicalBlockProvisioning, error) {
	p, err := vpdPayload(b, VPDLogicalBlockProvisioning)
	if err != nil {
		return nil, err
	}
	if len(p) < 3 {
		return nil, errShort("VPD page 0xb2", 7, 4+len(p))
	}
	return &LogicalBlockProvisioning{
		ThresholdExponent: p[0],
		LBPU:              p[1]&0x80 != 0,
		LBPWS:             p[1]&0x40 != 0,
		LBPWS10:           p[1]&0x20 != 0,
		LBPRZ:             (p[1] >> 2) & 0x7,
		ANCSup:            p[1]&0x02 != 0,
		DP:                p[1]&0x01 != 0,
		ProvisioningType:  p[2] & 0x07,
	}, nil
}

// Marshal encodes the page (4-byte body, no provisioning group descriptor).
func (l *LogicalBlockProvisioning) Marshal() []byte {
	body := make([]byte, 4)
	body[0] = l.ThresholdExponent
	body[1] = (l.LBPRZ & 7) << 2
	for bit, set := range map[byte]bool{0x80: l.LBPU, 0x40: l.LBPWS, 0x20: l.LBPWS10, 0x02: l.ANCSup, 0x01: l.DP} {
		if set {
			body[1] |= bit
		}
	}
	body[2] = l.ProvisioningType & 7
	return vpdHeader(VPDLogicalBlockProvisioning, body)
}
