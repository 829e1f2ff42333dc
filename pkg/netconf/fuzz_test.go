package netconf

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzDecodeText checks the text option decoder (options 12, 15, 17, 203,
// 43.201, 43.203): no panic, and whatever it returns is a clean name.
func FuzzDecodeText(f *testing.F) {
	for _, s := range []string{
		"iscsi:10.0.0.1::3260:1:iqn.2001-04.com.example:disk", // plain option 17
		"iscsi:10.0.0.1::::iqn.x\x00",                         // C-string terminator
		"iscsi:h::::t\x00\x00\xff",                            // NUL padding then junk
		" iqn.2024-01.test:c \r\n",                            // white space
		"\x00",                                                // only a terminator
		"iqn.\xc3\x28",                                        // invalid UTF-8
		"a\tb",                                                // control character
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeText(b)
		if err != nil {
			if s != "" {
				t.Fatalf("decodeText(%q) = %q with error %v, want empty value", b, s, err)
			}
			return
		}
		if s == "" || s != strings.TrimSpace(s) || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("decodeText(%q) = %q, want non-empty trimmed text without control characters", b, s)
		}
		if !strings.HasPrefix(strings.TrimLeftFunc(string(b), unicode.IsSpace), s) {
			t.Fatalf("decodeText(%q) = %q, not a prefix of the input after leading space", b, s)
		}
	})
}

// FuzzDecodeVendorOptions checks the option 43 decoder: no panic, output no
// larger than the input, and decode(encode(decode(b))) == decode(b).
func FuzzDecodeVendorOptions(f *testing.F) {
	rp := []byte("iscsi:10.0.0.1::::iqn.t")
	f.Add(cat([]byte{201, byte(len(rp))}, rp, []byte{203, 5}, []byte("iqn.c"))) // HBA-style 201 + 203
	f.Add([]byte{0, 0, 201, 1, 'x', 255, 203, 99})                              // pad, end, trailing bytes
	f.Add([]byte{201, 2, 'a', 'b', 201, 1, 'c'})                                // split sub-option (RFC 3396)
	f.Add([]byte{201, 10, 'a'})                                                 // length past end
	f.Add([]byte{201})                                                          // no length byte
	f.Add([]byte("PXEClient"))                                                  // opaque vendor data
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVendorOptions(b)
		if err != nil {
			return
		}
		total := 0
		for _, o := range v {
			total += 2 + len(o.Data)
		}
		if total > len(b)+2*len(v) {
			t.Fatalf("decodeVendorOptions(%x) = %d bytes of sub-options from %d bytes of input", b, total, len(b))
		}
		v2, err := decodeVendorOptions(v.encode())
		if err != nil {
			t.Fatalf("decodeVendorOptions(encode(%v)) = %v", v, err)
		}
		if len(v2) != len(v) {
			t.Fatalf("round trip of %x: %v, want %v", b, v2, v)
		}
		for i := range v {
			if v[i].Code != v2[i].Code || !bytes.Equal(v[i].Data, v2[i].Data) {
				t.Fatalf("round trip of %x: %v, want %v", b, v2, v)
			}
		}
	})
}

// FuzzDecodeClasslessRoutes checks the option 121 decoder: no panic, and
// routes survive an encode/decode round trip.
func FuzzDecodeClasslessRoutes(f *testing.F) {
	f.Add([]byte{0, 10, 0, 0, 1})                // default route (RFC 3442 §3)
	f.Add([]byte{24, 10, 17, 0, 10, 0, 0, 3})    // /24
	f.Add([]byte{32, 10, 1, 2, 3, 0, 0, 0, 0})   // /32 on-link
	f.Add([]byte{9, 10, 255, 192, 168, 0, 1})    // host bits set past the width
	f.Add([]byte{33, 1, 2, 3, 4, 5, 1, 2, 3, 4}) // width over 32
	f.Add([]byte{8, 10, 10, 0, 0})               // truncated
	f.Add([]byte{0, 10, 0, 0, 1, 16, 10, 1})     // second route truncated
	f.Add([]byte{})                              // no routes
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeClasslessRoutes(b)
		if err != nil {
			return
		}
		if len(rs) > len(b)/5 {
			t.Fatalf("decodeClasslessRoutes(%x) = %d routes from %d bytes", b, len(rs), len(b))
		}
		rs2, err := decodeClasslessRoutes(encodeClasslessRoutes(rs))
		if err != nil || !slices.Equal(rs, rs2) {
			t.Fatalf("round trip of %x: %v, %v, want %v", b, rs2, err, rs)
		}
	})
}

// FuzzConfigFromACK feeds arbitrary option bytes through the lease decoder
// the way they arrive from the wire (dhcpv4's option parser, with RFC 3396
// concatenation, then ours): no panic, and a usable address always.
func FuzzConfigFromACK(f *testing.F) {
	opt := func(code byte, v []byte) []byte { return append([]byte{code, byte(len(v))}, v...) }
	rp := []byte("iscsi:10.0.0.1::3260:1:iqn.2024-01.test:disk")
	f.Add(cat(opt(1, []byte{255, 255, 255, 0}), opt(3, []byte{10, 0, 0, 1}), opt(17, rp), opt(203, []byte("iqn.c")), []byte{255}))
	f.Add(cat(opt(43, cat([]byte{201, byte(len(rp))}, rp)), opt(121, []byte{0, 10, 0, 0, 1}), []byte{255}))
	f.Add(cat(opt(17, rp[:10]), opt(17, rp[10:]), []byte{255}))                                 // split option 17 (RFC 3396)
	f.Add(cat(opt(1, []byte{255, 0, 255, 0}), opt(26, []byte{0, 1}), []byte{255}))              // bad mask, bad MTU
	f.Add(cat(opt(121, []byte{40}), opt(43, []byte{201, 200}), []byte{255}))                    // truncated 121 and 43
	f.Add(cat(opt(175, cat(opt(190, []byte("u")), opt(191, []byte("SECRETpw")))), []byte{255})) // iPXE CHAP, refused
	f.Fuzz(func(t *testing.T, raw []byte) {
		o := dhcpv4.Options{}
		if err := o.FromBytes(raw); err != nil {
			return
		}
		p, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 50)))
		if err != nil {
			t.Fatal(err)
		}
		for code, v := range o {
			p.Options[code] = v
		}
		c, err := configFromACK(Link{Name: "eth0"}, p, AcceptISCSI)
		if err != nil {
			t.Fatalf("configFromACK(%x) = %v, want a config for yiaddr 10.0.0.50", raw, err)
		}
		if !c.Address.IsValid() || c.Address.Addr().String() != "10.0.0.50" || c.Address.Bits() > 32 {
			t.Fatalf("configFromACK(%x).Address = %v, want 10.0.0.50/n", raw, c.Address)
		}
		// iPXE's CHAP sub-options are named in warnings, never shown.
		for _, w := range c.Warnings {
			if strings.HasPrefix(w, "option 175") && strings.Contains(w, "SECRETpw") {
				t.Fatalf("configFromACK(%x) warning %q shows option 175's password", raw, w)
			}
		}
		if c.RootPath.Source != SourceNone && AcceptISCSI(c.RootPath.Value) != nil {
			t.Fatalf("configFromACK(%x).RootPath = %v, which AcceptISCSI rejects", raw, c.RootPath)
		}
	})
}
