package ibft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/pkg/sam"
)

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// labTable is the shape DESIGN.md verified against Debian 12: one NIC, one
// target, no CHAP.
func labTable(t testing.TB) *Table {
	return &Table{
		Initiator: Initiator{Flags: FlagValid | FlagBoot, Name: "iqn.2025-01.org.lunboot:client"},
		NICs: []NIC{{
			Flags:   FlagValid | FlagBoot | FlagGlobal,
			IP:      netip.MustParsePrefix("10.0.2.15/24"),
			Origin:  OriginManual,
			Gateway: netip.MustParseAddr("10.0.2.2"),
			DNS:     [2]netip.Addr{netip.MustParseAddr("10.0.2.3")},
			MAC:     mustMAC(t, "52:54:00:12:34:56"),
			PCI:     BDF{Bus: 0, Device: 3, Function: 0},
		}},
		Targets: []Target{{
			Flags: FlagValid | FlagBoot,
			Addr:  netip.MustParseAddrPort("10.0.2.2:3260"),
			LUN:   sam.LUN{0, 1},
			Name:  "iqn.2003-01.org.linux-iscsi.lab:disk1",
		}},
	}
}

func u16(b []byte, off int) int { return int(binary.LittleEndian.Uint16(b[off:])) }

func TestMarshalLayout(t *testing.T) {
	tbl := labTable(t)
	b, err := tbl.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary() error: %v", err)
	}
	if got := string(b[0:4]); got != "IBFT" {
		t.Errorf("signature = %q, want IBFT (the one acpi_table_upgrade accepts)", got)
	}
	if got := int(binary.LittleEndian.Uint32(b[4:])); got != len(b) {
		t.Errorf("header length = %d, want len(table) %d", got, len(b))
	}
	if b[8] != 1 {
		t.Errorf("revision = %d, want 1", b[8])
	}
	var sum byte
	for _, c := range b {
		sum += c
	}
	if sum != 0 {
		t.Errorf("bytes sum to %#x, want 0", sum)
	}
	if got := string(b[10:16]) + "|" + string(b[16:24]); got != "LUNBOT|LUNBOOT " {
		t.Errorf("OEM IDs = %q, want %q", got, "LUNBOT|LUNBOOT ")
	}
	if !bytes.Equal(b[36:48], make([]byte, 12)) {
		t.Errorf("reserved bytes 36..48 = % x, want zeros", b[36:48])
	}

	// Control structure.
	ctl := b[48:]
	if ctl[0] != 1 || ctl[1] != 1 || u16(ctl, 2) != 18 || ctl[4] != 0 {
		t.Errorf("control header = % x, want id 1 version 1 length 18 index 0", ctl[:6])
	}
	wantOffsets := []struct {
		name string
		at   int
		want int
	}{
		{"initiator", 8, 72}, {"nic0", 10, 152}, {"target0", 12, 256}, {"nic1", 14, 0}, {"target1", 16, 0},
	}
	for _, w := range wantOffsets {
		if got := u16(ctl, w.at); got != w.want {
			t.Errorf("control %s offset = %d, want %d", w.name, got, w.want)
		}
	}

	// Structure headers and lengths.
	for _, s := range []struct {
		name       string
		off, id, n int
	}{
		{"initiator", 72, 2, 74}, {"nic", 152, 3, 102}, {"target", 256, 4, 54},
	} {
		if got := int(b[s.off]); got != s.id {
			t.Errorf("%s id = %d, want %d", s.name, got, s.id)
		}
		if got := u16(b, s.off+2); got != s.n {
			t.Errorf("%s length = %d, want %d", s.name, got, s.n)
		}
		if got := b[s.off+1]; got != 1 {
			t.Errorf("%s version = %d, want 1", s.name, got)
		}
	}

	// Strings: initiator name first, at 312, NUL-terminated, NUL not counted.
	name := tbl.Initiator.Name
	if l, off := u16(b, 72+70), u16(b, 72+72); l != len(name) || off != 312 {
		t.Errorf("initiator name len/off = %d/%d, want %d/312", l, off, len(name))
	}
	if got := string(b[312 : 312+len(name)]); got != name || b[312+len(name)] != 0 {
		t.Errorf("initiator name bytes = %q + %#x, want %q + NUL", got, b[312+len(name)], name)
	}
	tname := tbl.Targets[0].Name
	toff := u16(b, 256+36)
	if toff%8 != 0 || toff <= 312 {
		t.Errorf("target name offset = %d, want 8-aligned after 312", toff)
	}
	if got := string(b[toff : toff+u16(b, 256+34)]); got != tname {
		t.Errorf("target name = %q, want %q", got, tname)
	}
	// Lab names: 30-byte initiator name (312..343 → 344), 37-byte target
	// name (344..382) → table padded to 384, DESIGN.md's verified size.
	if len(b) != 384 {
		t.Errorf("len(table) = %d, want 384", len(b))
	}

	// NIC fields.
	nic := b[152:]
	wantIP := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 2, 15}
	if !bytes.Equal(nic[6:22], wantIP) {
		t.Errorf("NIC IP = % x, want IPv4-mapped % x", nic[6:22], wantIP)
	}
	if nic[22] != 24 || nic[23] != byte(OriginManual) {
		t.Errorf("NIC prefix/origin = %d/%d, want 24/1", nic[22], nic[23])
	}
	if !bytes.Equal(nic[56:72], make([]byte, 16)) || !bytes.Equal(nic[72:88], make([]byte, 16)) {
		t.Errorf("unset secondary DNS/DHCP = % x / % x, want all zeros", nic[56:72], nic[72:88])
	}
	if got := net.HardwareAddr(nic[90:96]).String(); got != "52:54:00:12:34:56" {
		t.Errorf("NIC MAC = %s, want 52:54:00:12:34:56", got)
	}
	if got := u16(nic, 96); got != 0x18 {
		t.Errorf("NIC PCI BDF = %#x, want 0x18 (00:03.0)", got)
	}
	if l, off := u16(nic, 98), u16(nic, 100); l != 0 || off != 0 {
		t.Errorf("empty hostname len/off = %d/%d, want 0/0 (Linux hides it)", l, off)
	}
	if nic[4] != 0 || nic[5] != byte(FlagValid|FlagBoot|FlagGlobal) {
		t.Errorf("NIC index/flags = %d/%#x, want 0/0x7", nic[4], nic[5])
	}

	// Target fields.
	tg := b[256:]
	if u16(tg, 22) != 3260 {
		t.Errorf("target port = %d, want 3260", u16(tg, 22))
	}
	if want := []byte{0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(tg[24:32], want) {
		t.Errorf("target LUN = % x, want SAM bytes % x (not byte-swapped)", tg[24:32], want)
	}
	if tg[32] != 0 || tg[33] != 0 {
		t.Errorf("target CHAP type/NIC = %d/%d, want 0/0", tg[32], tg[33])
	}
	for i := 38; i < 54; i += 2 {
		if u16(tg, i) != 0 {
			t.Errorf("target CHAP field at +%d = %d, want 0 without CHAP", i, u16(tg, i))
		}
	}
}

