package ibft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// UnmarshalBinary decodes a table, checking what Linux's iscsi_ibft checks
// before it trusts one (revision 1, zero checksum, a control structure with
// id 1, length 18 and index 0, structure lengths 74/102/54, offsets inside
// the table) and, beyond Linux, that every structure and string lies wholly
// inside the declared length and that each control slot points at a
// structure of its own kind. Bytes past the header's length are ignored.
// Strings end at their first NUL, as Linux displays them. A structure's own
// index byte is not kept: NICs and Targets are ordered by control slot.
func (t *Table) UnmarshalBinary(b []byte) error {
	if len(b) < controlOffset+controlLen {
		return fmt.Errorf("%w: %d bytes, shorter than header and control structure (%d)", ErrMalformed, len(b), controlOffset+controlLen)
	}
	sig := string(b[0:4])
	if sig != SignatureACPI && sig != SignatureLowMem && sig != SignatureBroadcom {
		return fmt.Errorf("%w: %q", ErrSignature, sig)
	}
	length := binary.LittleEndian.Uint32(b[4:])
	if length < controlOffset+controlLen || uint64(length) > uint64(len(b)) {
		return fmt.Errorf("%w: header length %d, have %d bytes (need at least %d)", ErrMalformed, length, len(b), controlOffset+controlLen)
	}
	b = b[:length]
	if b[8] != 1 {
		return fmt.Errorf("%w: revision %d, Linux accepts only 1", ErrRevision, b[8])
	}
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		return fmt.Errorf("%w: bytes sum to %#02x", ErrChecksum, sum)
	}

	d := decoder{b: b}
	nt := Table{
		Signature:       sig,
		OEMID:           trimID(b[10:16]),
		OEMTableID:      trimID(b[16:24]),
		OEMRevision:     binary.LittleEndian.Uint32(b[24:]),
		CreatorID:       trimID(b[28:32]),
		CreatorRevision: binary.LittleEndian.Uint32(b[32:]),
	}
	ctl := b[controlOffset:]
	if ctl[0] != idControl || binary.LittleEndian.Uint16(ctl[2:]) != controlLen || ctl[4] != 0 {
		return fmt.Errorf("%w: control structure id %d length %d index %d, want id 1 length 18 index 0",
			ErrMalformed, ctl[0], binary.LittleEndian.Uint16(ctl[2:]), ctl[4])
	}
	nt.ControlFlags = ctl[5]
	slot := func(i int) int { return int(binary.LittleEndian.Uint16(ctl[8+2*i:])) }

	if off := slot(0); off != 0 {
		s, err := d.structure("initiator", off, idInitiator, initiatorLen)
		if err != nil {
			return err
		}
		in := &nt.Initiator
		in.Flags = Flags(s[5])
		in.ISNSServer = getAddr(s[6:])
		in.SLPServer = getAddr(s[22:])
		in.PrimaryRADIUS = getAddr(s[38:])
		in.SecondaryRADIUS = getAddr(s[54:])
		if in.Name, err = d.str("initiator name", s[70:]); err != nil {
			return err
		}
	}
	// Slots 1..4 alternate NIC0, target0, NIC1, target1. A hole before a
	// present slot decodes as a zero (absent) entry so indexes stay right.
	for i := 0; i < MaxNICs; i++ {
		off := slot(1 + 2*i)
		if off == 0 {
			continue
		}
		s, err := d.structure(fmt.Sprintf("NIC %d", i), off, idNIC, nicLen)
		if err != nil {
			return err
		}
		n := NIC{
			Flags:      Flags(s[5]),
			Origin:     Origin(s[23]),
			Gateway:    getAddr(s[24:]),
			DNS:        [2]netip.Addr{getAddr(s[40:]), getAddr(s[56:])},
			DHCPServer: getAddr(s[72:]),
			VLAN:       binary.LittleEndian.Uint16(s[88:]),
			MAC:        net.HardwareAddr(bytes.Clone(s[90:96])),
			PCI:        BDFFromUint16(binary.LittleEndian.Uint16(s[96:])),
		}
		if ip := getAddr(s[6:]); ip.IsValid() {
			n.IP = netip.PrefixFrom(ip, int(s[22]))
			if !n.IP.IsValid() {
				return fmt.Errorf("%w: NIC %d: prefix length %d invalid for %v", ErrMalformed, i, s[22], ip)
			}
		}
		if n.Hostname, err = d.str(fmt.Sprintf("NIC %d hostname", i), s[98:]); err != nil {
			return err
		}
		for len(nt.NICs) < i {
			nt.NICs = append(nt.NICs, NIC{})
		}
		nt.NICs = append(nt.NICs, n)
	}
	for i := 0; i < MaxTargets; i++ {
		off := slot(2 + 2*i)
		if off == 0 {
			continue
		}
		what := fmt.Sprintf("target %d", i)
		s, err := d.structure(what, off, idTarget, targetLen)
		if err != nil {
			return err
		}
		tg := Target{
			Flags:    Flags(s[5]),
			Addr:     netip.AddrPortFrom(getAddr(s[6:]), binary.LittleEndian.Uint16(s[22:])),
			CHAPType: CHAPType(s[32]),
			NICIndex: s[33],
		}
		copy(tg.LUN[:], s[24:32])
		for _, f := range []struct {
			dst  *string
			what string
			at   int
		}{
			{&tg.Name, "name", 34},
			{&tg.CHAPName, "CHAP name", 38},
			{&tg.CHAPSecret, "CHAP secret", 42},
			{&tg.ReverseCHAPName, "reverse CHAP name", 46},
			{&tg.ReverseCHAPSecret, "reverse CHAP secret", 50},
		} {
			if *f.dst, err = d.str(what+" "+f.what, s[f.at:]); err != nil {
				return err
			}
		}
		for len(nt.Targets) < i {
			nt.Targets = append(nt.Targets, Target{})
		}
		nt.Targets = append(nt.Targets, tg)
	}
	// A slot holding an all-zero structure is indistinguishable from an
	// empty slot once decoded; drop trailing ones so encoding and decoding
	// again gives the same Table.
	for len(nt.NICs) > 0 && nt.NICs[len(nt.NICs)-1].IsZero() {
		nt.NICs = nt.NICs[:len(nt.NICs)-1]
	}
	for len(nt.Targets) > 0 && nt.Targets[len(nt.Targets)-1].IsZero() {
		nt.Targets = nt.Targets[:len(nt.Targets)-1]
	}
	*t = nt
	return nil
}

