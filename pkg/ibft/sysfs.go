package ibft

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/sam"
)

// Read returns the iBFT the running kernel found: the raw ACPI table when it
// is published under <sysfs>/firmware/acpi/tables (exact bytes), else the
// attributes iscsi_ibft exposes under <sysfs>/firmware/ibft (the only view of
// a table found by the BIOS-area scan). sysfs is the sysfs mount point,
// normally "/sys"; tests pass a fake tree. Both views need root. It returns
// an error wrapping ErrNotFound when neither exists.
func Read(sysfs string) (*Table, error) {
	t, err := ReadACPI(sysfs)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return t, err
	}
	return ReadSysfs(sysfs)
}

// ReadACPI decodes the raw table from <sysfs>/firmware/acpi/tables/IBFT,
// iBFT or BIFT (in the order Linux's iscsi_ibft looks them up).
func ReadACPI(sysfs string) (*Table, error) {
	dir := filepath.Join(sysfs, "firmware", "acpi", "tables")
	for _, sig := range []string{SignatureACPI, SignatureLowMem, SignatureBroadcom} {
		p := filepath.Join(dir, sig)
		b, err := readLimited(p, maxTableLen+1)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ibft: read %s: %w", p, err)
		}
		t := new(Table)
		if err := t.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("ibft: decode %s: %w", p, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: no %s/{IBFT,iBFT,BIFT}", ErrNotFound, dir)
}

// SecretAttr reports whether an attribute of a /sys/firmware/ibft target
// holds a CHAP secret, which iscsi_ibft shows in clear: chap-secret, and
// rev-chap-name-secret for the reverse one (the name iscsi_boot_sysfs.c
// gives ISCSI_BOOT_TGT_REV_CHAP_SECRET); rev-chap-secret too, should a
// kernel ever spell it so. Tools that print the table mask these.
func SecretAttr(name string) bool {
	return name == "chap-secret" || name == "rev-chap-name-secret" || name == "rev-chap-secret"
}

// ReadSysfs rebuilds a Table from the attributes Linux's iscsi_boot_sysfs
// exposes under <sysfs>/firmware/ibft (drivers/scsi/iscsi_boot_sysfs.c):
// initiator/, ethernetN/, targetN/ and acpi_header/. Attributes the kernel
// hides (unset addresses, absent strings) stay zero. The NIC's PCI BDF comes
// from the ethernetN/device link. Two kernel quirks are handled: the target
// LUN is printed as each of its 8 bytes in %x without zero padding (see
// parseSysfsLUN), and the reverse CHAP secret is named rev-chap-name-secret.
// The NIC subnet-mask attribute is ignored (prefix-len carries the same).
func ReadSysfs(sysfs string) (*Table, error) {
	root := filepath.Join(sysfs, "firmware", "ibft")
	if _, err := os.Stat(root); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no %s", ErrNotFound, root)
		}
		return nil, fmt.Errorf("ibft: %w", err)
	}
	r := attrReader{}
	t := &Table{}

	hdr := filepath.Join(root, "acpi_header")
	t.Signature = r.str(hdr, "signature")
	t.OEMID = strings.TrimRight(r.str(hdr, "oem_id"), " \x00")
	t.OEMTableID = strings.TrimRight(r.str(hdr, "oem_table_id"), " \x00")

	ini := filepath.Join(root, "initiator")
	if _, err := os.Stat(ini); err == nil {
		t.Initiator = Initiator{
			Flags:           Flags(r.uint(ini, "flags", 8)),
			Name:            r.str(ini, "initiator-name"),
			ISNSServer:      r.addr(ini, "isns-server"),
			SLPServer:       r.addr(ini, "slp-server"),
			PrimaryRADIUS:   r.addr(ini, "pri-radius-server"),
			SecondaryRADIUS: r.addr(ini, "sec-radius-server"),
		}
	}

	nics, err := indexedDirs(root, "ethernet")
	if err != nil {
		return nil, err
	}
	for _, d := range nics {
		p := filepath.Join(root, d.name)
		n := NIC{
			Flags:      Flags(r.uint(p, "flags", 8)),
			Origin:     Origin(r.uint(p, "origin", 8)),
			Gateway:    r.addr(p, "gateway"),
			DNS:        [2]netip.Addr{r.addr(p, "primary-dns"), r.addr(p, "secondary-dns")},
			DHCPServer: r.addr(p, "dhcp"),
			VLAN:       uint16(r.uint(p, "vlan", 16)),
			Hostname:   r.str(p, "hostname"),
		}
		if ip := r.addr(p, "ip-addr"); ip.IsValid() {
			bits := int(r.uint(p, "prefix-len", 8))
			if n.IP = netip.PrefixFrom(ip, bits); !n.IP.IsValid() && r.err == nil {
				r.err = fmt.Errorf("%w: %s/prefix-len %d invalid for %v", ErrMalformed, p, bits, ip)
			}
		}
		if s := r.str(p, "mac"); s != "" {
			mac, err := net.ParseMAC(s)
			if err != nil && r.err == nil {
				r.err = fmt.Errorf("%w: %s/mac %q: %v", ErrMalformed, p, s, err)
			}
			n.MAC = mac
		}
		if link, err := os.Readlink(filepath.Join(p, "device")); err == nil {
			if bdf, ok := bdfFromPath(link); ok {
				n.PCI = bdf
			}
		}
		for len(t.NICs) < d.index {
			t.NICs = append(t.NICs, NIC{})
		}
		t.NICs = append(t.NICs, n)
	}

	tgts, err := indexedDirs(root, "target")
	if err != nil {
		return nil, err
	}
	for _, d := range tgts {
		p := filepath.Join(root, d.name)
		tg := Target{
			Flags:             Flags(r.uint(p, "flags", 8)),
			CHAPType:          CHAPType(r.uint(p, "chap-type", 8)),
			NICIndex:          uint8(r.uint(p, "nic-assoc", 8)),
			Name:              r.str(p, "target-name"),
			CHAPName:          r.str(p, "chap-name"),
			CHAPSecret:        r.str(p, "chap-secret"),
			ReverseCHAPName:   r.str(p, "rev-chap-name"),
			ReverseCHAPSecret: r.str(p, "rev-chap-name-secret"),
		}
		tg.Addr = netip.AddrPortFrom(r.addr(p, "ip-addr"), uint16(r.uint(p, "port", 16)))
		if s := r.str(p, "lun"); s != "" {
			lun, err := parseSysfsLUN(s)
			if err != nil && r.err == nil {
				r.err = fmt.Errorf("%w: %s/lun: %v", ErrMalformed, p, err)
			}
			tg.LUN = lun
		}
		for len(t.Targets) < d.index {
			t.Targets = append(t.Targets, Target{})
		}
		t.Targets = append(t.Targets, tg)
	}
	if r.err != nil {
		return nil, r.err
	}
	return t, nil
}