func TestMarshalCHAP(t *testing.T) {
	for _, tt := range []struct {
		name    string
		typ     CHAPType
		user    string
		secret  string
		ruser   string
		rsecret string
	}{
		{"none", CHAPNone, "", "", "", ""},
		{"one-way", CHAPOneWay, "alice", "s3cret-s3cret", "", ""},
		{"mutual", CHAPMutual, "alice", "s3cret-s3cret", "target", "t4rget-secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tbl := labTable(t)
			tg := &tbl.Targets[0]
			tg.CHAPType, tg.CHAPName, tg.CHAPSecret, tg.ReverseCHAPName, tg.ReverseCHAPSecret = tt.typ, tt.user, tt.secret, tt.ruser, tt.rsecret
			b, err := tbl.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			s := b[256:]
			if s[32] != byte(tt.typ) {
				t.Errorf("CHAP type = %d, want %d", s[32], tt.typ)
			}
			for i, want := range []string{tt.user, tt.secret, tt.ruser, tt.rsecret} {
				l, off := u16(s, 38+4*i), u16(s, 40+4*i)
				if want == "" {
					if l != 0 || off != 0 {
						t.Errorf("field %d len/off = %d/%d, want 0/0 when unset", i, l, off)
					}
					continue
				}
				if got := string(b[off : off+l]); got != want || b[off+l] != 0 {
					t.Errorf("field %d = %q, want %q NUL-terminated", i, got, want)
				}
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Table)
	}{
		{"three NICs", func(tb *Table) { tb.NICs = append(tb.NICs, tb.NICs[0], tb.NICs[0]) }},
		{"three targets", func(tb *Table) { tb.Targets = append(tb.Targets, tb.Targets[0], tb.Targets[0]) }},
		{"short MAC", func(tb *Table) { tb.NICs[0].MAC = net.HardwareAddr{1, 2, 3} }},
		{"bad signature", func(tb *Table) { tb.Signature = "ABCD" }},
		{"long OEM ID", func(tb *Table) { tb.OEMID = "TOOLONGID" }},
		{"NUL in name", func(tb *Table) { tb.Targets[0].Name = "iqn\x00x" }},
		{"huge secret", func(tb *Table) { tb.Targets[0].CHAPSecret = string(bytes.Repeat([]byte{'x'}, 70000)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := labTable(t)
			tt.mod(tb)
			if b, err := tb.MarshalBinary(); err == nil {
				t.Errorf("MarshalBinary() = %d bytes, want error", len(b))
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	two := labTable(t)
	two.Signature = SignatureLowMem
	two.OEMID, two.OEMTableID, two.OEMRevision, two.CreatorID, two.CreatorRevision = "ACME", "BOOTROM", 7, "ASL", 3
	two.ControlFlags = 1
	two.Initiator.ISNSServer = netip.MustParseAddr("192.0.2.9")
	two.Initiator.SecondaryRADIUS = netip.MustParseAddr("2001:db8::53")
	two.NICs[0].Hostname = "client-1"
	two.NICs[0].DHCPServer = netip.MustParseAddr("10.0.2.2")
	two.NICs[0].DNS[1] = netip.MustParseAddr("2001:db8::1")
	two.NICs[0].VLAN = 42
	two.NICs = append(two.NICs, NIC{
		Flags:   FlagValid,
		IP:      netip.MustParsePrefix("2001:db8:1::10/64"),
		Origin:  OriginDHCP,
		Gateway: netip.MustParseAddr("2001:db8:1::1"),
		MAC:     mustMAC(t, "02:00:00:00:00:02"),
		PCI:     BDF{Bus: 0x3b, Device: 31, Function: 7},
	})
	two.Targets = append(two.Targets, Target{
		Flags:             FlagValid,
		Addr:              netip.MustParseAddrPort("[2001:db8:1::1]:3261"),
		LUN:               sam.LUN{0x40, 0x01, 0, 0, 0, 0, 0, 0},
		CHAPType:          CHAPMutual,
		NICIndex:          1,
		Name:              "iqn.2003-01.example:t2",
		CHAPName:          "u",
		CHAPSecret:        "0123456789ab",
		ReverseCHAPName:   "t",
		ReverseCHAPSecret: "ba9876543210",
	})
	holes := &Table{
		Signature: SignatureACPI,
		NICs:      []NIC{{}, {Flags: FlagValid, MAC: mustMAC(t, "02:00:00:00:00:03")}},
		Targets:   []Target{{}, {Flags: FlagValid, Name: "iqn.x:y", NICIndex: 1}},
	}
	for name, tbl := range map[string]*Table{"lab": labTable(t), "two of each": two, "holes": holes} {
		t.Run(name, func(t *testing.T) {
			b, err := tbl.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error: %v", err)
			}
			var got Table
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary() error: %v", err)
			}
			want := *tbl
			if want.Signature == "" {
				want.Signature = SignatureACPI
			}
			if want.OEMID == "" {
				want.OEMID, want.OEMTableID, want.CreatorID = "LUNBOT", "LUNBOOT", "LNBT"
			}
			if diff := cmp.Diff(&want, &got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
				cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("UnmarshalBinary(MarshalBinary(t)) differs (-want +got):\n%s", diff)
			}
		})
	}
}

// resum fixes the checksum after a test corrupts a field on purpose.
func resum(b []byte) []byte {
	b[9] = 0
	var s byte
	for _, c := range b {
		s += c
	}
	b[9] = -s
	return b
}

func TestUnmarshalErrors(t *testing.T) {
	good, err := labTable(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:60] }, ErrMalformed},
		{"signature", func(b []byte) []byte { copy(b, "APIC"); return resum(b) }, ErrSignature},
		{"revision 2", func(b []byte) []byte { b[8] = 2; return resum(b) }, ErrRevision},
		{"checksum", func(b []byte) []byte { b[9]++; return b }, ErrChecksum},
		{"length beyond data", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], 1000); return resum(b) }, ErrMalformed},
		{"control length 20", func(b []byte) []byte { b[50] = 20; return resum(b) }, ErrMalformed},
		{"control index 1", func(b []byte) []byte { b[52] = 1; return resum(b) }, ErrMalformed},
		{"control id", func(b []byte) []byte { b[48] = 9; return resum(b) }, ErrMalformed},
		{"NIC offset past end", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[58:], 380); return resum(b) }, ErrMalformed},
		{"NIC offset into header", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[58:], 8); return resum(b) }, ErrMalformed},
		{"NIC slot points at target", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[58:], 256); return resum(b) }, ErrMalformed},
		{"NIC length", func(b []byte) []byte { b[154] = 100; return resum(b) }, ErrMalformed},
		{"target name past end", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[256+36:], 380); return resum(b) }, ErrMalformed},
		{"NIC prefix 33", func(b []byte) []byte { b[152+22] = 33; return resum(b) }, ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mod(bytes.Clone(good))
			var tbl Table
			if err := tbl.UnmarshalBinary(b); !errors.Is(err, tt.want) {
				t.Errorf("UnmarshalBinary() = %v, want %v", err, tt.want)
			}
		})
	}
	// Trailing bytes beyond the header length are ignored.
	var tbl Table
	if err := tbl.UnmarshalBinary(append(bytes.Clone(good), 1, 2, 3)); err != nil {
		t.Errorf("UnmarshalBinary(table + junk) = %v, want nil", err)
	}
}

