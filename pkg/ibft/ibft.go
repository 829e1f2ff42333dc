// Package ibft encodes and decodes the iSCSI Boot Firmware Table (iBFT), the
// ACPI-style table through which a boot ROM tells the operating system which
// NIC, initiator name and target it booted from.
//
// lunboot builds one so that the OS kernel it kexecs finds the same session
// parameters a NIC boot ROM would have left behind, and reads one when the
// platform firmware already published it.
//
// Layout sources: IBM "iSCSI Boot Firmware Table (iBFT)" 1.03 and the
// consumer that matters, Linux drivers/firmware/iscsi_ibft.c (structure
// sizes, the revision and checksum checks, which attributes it exposes under
// /sys/firmware/ibft). All integers are little-endian; every offset is
// relative to the start of the table; strings live in a heap after the
// structures, NUL-terminated, with the NUL not counted in their length.
package ibft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/lunboot/lunboot/pkg/sam"
)

// Table signatures. Linux's iscsi_ibft looks up the ACPI table under all
// three (drivers/firmware/iscsi_ibft.c ibft_signs[]), but only SignatureACPI
// is on the allow-list of tables the kernel installs from the initrd
// (drivers/acpi/tables.c table_sigs[], ACPI_SIG_IBFT in
// include/acpi/actbl1.h), and only SignatureLowMem (or SignatureBroadcom) is
// found by the BIOS-area scan of 0x80000–0xFFFFF
// (drivers/firmware/iscsi_ibft_find.c).
const (
	SignatureACPI     = "IBFT"
	SignatureLowMem   = "iBFT"
	SignatureBroadcom = "BIFT"
)

// Structure sizes and positions fixed by the iBFT specification and checked
// exactly by Linux (ibft_verify_hdr compares header.length with sizeof).
const (
	acpiHeaderLen = 36 // struct acpi_table_header
	controlOffset = 48 // after the ACPI header and 12 reserved bytes
	controlLen    = 18
	initiatorLen  = 74
	nicLen        = 102
	targetLen     = 54
	structAlign   = 8 // iBFT 1.03 §1.4.4.4: structures and strings 8-byte aligned

	// MaxNICs and MaxTargets are what a control structure of length 18 can
	// point at; Linux rejects any other control length.
	MaxNICs    = 2
	MaxTargets = 2

	// maxTableLen: structure and string offsets are 16-bit.
	maxTableLen = 0xffff
)

// Structure IDs (iBFT 1.03 §1.4.4.1; enum ibft_id in iscsi_ibft.c).
const (
	idControl   = 1
	idInitiator = 2
	idNIC       = 3
	idTarget    = 4
)

// Flags is a structure's flags byte. Bit meanings depend on the structure;
// the constants name them.
type Flags uint8

// Flag bits (iBFT 1.03 §1.4.4). Open-iscsi picks the boot NIC and target by
// FlagBoot; dracut's ibft_to_cmdline skips NICs without FlagValid and,
// unless rd.iscsi.mp is set, without FlagBoot.
const (
	// FlagValid marks the structure's contents as valid (all structures).
	FlagValid Flags = 1 << 0
	// FlagBoot marks the structure as the one the firmware booted from
	// (initiator, NIC, target).
	FlagBoot Flags = 1 << 1
	// FlagGlobal marks a NIC address as global rather than link-local.
	FlagGlobal Flags = 1 << 2
	// FlagRADIUSCHAP and FlagRADIUSReverseCHAP mark a target whose CHAP
	// (reverse CHAP) secrets come from RADIUS rather than this table.
	FlagRADIUSCHAP        Flags = 1 << 2
	FlagRADIUSReverseCHAP Flags = 1 << 3
)

// Origin is how a NIC's address was configured; the values are Windows'
// NL_PREFIX_ORIGIN, as the iBFT specification prescribes. dracut turns
// OriginDHCP into ip=<dev>:dhcp and anything else into a static ip=.
type Origin uint8

// Origins a NIC structure can carry.
const (
	OriginOther     Origin = 0
	OriginManual    Origin = 1
	OriginWellKnown Origin = 2
	OriginDHCP      Origin = 3
	OriginRouterAdv Origin = 4
	OriginUnchanged Origin = 15
)

// CHAPType says which CHAP a target structure describes.
type CHAPType uint8

// CHAP types (iBFT 1.03 §1.4.4.5).
const (
	CHAPNone   CHAPType = 0
	CHAPOneWay CHAPType = 1
	CHAPMutual CHAPType = 2
)

// BDF is a PCI bus/device/function in PCI segment 0, the only segment the
// table can name (Linux looks the NIC up with pci_get_domain_bus_and_slot(0,
// …) to link /sys/firmware/ibft/ethernetN/device).
type BDF struct {
	Bus      uint8
	Device   uint8 // 0–31
	Function uint8 // 0–7
}

// Uint16 packs the BDF as the table stores it: bus<<8 | device<<3 | function.
func (b BDF) Uint16() uint16 {
	return uint16(b.Bus)<<8 | uint16(b.Device&0x1f)<<3 | uint16(b.Function&0x7)
}