type decoder struct{ b []byte }

// structure returns the bytes of the structure a control slot points at.
// Linux accepts offset only if it is below both the table length and the
// length minus 48 (its eot_offset is measured from the control structure);
// a structure must also start after the control structure and end inside
// the table.
func (d decoder) structure(what string, off int, id, length uint8) ([]byte, error) {
	n := len(d.b)
	if off < controlOffset+controlLen || off >= n-controlOffset || off+int(length) > n {
		return nil, fmt.Errorf("%w: %s at offset %d does not fit in a %d-byte table", ErrMalformed, what, off, n)
	}
	s := d.b[off : off+int(length)]
	if s[0] != id {
		return nil, fmt.Errorf("%w: %s at offset %d has structure id %d, want %d", ErrMalformed, what, off, s[0], id)
	}
	if l := binary.LittleEndian.Uint16(s[2:]); l != uint16(length) {
		return nil, fmt.Errorf("%w: %s at offset %d has length %d, want %d", ErrMalformed, what, off, l, length)
	}
	return s, nil
}

// str reads a string through the u16 length and u16 offset at f.
func (d decoder) str(what string, f []byte) (string, error) {
	l := int(binary.LittleEndian.Uint16(f))
	off := int(binary.LittleEndian.Uint16(f[2:]))
	if l == 0 {
		return "", nil
	}
	if off < controlOffset+controlLen || off+l > len(d.b) {
		return "", fmt.Errorf("%w: %s (%d bytes at offset %d) outside the %d-byte table", ErrMalformed, what, l, off, len(d.b))
	}
	s := d.b[off : off+l]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s), nil
}

// getAddr decodes a 16-byte address field; all zeros and ::ffff:0.0.0.0
// mean "not set" (iscsi_ibft.c address_not_null), IPv4-mapped addresses
// become IPv4.
func getAddr(b []byte) netip.Addr {
	var a16 [16]byte
	copy(a16[:], b[:16])
	a := netip.AddrFrom16(a16).Unmap()
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func trimID(b []byte) string {
	return string(bytes.TrimRight(b, " \x00"))
}
