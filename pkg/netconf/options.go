package netconf

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// DHCPv4 option codes this package requests and decodes (RFC 2132 unless
// noted).
const (
	optSubnetMask      = 1
	optRouter          = 3
	optDNS             = 6
	optHostname        = 12
	optDomainName      = 15
	optRootPath        = 17
	optMTU             = 26
	optVendorSpecific  = 43
	optLeaseTime       = 51
	optServerID        = 54
	optClasslessRoutes = 121 // RFC 3442
	// optInitiatorIQN is the initiator name option iPXE reads
	// ("iscsi-initiator-iqn"); dnsmasq and ISC dhcpd configurations for iPXE
	// hand it out as option 203.
	optInitiatorIQN = 203
	// optIPXEEncap is iPXE's encapsulated option space (DHCP_EB_ENCAP in
	// iPXE's include/ipxe/dhcp.h), which lunboot never requests; its CHAP
	// sub-options are refused (ipxeCHAPWarning).
	optIPXEEncap = 175
)

// iPXE's CHAP settings inside option 175 (include/ipxe/dhcp.h:
// DHCP_EB_USERNAME 0xbe … DHCP_EB_REVERSE_PASSWORD 0xc1).
var ipxeCHAPSubOptions = []struct {
	code uint8
	name string
}{{190, "username"}, {191, "password"}, {192, "reverse-username"}, {193, "reverse-password"}}

