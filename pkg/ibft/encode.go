package ibft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Defaults for the ACPI header identification fields.
const (
	defaultOEMID      = "LUNBOT"
	defaultOEMTableID = "LUNBOOT"
	defaultCreatorID  = "LNBT"
)

// MarshalBinary encodes the table: ACPI header, 12 reserved bytes, the control
// structure at offset 48, then the initiator, NIC and target structures and
// the string heap, each 8-byte aligned, and finally the checksum that makes
// all bytes sum to zero. One NIC and one target without CHAP put the
// initiator at 72, the NIC at 152, the target at 256 and the strings from 312.
func (t *Table) MarshalBinary() ([]byte, error) {
	sig := t.Signature
	if sig == "" {
		sig = SignatureACPI
	}
	if sig != SignatureACPI && sig != SignatureLowMem && sig != SignatureBroadcom {
		return nil, fmt.Errorf("ibft: encode: signature %q is none of %s, %s, %s", sig, SignatureACPI, SignatureLowMem, SignatureBroadcom)
	}
	oemID, err := idField("OEM ID", t.OEMID, defaultOEMID, 6)
	if err != nil {
		return nil, err
	}
	oemTableID, err := idField("OEM table ID", t.OEMTableID, defaultOEMTableID, 8)
	if err != nil {
		return nil, err
	}
	creator, err := idField("creator ID", t.CreatorID, defaultCreatorID, 4)
	if err != nil {
		return nil, err
	}
	if len(t.NICs) > MaxNICs {
		return nil, fmt.Errorf("ibft: encode: %d NICs, the table holds at most %d", len(t.NICs), MaxNICs)
	}
	if len(t.Targets) > MaxTargets {
		return nil, fmt.Errorf("ibft: encode: %d targets, the table holds at most %d", len(t.Targets), MaxTargets)
	}

	e := encoder{buf: make([]byte, controlOffset+controlLen)}
	copy(e.buf[0:4], sig)
	e.buf[8] = 1 // revision: Linux accepts only 1
	copy(e.buf[10:16], oemID)
	copy(e.buf[16:24], oemTableID)
	binary.LittleEndian.PutUint32(e.buf[24:], t.OEMRevision)
	copy(e.buf[28:32], creator)
	binary.LittleEndian.PutUint32(e.buf[32:], t.CreatorRevision)

	// Control structure: id 1, version 1, length 18, index 0.
	ctl := e.buf[controlOffset:]
	putHeader(ctl, idControl, controlLen, 0, Flags(t.ControlFlags))
	// Slot offsets inside the control structure: initiator, NIC0, target0,
	// NIC1, target1.
	const (
		slotInitiator = controlOffset + 8
		slotNIC0      = controlOffset + 10
		slotTarget0   = controlOffset + 12
		slotNIC1      = controlOffset + 14
		slotTarget1   = controlOffset + 16
	)
	nicSlots := [MaxNICs]int{slotNIC0, slotNIC1}
	tgtSlots := [MaxTargets]int{slotTarget0, slotTarget1}

	// Structures first, strings afterwards: remember where each string's
	// length/offset pair goes.
	var strs []pendingString
	if !t.Initiator.IsZero() {
		in := &t.Initiator
		off := e.alloc(initiatorLen)
		e.put16(slotInitiator, off)
		s := e.buf[off:]
		putHeader(s, idInitiator, initiatorLen, 0, in.Flags)
		putAddr(s[6:], in.ISNSServer)
		putAddr(s[22:], in.SLPServer)
		putAddr(s[38:], in.PrimaryRADIUS)
		putAddr(s[54:], in.SecondaryRADIUS)
		strs = append(strs, pendingString{"initiator name", in.Name, off + 70})
	}
	for i, n := range t.NICs {
		if n.IsZero() {
			continue
		}
		if len(n.MAC) != 0 && len(n.MAC) != 6 {
			return nil, fmt.Errorf("ibft: encode: NIC %d: MAC %v is not 6 bytes", i, n.MAC)
		}
		off := e.alloc(nicLen)
		e.put16(nicSlots[i], off)
		s := e.buf[off:]
		putHeader(s, idNIC, nicLen, uint8(i), n.Flags)
		if n.IP.IsValid() {
			putAddr(s[6:], n.IP.Addr())
			s[22] = uint8(n.IP.Bits())
		}
		s[23] = uint8(n.Origin)
		putAddr(s[24:], n.Gateway)
		putAddr(s[40:], n.DNS[0])
		putAddr(s[56:], n.DNS[1])
		putAddr(s[72:], n.DHCPServer)
		binary.LittleEndian.PutUint16(s[88:], n.VLAN)
		copy(s[90:96], n.MAC)
		binary.LittleEndian.PutUint16(s[96:], n.PCI.Uint16())
		strs = append(strs, pendingString{fmt.Sprintf("NIC %d hostname", i), n.Hostname, off + 98})
	}
	for i, tg := range t.Targets {
		if tg.IsZero() {
			continue
		}
		off := e.alloc(targetLen)
		e.put16(tgtSlots[i], off)
		s := e.buf[off:]
		putHeader(s, idTarget, targetLen, uint8(i), tg.Flags)
		putAddr(s[6:], tg.Addr.Addr())
		binary.LittleEndian.PutUint16(s[22:], tg.Addr.Port())
		copy(s[24:32], tg.LUN[:]) // SAM bytes as on the wire
		s[32] = uint8(tg.CHAPType)
		s[33] = tg.NICIndex
		name := fmt.Sprintf("target %d ", i)
		strs = append(strs,
			pendingString{name + "name", tg.Name, off + 34},
			pendingString{name + "CHAP name", tg.CHAPName, off + 38},
			pendingString{name + "CHAP secret", tg.CHAPSecret, off + 42},
			pendingString{name + "reverse CHAP name", tg.ReverseCHAPName, off + 46},
			pendingString{name + "reverse CHAP secret", tg.ReverseCHAPSecret, off + 50},
		)
	}
	for _, ps := range strs {
		if ps.s == "" {
			continue // absent: length 0, offset 0 (Linux hides the attribute)
		}
		if strings.IndexByte(ps.s, 0) >= 0 {
			return nil, fmt.Errorf("ibft: encode: %s contains a NUL byte", ps.what)
		}
		if len(ps.s) > maxTableLen {
			return nil, fmt.Errorf("%w: encode: %s is %d bytes", ErrTooLarge, ps.what, len(ps.s))
		}
		off := e.alloc(len(ps.s) + 1) // NUL-terminated; the NUL is not counted
		copy(e.buf[off:], ps.s)
		e.put16(ps.field, len(ps.s))
		e.put16(ps.field+2, off)
	}
	e.pad()
	if e.err != nil {
		return nil, e.err
	}
	binary.LittleEndian.PutUint32(e.buf[4:], uint32(len(e.buf)))
	var sum byte
	for _, c := range e.buf {
		sum += c
	}
	e.buf[9] = -sum
	return e.buf, nil
}

