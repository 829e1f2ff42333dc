package netconf

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeText(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"plain", "iscsi:10.0.0.1::3260:1:iqn.2001-04.com.example:disk", "iscsi:10.0.0.1::3260:1:iqn.2001-04.com.example:disk", ""},
		// ISC dhcpd configs written as C strings, and Windows DHCP, send a NUL terminator.
		{"trailing NUL", "iscsi:10.0.0.1::::iqn.x\x00", "iscsi:10.0.0.1::::iqn.x", ""},
		{"NUL padding then junk", "iscsi:h::::t\x00\x00\xffjunk", "iscsi:h::::t", ""},
		{"surrounding white space", " \tiscsi:h::::t \r\n", "iscsi:h::::t", ""},
		{"space before NUL", "iqn.2024-01.test:c \x00", "iqn.2024-01.test:c", ""},
		{"UTF-8 kept", "iqn.2024-01.test:grüße", "iqn.2024-01.test:grüße", ""},
		{"empty", "", "", "empty"},
		{"only NULs", "\x00\x00", "", "empty"},
		{"only spaces", "   ", "", "empty"},
		{"embedded tab", "iscsi:h\t::::t", "", "control character 0x09 at byte 7"},
		{"DEL", "a\x7fb", "", "control character 0x7f at byte 1"},
		{"invalid UTF-8", "iqn.\xc3\x28", "", "not valid UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeText(%q) = %q, %v, want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("decodeText(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDecodeVendorOptions(t *testing.T) {
	rp := "iscsi:10.0.0.1::::iqn.t"
	for _, tt := range []struct {
		name    string
		in      []byte
		want    vendorOptions
		wantErr string
	}{
		{
			name: "201 and 203",
			in:   cat([]byte{201, byte(len(rp))}, []byte(rp), []byte{203, 5}, []byte("iqn.c")),
			want: vendorOptions{{201, []byte(rp)}, {203, []byte("iqn.c")}},
		},
		{
			name: "pad, end, and bytes after end ignored",
			in:   []byte{0, 0, 201, 1, 'x', 255, 203, 99},
			want: vendorOptions{{201, []byte("x")}},
		},
		{
			// RFC 3396: a long value split over several instances is joined.
			name: "repeated sub-option concatenated",
			in:   []byte{201, 2, 'a', 'b', 7, 1, 9, 201, 1, 'c'},
			want: vendorOptions{{201, []byte("abc")}, {7, []byte{9}}},
		},
		{name: "zero-length sub-option", in: []byte{202, 0}, want: vendorOptions{{202, []byte{}}}},
		{name: "empty", in: nil, want: nil},
		{name: "length past end", in: []byte{201, 10, 'a'}, wantErr: "sub-option 201 at offset 0: length 10 exceeds the 1 bytes left"},
		{name: "no length byte", in: []byte{201, 1, 'a', 203}, wantErr: "sub-option 203 at offset 3: no length byte"},
		// PXE-style opaque data that is not TLV must not be misread.
		{name: "opaque vendor data", in: []byte("PXEClient"), wantErr: "exceeds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeVendorOptions(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeVendorOptions(%x) = %v, %v, want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeVendorOptions(%x) = %v, want %v", tt.in, err, tt.want)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("decodeVendorOptions(%x) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestVendorOptionsEncodeSplitsLongValues(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	v := vendorOptions{{201, long}, {203, []byte("iqn.c")}}
	b := v.encode()
	// 201 is split 255 + 45 (RFC 3396 §5), then 203.
	want := cat([]byte{201, 255}, long[:255], []byte{201, 45}, long[255:], []byte{203, 5}, []byte("iqn.c"))
	if !bytes.Equal(b, want) {
		t.Fatalf("encode() = %x, want %x", b, want)
	}
	got, err := decodeVendorOptions(b)
	if err != nil || !cmp.Equal(got, v) {
		t.Fatalf("decodeVendorOptions(encode(v)) = %v, %v, want %v", got, err, v)
	}
}

func TestDecodeClasslessRoutes(t *testing.T) {
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	for _, tt := range []struct {
		name    string
		in      []byte
		want    []Route
		wantErr string
	}{
		{
			// RFC 3442 §3's examples: 0 → default, 8 10 → 10/8, 24 10 17 0 → 10.17.0/24.
			name: "RFC 3442 encodings",
			in:   []byte{0, 10, 0, 0, 1, 8, 10, 10, 0, 0, 2, 24, 10, 17, 0, 10, 0, 0, 3, 32, 10, 1, 2, 3, 0, 0, 0, 0},
			want: []Route{
				{pfx("0.0.0.0/0"), ip("10.0.0.1")},
				{pfx("10.0.0.0/8"), ip("10.0.0.2")},
				{pfx("10.17.0.0/24"), ip("10.0.0.3")},
				{pfx("10.1.2.3/32"), ip("0.0.0.0")},
			},
		},
		{
			name: "bits past the width cleared",
			in:   []byte{9, 10, 255, 192, 168, 0, 1},
			want: []Route{{pfx("10.128.0.0/9"), ip("192.168.0.1")}},
		},
		{name: "width over 32", in: []byte{33, 1, 2, 3, 4, 5, 1, 2, 3, 4}, wantErr: "route at offset 0: invalid mask length 33"},
		{name: "truncated router", in: []byte{8, 10, 10, 0, 0}, wantErr: "route at offset 0: buffer too short"},
		{name: "width alone", in: []byte{24}, wantErr: "route at offset 0: buffer too short"},
		{name: "second route truncated", in: []byte{0, 10, 0, 0, 1, 16, 10, 1}, wantErr: "route at offset 5: buffer too short"},
		{name: "empty", in: nil, wantErr: "no routes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeClasslessRoutes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("decodeClasslessRoutes(%x) = %v, %v, want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !cmp.Equal(got, tt.want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
				t.Fatalf("decodeClasslessRoutes(%x) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDecodeFixedOptions(t *testing.T) {
	for _, tt := range []struct {
		name    string
		decode  func([]byte) (any, error)
		in      []byte
		want    any
		wantErr bool
	}{
		{"mask /24", wrap(decodeMask), []byte{255, 255, 255, 0}, 24, false},
		{"mask /0", wrap(decodeMask), []byte{0, 0, 0, 0}, 0, false},
		{"mask /32", wrap(decodeMask), []byte{255, 255, 255, 255}, 32, false},
		{"mask /21", wrap(decodeMask), []byte{255, 255, 248, 0}, 21, false},
		{"mask not contiguous", wrap(decodeMask), []byte{255, 0, 255, 0}, nil, true},
		{"mask short", wrap(decodeMask), []byte{255, 255, 255}, nil, true},
		{"MTU 1400", wrap(decodeMTU), []byte{0x05, 0x78}, 1400, false},
		{"MTU 68 is the minimum", wrap(decodeMTU), []byte{0, 68}, 68, false},
		{"MTU 67 too small", wrap(decodeMTU), []byte{0, 67}, nil, true},
		{"MTU long", wrap(decodeMTU), []byte{0, 0, 5}, nil, true},
		{"lease 1h", wrap(decodeLeaseTime), []byte{0, 0, 0x0e, 0x10}, time.Hour, false},
		{"lease infinite", wrap(decodeLeaseTime), []byte{0xff, 0xff, 0xff, 0xff}, Infinite, false},
		{"lease short", wrap(decodeLeaseTime), []byte{1}, nil, true},
		{"server id", wrap(decodeIPv4), []byte{10, 0, 0, 1}, netip.MustParseAddr("10.0.0.1"), false},
		{"server id long", wrap(decodeIPv4), []byte{10, 0, 0, 1, 2}, nil, true},
		{"two DNS", wrap(decodeIPv4s), []byte{10, 0, 0, 1, 10, 0, 0, 2}, []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}, false},
		{"DNS ragged", wrap(decodeIPv4s), []byte{10, 0, 0, 1, 10}, nil, true},
		{"DNS empty", wrap(decodeIPv4s), nil, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decode(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("decode(%x) = %v, want error", tt.in, got)
				}
				return
			}
			if err != nil || !cmp.Equal(got, tt.want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
				t.Fatalf("decode(%x) = %v, %v, want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestRetransmitDelay(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// RFC 2131 §4.1: 4 s, 8 s, 16 s, 32 s, 64 s, 64 s …, each ±1 s.
	for n, want := range []time.Duration{4, 8, 16, 32, 64, 64, 64} {
		want *= time.Second
		for range 50 {
			got := retransmitDelay(n, 4*time.Second, 64*time.Second, r)
			if got < want-time.Second || got > want+time.Second {
				t.Fatalf("retransmitDelay(%d, 4s, 64s) = %v, want %v ± 1s", n, got, want)
			}
		}
	}
	// A huge attempt count must not overflow.
	if got := retransmitDelay(1000, time.Second, 10*time.Second, r); got < 9*time.Second || got > 11*time.Second {
		t.Fatalf("retransmitDelay(1000, 1s, 10s) = %v, want 10s ± 250ms", got)
	}
}

func TestPCIBDF(t *testing.T) {
	for _, tt := range []struct {
		pci  string
		want uint16
		ok   bool
	}{
		{"0000:00:03.0", 0x0018, true}, // QEMU's first virtio NIC
		{"0000:03:00.1", 0x0301, true},
		{"0000:ff:1f.7", 0xffff, true},
		{"0001:00:03.0", 0, false}, // segment 1 cannot be expressed
		{"0000:00:20.0", 0, false}, // device > 31
		{"", 0, false},
		{"virtio0", 0, false},
	} {
		got, ok := Link{PCI: tt.pci}.PCIBDF()
		if got != tt.want || ok != tt.ok {
			t.Errorf("Link{PCI: %q}.PCIBDF() = %#04x, %v, want %#04x, %v", tt.pci, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRawOptionsString(t *testing.T) {
	o := RawOptions{17: []byte("iscsi:h::::t\x00"), 1: {255, 255, 255, 0}, 12: []byte("host")}
	want := `1=ffffff00 12="host" 17="iscsi:h::::t\x00"`
	if got := o.String(); got != want {
		t.Fatalf("RawOptions.String() = %s, want %s", got, want)
	}
}

func TestSourcedString(t *testing.T) {
	for _, tt := range []struct {
		in   Sourced
		want string
	}{
		{Sourced{}, "none"},
		{Sourced{"iscsi:h::::t", SourceOption17}, `"iscsi:h::::t" (DHCP option 17)`},
		{Sourced{"iscsi:h::::t", SourceOption43Sub201}, `"iscsi:h::::t" (DHCP option 43.201)`},
		{Sourced{"iqn.x", SourceOption203}, `"iqn.x" (DHCP option 203)`},
		{Sourced{"iqn.x", SourceOption43Sub203}, `"iqn.x" (DHCP option 43.203)`},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%#v.String() = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSourceOption(t *testing.T) {
	for s, want := range map[Source]string{
		SourceNone: "", SourceOption17: "option 17", SourceOption43Sub201: "option 43.201",
		SourceOption203: "option 203", SourceOption43Sub203: "option 43.203", Source(99): "",
	} {
		if got := s.Option(); got != want {
			t.Errorf("Source(%d).Option() = %q, want %q", s, got, want)
		}
	}
}

func TestAcceptISCSI(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"iscsi:10.0.0.1::::iqn.t", true},
		{"ISCSI:10.0.0.1::::iqn.t", true},
		{"iscsi:", true}, // the scheme only; pkg/rootpath judges the rest
		{"nfs-server:/export/root", false},
		{"iscs", false},
		{"", false},
	} {
		if err := AcceptISCSI(tt.in); (err == nil) != tt.ok {
			t.Errorf("AcceptISCSI(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestErrorMessageNamesLinks(t *testing.T) {
	e := &Error{Op: "dhcp", Links: []LinkReport{
		{Link: Link{Name: "eth0"}, Err: errors.Join(errors.New("eth0: no carrier after 10s"), ErrNoCarrier)},
		{Link: Link{Name: "eth1"}, Err: errors.Join(errors.New("eth1: no DHCPOFFER within 30s"), ErrNoOffer)},
	}}
	msg := e.Error()
	for _, want := range []string{"dhcp: no usable lease on 2 links", "eth0: no carrier after 10s", "eth1: no DHCPOFFER within 30s"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, want it to contain %q", msg, want)
		}
	}
	for _, target := range []error{ErrNoCarrier, ErrNoOffer} {
		if !errors.Is(e, target) {
			t.Errorf("errors.Is(%v, %v) = false, want true", e, target)
		}
	}
	if errors.Is(e, ErrNak) {
		t.Errorf("errors.Is(%v, ErrNak) = true, want false", e)
	}
}

func wrap[T any](f func([]byte) (T, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) {
		v, err := f(b)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