// BDFFromUint16 unpacks a table's PCI BDF field.
func BDFFromUint16(v uint16) BDF {
	return BDF{Bus: uint8(v >> 8), Device: uint8(v>>3) & 0x1f, Function: uint8(v) & 0x7}
}

// String formats the BDF as lspci does ("00:03.0").
func (b BDF) String() string {
	return fmt.Sprintf("%02x:%02x.%x", b.Bus, b.Device, b.Function)
}

// Table is a whole iBFT. The zero value of each optional part (Initiator, a
// NIC, a Target) means "absent": its control-structure offset is written as 0.
type Table struct {
	// Signature is one of the Signature constants; empty means SignatureACPI.
	Signature string
	// OEMID (up to 6 characters) and OEMTableID (up to 8) identify the
	// table's producer; the kernel prints them when it installs the table.
	// Empty means "LUNBOT" and "LUNBOOT".
	OEMID       string
	OEMTableID  string
	OEMRevision uint32
	// CreatorID (up to 4 characters) and CreatorRevision name the tool that
	// built the table. Empty means "LNBT".
	CreatorID       string
	CreatorRevision uint32

	// ControlFlags is the control structure's flags byte (bit 0: the
	// firmware tries only one of the targets, "boot failover" off).
	ControlFlags uint8

	Initiator Initiator
	NICs      []NIC    // at most MaxNICs; NICs[i] gets index i
	Targets   []Target // at most MaxTargets; Targets[i] gets index i
}

// Initiator is the initiator structure (id 2).
type Initiator struct {
	Flags Flags
	// Name is the initiator's iSCSI name (IQN or EUI); Linux exports it as
	// /sys/firmware/ibft/initiator/initiator-name and dracut and iscsistart
	// use it when the command line names none.
	Name            string
	ISNSServer      netip.Addr
	SLPServer       netip.Addr
	PrimaryRADIUS   netip.Addr
	SecondaryRADIUS netip.Addr
}

// IsZero reports whether the initiator structure is absent.
func (in Initiator) IsZero() bool { return in == Initiator{} }

// NIC is a NIC structure (id 3).
type NIC struct {
	Flags Flags
	// IP is the NIC's address and prefix length; the zero Prefix means no
	// address. IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d).
	IP         netip.Prefix
	Origin     Origin
	Gateway    netip.Addr
	DNS        [2]netip.Addr
	DHCPServer netip.Addr
	VLAN       uint16
	// MAC is the NIC's 6-byte hardware address; dracut and NetworkManager
	// find the interface by it.
	MAC      net.HardwareAddr
	PCI      BDF
	Hostname string
}

// IsZero reports whether the NIC structure is absent.
func (n NIC) IsZero() bool {
	return n.Flags == 0 && n.IP == netip.Prefix{} && n.Origin == 0 && n.Gateway == netip.Addr{} &&
		n.DNS == [2]netip.Addr{} && n.DHCPServer == netip.Addr{} && n.VLAN == 0 && len(n.MAC) == 0 &&
		n.PCI == BDF{} && n.Hostname == ""
}

// Target is a target structure (id 4).
type Target struct {
	Flags Flags
	// Addr is the portal: address and TCP port (open-iscsi uses 3260 when
	// the port is 0).
	Addr netip.AddrPort
	// LUN is the boot LUN as its 8 SAM bytes, stored as they travel on the
	// wire (not byte-swapped).
	LUN      sam.LUN
	CHAPType CHAPType
	// NICIndex is the index of the NIC structure used to reach the target.
	NICIndex uint8
	Name     string
	// CHAPName and CHAPSecret are the initiator's credentials; the reverse
	// pair the target's, for mutual CHAP. Set only what the target requires:
	// anyone who can read the table (root, via /sys/firmware) sees them.
	CHAPName          string
	CHAPSecret        string
	ReverseCHAPName   string
	ReverseCHAPSecret string
}

// IsZero reports whether the target structure is absent.
func (t Target) IsZero() bool { return t == Target{} }

// Errors a decoder returns for tables Linux would also refuse. Each is
// wrapped with the detail of what was wrong.
var (
	// ErrSignature: not an iBFT signature.
	ErrSignature = errors.New("ibft: not an iBFT (signature)")
	// ErrRevision: the header revision is not 1, the only one Linux accepts.
	ErrRevision = errors.New("ibft: unsupported revision")
	// ErrChecksum: the bytes of the table do not sum to zero.
	ErrChecksum = errors.New("ibft: bad checksum")
	// ErrMalformed: a length, offset or structure header is out of place.
	ErrMalformed = errors.New("ibft: malformed table")
	// ErrTooLarge: the table would not fit the 16-bit offsets.
	ErrTooLarge = errors.New("ibft: table too large")
	// ErrNotFound: no published table on this machine.
	ErrNotFound = errors.New("ibft: no iBFT published")
)