// maxSysfsEntries bounds how many ethernetN/targetN directories are read;
// iscsi_ibft creates at most two of each.
const maxSysfsEntries = 16

type indexedDir struct {
	name  string
	index int
}

// indexedDirs lists <prefix>N entries of dir, sorted by N.
func indexedDirs(dir, prefix string) ([]indexedDir, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ibft: %w", err)
	}
	var out []indexedDir
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || n >= maxSysfsEntries {
			return nil, fmt.Errorf("%w: unexpected entry %s in %s", ErrMalformed, e.Name(), dir)
		}
		out = append(out, indexedDir{e.Name(), n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	return out, nil
}

// attrReader reads sysfs attributes, treating a missing one as empty and
// recording the first real error.
type attrReader struct{ err error }

// maxAttr bounds one attribute read (sysfs pages are 4 KiB).
const maxAttr = 4096

func (r *attrReader) str(dir, name string) string {
	p := filepath.Join(dir, name)
	b, err := readLimited(p, maxAttr)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && r.err == nil {
			r.err = fmt.Errorf("ibft: read %s: %w", p, err)
		}
		return ""
	}
	// Attributes end in one newline ("%.*s\n"); subnet-mask has none.
	return strings.TrimSuffix(string(b), "\n")
}

func (r *attrReader) uint(dir, name string, bits int) uint64 {
	s := r.str(dir, name)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("%w: %s/%s = %q: %v", ErrMalformed, dir, name, s, err)
	}
	return v
}