func TestBDF(t *testing.T) {
	for _, tt := range []struct {
		b   BDF
		v   uint16
		str string
	}{
		{BDF{0, 3, 0}, 0x0018, "00:03.0"},
		{BDF{0x3b, 0x1f, 7}, 0x3bff, "3b:1f.7"},
		{BDF{1, 0, 1}, 0x0101, "01:00.1"},
	} {
		if got := tt.b.Uint16(); got != tt.v {
			t.Errorf("%v.Uint16() = %#x, want %#x", tt.b, got, tt.v)
		}
		if got := BDFFromUint16(tt.v); got != tt.b {
			t.Errorf("BDFFromUint16(%#x) = %v, want %v", tt.v, got, tt.b)
		}
		if got := tt.b.String(); got != tt.str {
			t.Errorf("%#v.String() = %q, want %q", tt.b, got, tt.str)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, tb := range []*Table{labTable(f), {Signature: SignatureLowMem}} {
		b, err := tb.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("IBFT"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRoundTrip(t, b)
		// Also with a consistent length and checksum, so the fuzzer gets
		// past the header checks into the structures.
		if len(b) >= controlOffset+controlLen && len(b) <= maxTableLen {
			b = bytes.Clone(b)
			binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
			checkRoundTrip(t, resum(b))
		}
	})
}

func checkRoundTrip(t *testing.T, b []byte) {
	{
		var tb Table
		if err := tb.UnmarshalBinary(b); err != nil {
			return
		}
		enc, err := tb.MarshalBinary()
		if errors.Is(err, ErrTooLarge) {
			return // strings shared between fields may not fit once copied apart
		}
		if err != nil {
			t.Fatalf("MarshalBinary(decoded table) error: %v", err)
		}
		// Empty identification fields encode as the defaults.
		if tb.OEMID == "" {
			tb.OEMID = defaultOEMID
		}
		if tb.OEMTableID == "" {
			tb.OEMTableID = defaultOEMTableID
		}
		if tb.CreatorID == "" {
			tb.CreatorID = defaultCreatorID
		}
		var again Table
		if err := again.UnmarshalBinary(enc); err != nil {
			t.Fatalf("UnmarshalBinary(re-encoded) error: %v", err)
		}
		if diff := cmp.Diff(tb, again, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
			cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Fatalf("decode/encode/decode differs:\n%s", diff)
		}
	}
}