type pendingString struct {
	what  string
	s     string
	field int // offset of the u16 length, followed by the u16 offset
}

// encoder appends aligned blocks to buf, recording the first size error.
type encoder struct {
	buf []byte
	err error
}

func (e *encoder) pad() {
	for len(e.buf)%structAlign != 0 {
		e.buf = append(e.buf, 0)
	}
}

// alloc reserves n zero bytes at the next aligned offset and returns it.
func (e *encoder) alloc(n int) int {
	e.pad()
	off := len(e.buf)
	if off+n > maxTableLen && e.err == nil {
		e.err = fmt.Errorf("%w: encode: more than %d bytes (16-bit offsets)", ErrTooLarge, maxTableLen)
	}
	e.buf = append(e.buf, make([]byte, n)...)
	return off
}

func (e *encoder) put16(at, v int) {
	binary.LittleEndian.PutUint16(e.buf[at:], uint16(v))
}

func putHeader(s []byte, id, length, index uint8, flags Flags) {
	s[0] = id
	s[1] = 1 // version
	binary.LittleEndian.PutUint16(s[2:], uint16(length))
	s[4] = index
	s[5] = uint8(flags)
}

// putAddr stores an address in a 16-byte field: IPv6 as is, IPv4 mapped to
// ::ffff:a.b.c.d, and an unset address as all zeros (Linux treats both all
// zeros and ::ffff:0.0.0.0 as "not set" and hides the attribute).
func putAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		return
	}
	a16 := a.As16() // maps IPv4
	copy(b[:16], a16[:])
}

// idField checks an ACPI header identification field and pads it with
// spaces, as firmware conventionally does.
func idField(what, v, def string, n int) (string, error) {
	if v == "" {
		v = def
	}
	if len(v) > n {
		return "", fmt.Errorf("ibft: encode: %s %q longer than %d characters", what, v, n)
	}
	return v + strings.Repeat(" ", n-len(v)), nil
}