// ipxeCHAPWarning says why iPXE's CHAP settings in option 175 are not
// used, naming the sub-options present, or returns "" when there are none.
// It never shows their values. iPXE's own header expects the passwords to
// be "held in non-volatile storage, rather than transmitted as part of a
// DHCP packet": a DHCP reply is broadcast or readable by anything on the
// segment, and lunboot would also pass the secret on to the OS.
func ipxeCHAPWarning(b []byte) string {
	vo, err := decodeVendorOptions(b)
	if err != nil {
		return ""
	}
	var names []string
	for _, s := range ipxeCHAPSubOptions {
		if _, ok := vo.get(s.code); ok {
			names = append(names, fmt.Sprintf("175.%d (%s)", s.code, s.name))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("option %s ignored: iPXE's CHAP credentials are not taken from DHCP, whose replies anything on the segment can read; give them on the kernel command line (rd.iscsi.username=, rd.iscsi.password=, rd.iscsi.in.*) or in the NIC ROM's iBFT, and remove them from the DHCP server", strings.Join(names, ", "))
}

// Sub-options of option 43 that NIC iSCSI boot ROMs and HBAs (Intel iSCSI
// Remote Boot, QLogic/Broadcom "ISAN" classes) read: 201 is the primary
// root-path in RFC 4173 form, 203 the initiator IQN.
const (
	subRootPath     = 201
	subInitiatorIQN = 203
)

// Source names the DHCP option a boot value came from, so the boot log can
// say why it used what it used.
type Source uint8

// Sources of the root-path and the initiator IQN.
const (
	SourceNone           Source = iota // the lease carried no such value
	SourceOption17                     // DHCP option 17, root path (RFC 2132 §3.19)
	SourceOption43Sub201               // DHCP option 43, vendor sub-option 201
	SourceOption203                    // DHCP option 203, initiator IQN (iPXE)
	SourceOption43Sub203               // DHCP option 43, vendor sub-option 203
	SourceOption59                     // DHCPv6 option 59, boot file URL (RFC 5970 §3.1)
)

// String returns the source as the boot log prints it, e.g. "DHCP option 17".
func (s Source) String() string {
	switch s {
	case SourceNone:
		return "none"
	case SourceOption17:
		return "DHCP option 17"
	case SourceOption43Sub201:
		return "DHCP option 43.201"
	case SourceOption203:
		return "DHCP option 203"
	case SourceOption43Sub203:
		return "DHCP option 43.203"
	case SourceOption59:
		return "DHCPv6 option 59"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

// Option returns the option alone, "option 17", "option 43.201", "option
// 203", "option 43.203" or "option 59 (DHCPv6)" (the form
// pkg/bootcfg.Network takes, which prefixes "DHCP"), or "" for SourceNone.
func (s Source) Option() string {
	if s == SourceNone || s > SourceOption59 {
		return ""
	}
	if s == SourceOption59 {
		return "option 59 (DHCPv6)"
	}
	return strings.TrimPrefix(s.String(), "DHCP ")
}

// Sourced is a text value from a lease with the option it came from.
type Sourced struct {
	Value  string
	Source Source
}

// String formats the value and its source, e.g.
// `"iscsi:10.0.0.1::::iqn.x" (DHCP option 17)`, or "none" when absent.
func (s Sourced) String() string {
	if s.Source == SourceNone {
		return "none"
	}
	return strconv.Quote(s.Value) + " (" + s.Source.String() + ")"
}

// errEmptyText is returned for a text option that holds nothing but NULs
// and white space.
var errEmptyText = errors.New("empty")

// decodeText decodes a text option (root path, IQN, host name, domain name).
// RFC 2132 §2 says text options are not NUL-terminated, but servers and
// config files often add one (and padding after it), so the value ends at
// the first NUL; surrounding white space is dropped. Control characters
// and invalid UTF-8 are errors: such a value is garbage, not a name.
func decodeText(b []byte) (string, error) {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errEmptyText
	}
	if !utf8.ValidString(s) {
		return "", errors.New("not valid UTF-8")
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("control character %#02x at byte %d", r, i)
		}
	}
	return s, nil
}

// vendorOption is one encapsulated sub-option of option 43 (RFC 2132 §8.4).
type vendorOption struct {
	Code uint8
	Data []byte
}

// vendorOptions is option 43 decoded as encapsulated sub-options, in the
// order of their first appearance.
type vendorOptions []vendorOption

// decodeVendorOptions splits option 43 into its sub-options. The layout is
// the same code/length/data TLV as the options field (RFC 2132 §8.4), with
// pad (0) and end (255); a sub-option that appears more than once is
// concatenated, as RFC 3396 §5 does for top-level options. A length that
// runs past the data is an error (naming the sub-option and offset), so an
// option 43 that is opaque vendor data rather than TLVs is rejected rather
// than misread.
func decodeVendorOptions(b []byte) (vendorOptions, error) {
	var out vendorOptions
	for i := 0; i < len(b); {
		code := b[i]
		switch code {
		case 0: // pad
			i++
			continue
		case 255: // end
			return out, nil
		}
		if i+1 >= len(b) {
			return nil, fmt.Errorf("sub-option %d at offset %d: no length byte", code, i)
		}
		n := int(b[i+1])
		if i+2+n > len(b) {
			return nil, fmt.Errorf("sub-option %d at offset %d: length %d exceeds the %d bytes left", code, i, n, len(b)-i-2)
		}
		data := b[i+2 : i+2+n]
		if j := slices.IndexFunc(out, func(o vendorOption) bool { return o.Code == code }); j >= 0 {
			out[j].Data = append(out[j].Data, data...)
		} else {
			out = append(out, vendorOption{Code: code, Data: slices.Clone(data)})
		}
		i += 2 + n
	}
	return out, nil
}

// encode is the inverse of decodeVendorOptions: sub-options longer than 255
// bytes are split into consecutive instances (RFC 3396 §5); no end marker
// is written, since option 43's own length bounds it.
func (v vendorOptions) encode() []byte {
	var b []byte
	for _, o := range v {
		data := o.Data
		for {
			n := min(len(data), 255)
			b = append(b, o.Code, byte(n))
			b = append(b, data[:n]...)
			data = data[n:]
			if len(data) == 0 {
				break
			}
		}
	}
	return b
}

// get returns the data of sub-option code.
func (v vendorOptions) get(code uint8) ([]byte, bool) {
	for _, o := range v {
		if o.Code == code {
			return o.Data, true
		}
	}
	return nil, false
}

// decodeIPv4s decodes a list of IPv4 addresses (routers, DNS servers, RFC
// 2132 §3.5, §3.8): a non-empty multiple of four bytes.
func decodeIPv4s(b []byte) ([]netip.Addr, error) {
	if len(b) == 0 || len(b)%4 != 0 {
		return nil, fmt.Errorf("length %d is not a positive multiple of 4", len(b))
	}
	out := make([]netip.Addr, 0, len(b)/4)
	for i := 0; i < len(b); i += 4 {
		out = append(out, netip.AddrFrom4([4]byte(b[i:i+4])))
	}
	return out, nil
}

// decodeIPv4 decodes a single IPv4 address (server identifier, RFC 2132
// §9.7).
func decodeIPv4(b []byte) (netip.Addr, error) {
	if len(b) != 4 {
		return netip.Addr{}, fmt.Errorf("length %d, want 4", len(b))
	}
	return netip.AddrFrom4([4]byte(b)), nil
}

// decodeMask decodes a subnet mask (RFC 2132 §3.3) into a prefix length.
// RFC 950 masks are contiguous; anything else cannot be a Linux prefix.
func decodeMask(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("length %d, want 4", len(b))
	}
	m := binary.BigEndian.Uint32(b)
	ones := 0
	for ones < 32 && m&(1<<(31-ones)) != 0 {
		ones++
	}
	if ones < 32 && m<<ones != 0 {
		return 0, fmt.Errorf("mask %d.%d.%d.%d is not contiguous", b[0], b[1], b[2], b[3])
	}
	return ones, nil
}

// decodeMTU decodes the interface MTU option (RFC 2132 §5.1), whose
// minimum legal value is 68.
func decodeMTU(b []byte) (int, error) {
	if len(b) != 2 {
		return 0, fmt.Errorf("length %d, want 2", len(b))
	}
	mtu := int(binary.BigEndian.Uint16(b))
	if mtu < 68 {
		return 0, fmt.Errorf("MTU %d is below the minimum of 68", mtu)
	}
	return mtu, nil
}

// Infinite is the lease time of a lease that never expires (RFC 2132 §9.2:
// 0xffffffff seconds).
const Infinite = time.Duration(1<<63 - 1)

// decodeLeaseTime decodes the IP address lease time (RFC 2132 §9.2).
func decodeLeaseTime(b []byte) (time.Duration, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("length %d, want 4", len(b))
	}
	s := binary.BigEndian.Uint32(b)
	if s == 0xffffffff {
		return Infinite, nil
	}
	return time.Duration(s) * time.Second, nil
}