func (r *attrReader) addr(dir, name string) netip.Addr {
	s := r.str(dir, name)
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("%w: %s/%s = %q: %v", ErrMalformed, dir, name, s, err)
		}
		return netip.Addr{}
	}
	a = a.Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func readLimited(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("larger than %d bytes", n)
	}
	return b, nil
}

// pciAddrRE matches a PCI device name, domain:bus:device.function.
var pciAddrRE = regexp.MustCompile(`^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$`)

// bdfFromPath finds the PCI device name in a sysfs device path and returns
// its bus/device/function if it is in segment 0.
func bdfFromPath(p string) (BDF, bool) {
	m := pciAddrRE.FindStringSubmatch(filepath.Base(p))
	if m == nil || m[1] != "0000" {
		return BDF{}, false
	}
	bus, _ := strconv.ParseUint(m[2], 16, 8)
	dev, _ := strconv.ParseUint(m[3], 16, 8)
	fn, _ := strconv.ParseUint(m[4], 16, 8)
	if dev > 31 {
		return BDF{}, false
	}
	return BDF{Bus: uint8(bus), Device: uint8(dev), Function: uint8(fn)}, true
}

// parseSysfsLUN decodes /sys/firmware/ibft/targetN/lun. iscsi_ibft.c prints
// each of the 8 LUN bytes with "%x", so a byte takes one hex digit if it is
// below 0x10 and two otherwise, and the string alone is ambiguous
// ("40100000" with one extra digit could be 40 01 00… or 04 00 10 00…).
// Exactly 8 digits (every byte < 0x10) and exactly 16 (every byte ≥ 0x10,
// or a kernel that zero-pads) are unambiguous. Otherwise two-digit bytes
// never start with 0, and SAM LUNs carry their significant bytes first, so
// the earliest bytes take two digits where that still leaves a valid split.
// That recovers every single-level LUN targets hand out (peripheral
// addressing 0–255, flat addressing 0x4000–0x7fff); multi-level LUNs and
// peripheral addressing on a bus other than 0 can come out wrong. Prefer the
// raw table (ReadACPI) where it exists.
func parseSysfsLUN(s string) (sam.LUN, error) {
	var lun sam.LUN
	if len(s) < 8 || len(s) > 16 {
		return lun, fmt.Errorf("%q is not 8 bytes printed in hex", s)
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return lun, fmt.Errorf("%q is not hex", s)
		}
	}
	if len(s) == 16 {
		for i := range lun {
			v, _ := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
			lun[i] = byte(v)
		}
		return lun, nil
	}
	if !splitLUN(s, lun[:]) {
		return lun, fmt.Errorf("%q cannot be split into 8 bytes", s)
	}
	return lun, nil
}

// splitLUN fills out from s, preferring a two-digit first byte.
func splitLUN(s string, out []byte) bool {
	if len(out) == 0 {
		return len(s) == 0
	}
	rest := len(out) - 1
	// Two digits, if the first is not 0 and the remainder can still fill
	// the other bytes with one or two digits each.
	if len(s) >= 2 && s[0] != '0' && len(s)-2 >= rest && len(s)-2 <= 2*rest {
		v, _ := strconv.ParseUint(s[:2], 16, 8)
		out[0] = byte(v)
		if splitLUN(s[2:], out[1:]) {
			return true
		}
	}
	if len(s) >= 1 && len(s)-1 >= rest && len(s)-1 <= 2*rest {
		v, _ := strconv.ParseUint(s[:1], 16, 8)
		out[0] = byte(v)
		return splitLUN(s[1:], out[1:])
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// FormatSysfsLUN prints a LUN the way iscsi_ibft.c shows it in
// /sys/firmware/ibft/targetN/lun (each byte in %x, no padding); tests and
// fake sysfs trees use it.
func FormatSysfsLUN(l sam.LUN) string {
	var b strings.Builder
	for _, c := range l {
		fmt.Fprintf(&b, "%x", c)
	}
	return b.String()
}