// Route is a static route from the lease's classless static routes option
// (RFC 3442). A zero (0.0.0.0) Gateway means the destination is on-link.
type Route struct {
	Dst     netip.Prefix
	Gateway netip.Addr
}

// String formats the route as "10.1.0.0/16 via 10.0.0.1" or "… on-link".
func (r Route) String() string {
	if r.Gateway.IsUnspecified() {
		return r.Dst.String() + " on-link"
	}
	return r.Dst.String() + " via " + r.Gateway.String()
}

// decodeClasslessRoutes decodes option 121 (RFC 3442 §3: for each route a
// width byte, the significant octets of the destination, four router
// octets) with dhcpv4.Routes, and adds what that decoder leaves out: an
// empty option is an error, since §3 gives option 121 a minimum length of
// 5 bytes (one route) and a lease that carries none should fall back to
// option 3, not to no gateway; a malformed one names the offset of the
// route that does not decode; and bits past the width are cleared, as §3
// says the destination is "the subnet number".
func decodeClasslessRoutes(b []byte) ([]Route, error) {
	var rs dhcpv4.Routes
	if err := rs.FromBytes(b); err != nil {
		// FromBytes keeps the routes before the bad one, which starts
		// where they end.
		return nil, fmt.Errorf("route at offset %d: %w", len(rs.ToBytes()), err)
	}
	if len(rs) == 0 {
		return nil, errors.New("no routes")
	}
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		width, _ := r.Dest.Mask.Size()
		dst, _ := netip.AddrFromSlice(r.Dest.IP.To4())
		gw, _ := netip.AddrFromSlice(r.Router.To4())
		out = append(out, Route{Dst: netip.PrefixFrom(dst, width).Masked(), Gateway: gw})
	}
	return out, nil
}

// encodeClasslessRoutes is the inverse of decodeClasslessRoutes, with
// dhcpv4.Routes; routes must be IPv4.
func encodeClasslessRoutes(rs []Route) []byte {
	routes := make(dhcpv4.Routes, 0, len(rs))
	for _, r := range rs {
		p := r.Dst.Masked()
		routes = append(routes, &dhcpv4.Route{
			Dest:   &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
			Router: r.Gateway.AsSlice(),
		})
	}
	return routes.ToBytes()
}

// RawOptions are the options of the DHCPACK as received (after RFC 3396
// concatenation), kept for logging and for callers that need an option this
// package does not decode.
type RawOptions map[uint8][]byte

// String lists the options in code order, text-like values quoted and the
// rest in hex: `1=ffffff00 17="iscsi:…"`.
func (o RawOptions) String() string {
	var sb strings.Builder
	for i, code := range o.codes() {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(strconv.Itoa(int(code)))
		sb.WriteByte('=')
		sb.WriteString(formatOptionValue(o[code]))
	}
	return sb.String()
}

// LogValue logs each option as an attribute named by its code.
func (o RawOptions) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(o))
	for _, code := range o.codes() {
		attrs = append(attrs, slog.String(strconv.Itoa(int(code)), formatOptionValue(o[code])))
	}
	return slog.GroupValue(attrs...)
}

func (o RawOptions) codes() []uint8 {
	codes := make([]uint8, 0, len(o))
	for c := range o {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// formatOptionValue quotes values that are printable text (allowing one
// trailing NUL) and hex-encodes everything else.
func formatOptionValue(v []byte) string {
	t := v
	if len(t) > 0 && t[len(t)-1] == 0 {
		t = t[:len(t)-1]
	}
	printable := len(t) > 0 && utf8.Valid(t)
	for _, c := range t {
		if c < 0x20 || c == 0x7f {
			printable = false
			break
		}
	}
	if printable {
		return strconv.Quote(string(v))
	}
	return hex.EncodeToString(v)
}
