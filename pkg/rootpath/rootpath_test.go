package rootpath

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/sam"
)

// rp builds the RootPath a test expects; Addr is derived from server.
func rp(server string, port uint16, lun sam.LUN, target string) RootPath {
	r := RootPath{Server: server, Port: port, LUN: lun, Target: target}
	if a, err := netip.ParseAddr(server); err == nil {
		r.Addr = a
	}
	return r
}

func withCHAP(r RootPath, creds ...string) RootPath {
	r.Username, r.Password = creds[0], creds[1]
	if len(creds) == 4 {
		r.ReverseUsername, r.ReversePassword = creds[2], creds[3]
	}
	return r
}

func lun(b ...byte) sam.LUN {
	var l sam.LUN
	copy(l[:], b)
	return l
}

// parseCase is one input with the outcome our parser must give: either a
// value (errField == "-") or an *Error for errField whose message contains
// errHas.
type parseCase struct {
	in       string
	want     RootPath
	warnings int
	errField string
	errHas   string
}

const ok = "-"

func checkParse(t *testing.T, name string, parse func(string) (RootPath, error), tc parseCase) {
	t.Helper()
	got, err := parse(tc.in)
	if tc.errField == ok {
		if err != nil {
			t.Errorf("%s(%q) = error %v, want %v", name, tc.in, err, tc.want)
			return
		}
		if !got.Equal(tc.want) {
			t.Errorf("%s(%q) = %#v, want %#v", name, tc.in, got, tc.want)
		}
		if len(got.Warnings) != tc.warnings {
			t.Errorf("%s(%q) warnings = %q, want %d warnings", name, tc.in, got.Warnings, tc.warnings)
		}
		return
	}
	var perr *Error
	if !errors.As(err, &perr) {
		t.Errorf("%s(%q) = %v, %v; want *Error for field %q", name, tc.in, got, err, tc.errField)
		return
	}
	if perr.Field != tc.errField {
		t.Errorf("%s(%q) error field = %q (%v), want %q", name, tc.in, perr.Field, err, tc.errField)
	}
	if !strings.Contains(err.Error(), tc.errHas) {
		t.Errorf("%s(%q) error = %q, want it to contain %q", name, tc.in, err, tc.errHas)
	}
}

// TestParseMatrix runs the 24 tricky root-paths of the reference notes'
// parser matrix (ipxe_rfc.md §1.6) through the strict DHCP parser. Several
// rows use the placeholder target "iqn.x:t", which is not a valid iSCSI
// name; those rows are run verbatim (and must fail on the target name if
// everything before it is fine) and again with a valid name, to check how
// the other fields are read.
func TestParseMatrix(t *testing.T) {
	const good = "iqn.2001-04.com.example:t"
	valid := func(s string) string { return strings.Replace(s, "iqn.x:t", good, 1) }
	for _, tc := range []struct {
		row int
		parseCase
		fixed *parseCase // the row with "iqn.x:t" replaced by a valid name
	}{
		{row: 1, parseCase: parseCase{in: "iscsi:192.168.50.1::::iqn.2009-06.dracut:target0", errField: ok,
			want: rp("192.168.50.1", 3260, lun(), "iqn.2009-06.dracut:target0")}},
		{row: 2, parseCase: parseCase{in: "iscsi:10.0.0.1:6:3261:1:iqn.2001-04.com.example:disk", errField: ok,
			want: rp("10.0.0.1", 3261, lun(0, 1), "iqn.2001-04.com.example:disk")}},
		{row: 3, parseCase: parseCase{in: "iscsi:10.0.0.1:::1a:iqn.x:t", errField: FieldTarget, errHas: "yyyy-mm"},
			fixed: &parseCase{errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)}},
		{row: 4, parseCase: parseCase{in: "iscsi:10.0.0.1:::0x1a:iqn.x:t", errField: FieldLUN, errHas: `without "0x"`}},
		{row: 5, parseCase: parseCase{in: "iscsi:10.0.0.1:::4000-0001:iqn.x:t", errField: FieldTarget},
			fixed: &parseCase{errField: ok, want: rp("10.0.0.1", 3260, lun(0x40, 0, 0, 1), good)}},
		{row: 6, parseCase: parseCase{in: "iscsi:10.0.0.1:::12345:iqn.x:t", errField: FieldLUN,
			errHas: `root-path "iscsi:10.0.0.1:::12345:iqn.x:t": LUN "12345": group "12345" has more than 4 hex digits`}},
		{row: 7, parseCase: parseCase{in: "iscsi:10.0.0.1:::1-2-3-4-5:iqn.x:t", errField: FieldLUN, errHas: "at most 4"}},
		{row: 8, parseCase: parseCase{in: "iscsi:[2001:db8::1]::3260:0:iqn.x:t", errField: FieldTarget},
			fixed: &parseCase{errField: ok, want: rp("2001:db8::1", 3260, lun(), good)}},
		{row: 9, parseCase: parseCase{in: "iscsi:[fe80::1%net0]::::iqn.x:t", errField: FieldTarget},
			fixed: &parseCase{errField: ok, want: rp("fe80::1%net0", 3260, lun(), good)}},
		{row: 10, parseCase: parseCase{in: "iscsi:2001:db8::1::3260:0:iqn.x:t", errField: FieldServer, errHas: "iscsi:[2001:db8::1]"},
			fixed: &parseCase{errField: FieldServer, errHas: "brackets"}},
		{row: 11, parseCase: parseCase{in: "iscsi:san.example.com::::iqn.x:t", errField: FieldTarget},
			fixed: &parseCase{errField: ok, want: rp("san.example.com", 3260, lun(), good)}},
		{row: 12, parseCase: parseCase{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:disk#1", errField: FieldTarget, errHas: `'#'`}},
		{row: 13, parseCase: parseCase{in: "iscsi:10.0.0.1::3260:0:iqn.2009-06.dracut:iqn.target", errField: ok,
			want: rp("10.0.0.1", 3260, lun(), "iqn.2009-06.dracut:iqn.target")}},
		{row: 14, parseCase: parseCase{in: "iscsi:user:secret@10.0.0.1::::iqn.x:t", errField: FieldCredentials, errHas: "rd.iscsi.username"}},
		{row: 15, parseCase: parseCase{in: "iscsi:u:p:ru:rp@10.0.0.1::::iqn.x:t", errField: FieldCredentials}},
		{row: 16, parseCase: parseCase{in: "iscsi:@10.0.0.1::3260::iqn.x:t@sk", errField: FieldCredentials}},
		{row: 17, parseCase: parseCase{in: "iscsi:10.0.0.1:::iqn.2009-06.dracut:target0", errField: FieldLUN, errHas: "':' is missing"}},
		{row: 18, parseCase: parseCase{in: "iscsi:10.0.0.1:::iqn.x", errField: FieldSyntax, errHas: "too few"}},
		{row: 19, parseCase: parseCase{in: "iscsi:10.0.0.1::::", errField: FieldTarget, errHas: "empty"}},
		{row: 20, parseCase: parseCase{in: "iscsi::6:3260:0:iqn.x:t", errField: FieldServer, errHas: "discovery"}},
		{row: 21, parseCase: parseCase{in: "iscsi:10.0.0.1::abc::iqn.x:t", errField: FieldPort, errHas: "1 to 65535"}},
		{row: 22, parseCase: parseCase{in: "iscsi:10.0.0.1:17:::iqn.x:t", errField: FieldProtocol, errHas: "TCP"}},
		{row: 23, parseCase: parseCase{in: "ISCSI:10.0.0.1::::iqn.x:t", errField: FieldTarget},
			fixed: &parseCase{errField: ok, warnings: 1, want: rp("10.0.0.1", 3260, lun(), good)}},
		{row: 24, parseCase: parseCase{in: "iscsi:10.0.0.1::::IQN.2001-04.COM.EXAMPLE:DISK", errField: ok, warnings: 0,
			want: rp("10.0.0.1", 3260, lun(), "IQN.2001-04.COM.EXAMPLE:DISK")}},
	} {
		checkParse(t, "Parse", Parse, tc.parseCase)
		if tc.fixed != nil {
			f := *tc.fixed
			f.in = valid(tc.in)
			checkParse(t, "Parse", Parse, f)
		}
	}
}

// TestParseCmdlineMatrix runs the rows where the dracut extension changes
// the outcome, plus the extension's own forms.
func TestParseCmdlineMatrix(t *testing.T) {
	const good = "iqn.2001-04.com.example:t"
	for _, tc := range []parseCase{
		// Matrix row 14: dracut credentials.
		{in: "iscsi:user:secret@10.0.0.1::::" + good, errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "user", "secret")},
		{in: "iscsi:user:secret@10.0.0.1::::iqn.x:t", errField: FieldTarget},
		// Row 15: mutual CHAP.
		{in: "iscsi:u:p:ru:rp@10.0.0.1::::" + good, errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "u", "p", "ru", "rp")},
		// Row 16: the empty-credential escape, then a target with '@'.
		{in: "iscsi:@10.0.0.1::3260::iqn.x:t@sk", errField: FieldCredentials, errHas: "more than once"},
		{in: "iscsi:@10.0.0.1::3260::" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		// Row 13 is where dracut itself misparses; we must not.
		{in: "iscsi:10.0.0.1::3260:0:iqn.2009-06.dracut:iqn.target", errField: ok,
			want: rp("10.0.0.1", 3260, lun(), "iqn.2009-06.dracut:iqn.target")},
		// Row 17: dracut accepts it by anchoring on ":iqn."; we refuse.
		{in: "iscsi:10.0.0.1:::iqn.2009-06.dracut:target0", errField: FieldLUN},
		// dracut's iface:netdev pair.
		{in: "iscsi:10.0.0.1::3260::eth1:1a:" + good, errField: ok,
			want: func() RootPath { r := rp("10.0.0.1", 3260, lun(0, 0x1a), good); r.NetDev = "eth1"; return r }()},
		{in: "iscsi:10.0.0.1::3260:default:eth1::" + good, errField: ok, warnings: 1,
			want: func() RootPath {
				r := rp("10.0.0.1", 3260, lun(), good)
				r.Iface, r.NetDev = "default", "eth1"
				return r
			}()},
		{in: "iscsi:10.0.0.1::3260::::" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi:10.0.0.1::3260::eth/1:0:" + good, errField: FieldNetDev},
		{in: "iscsi:fe80::1::::" + good, errField: FieldServer, errHas: "ambiguous"},
		{in: "iscsi:fe80.::1::::" + good, errField: ok, want: rp("fe80.", 1, lun(), good)},
		// Credential shapes.
		{in: "iscsi:user@10.0.0.1::::" + good, errField: FieldCredentials, errHas: "needs a password"},
		{in: "iscsi:u:p:x@10.0.0.1::::" + good, errField: FieldCredentials, errHas: "3 ':'-separated parts"},
		{in: "iscsi:u::ru:rp@10.0.0.1::::" + good, errField: FieldCredentials, errHas: "empty CHAP password"},
		{in: "iscsi:u:p@[2001:db8::1]::::" + good, errField: ok,
			want: withCHAP(rp("2001:db8::1", 3260, lun(), good), "u", "p")},
	} {
		checkParse(t, "ParseCmdline", ParseCmdline, tc)
	}
}

// TestParseURootSeeds runs u-root's pkg/dhclient iscsiuri_test.go inputs.
// u-root's expectations differ where it is lax: its target names
// ("iqn.com.oracle:boot") lack the date an IQN must have, and it strips a
// leading '@'. Each is run as given (our verdict) and, where u-root
// succeeds, with a dated IQN to check the address, port and target.
func TestParseURootSeeds(t *testing.T) {
	date := func(s string) string { return strings.Replace(s, "iqn.com.", "iqn.2019-01.com.", 1) }
	for _, tc := range []struct {
		parseCase
		fixed *parseCase
	}{
		{parseCase{in: "iscsi:192.168.1.1:::1:iqn.com.oracle:boot", errField: FieldTarget, errHas: "yyyy-mm"},
			&parseCase{errField: ok, want: rp("192.168.1.1", 3260, lun(0, 1), "iqn.2019-01.com.oracle:boot")}},
		{parseCase{in: "iscsi:@192.168.1.1::3260::iqn.com.oracle:boot", errField: FieldCredentials}, nil},
		{parseCase{in: "iscsi:[fe80::1]::3260::iqn.com.google:esxi-boot-image", errField: FieldTarget},
			&parseCase{errField: ok, want: rp("fe80::1", 3260, lun(), "iqn.2019-01.com.google:esxi-boot-image")}},
		{parseCase{in: "iscsi:[fe80::1]::3260::iqn.com.google:esxi-boot-]:image", errField: FieldTarget},
			&parseCase{errField: FieldTarget, errHas: `']'`}},
		{parseCase{in: "iscsi:192.168.1.1::3260::iqn.com.google:[fe80::1]", errField: FieldTarget},
			&parseCase{errField: FieldTarget, errHas: `'['`}},
		{parseCase{in: "iscsi:[fe80::1]::3260::iqn.com.google:[foobar]", errField: FieldTarget}, nil},
		{parseCase{in: "iscsi:192.168.1.1::3260::iqn.com.google:esxi-boot-image", errField: FieldTarget},
			&parseCase{errField: ok, want: rp("192.168.1.1", 3260, lun(), "iqn.2019-01.com.google:esxi-boot-image")}},
		{parseCase{in: "iscsi:192.168.1.1::3000::iqn.com.google:esxi-boot-image", errField: FieldTarget},
			&parseCase{errField: ok, want: rp("192.168.1.1", 3000, lun(), "iqn.2019-01.com.google:esxi-boot-image")}},
		{parseCase{in: "iscsi:192.168.1.1::::iqn.com.google:esxi-boot-image", errField: FieldTarget},
			&parseCase{errField: ok, want: rp("192.168.1.1", 3260, lun(), "iqn.2019-01.com.google:esxi-boot-image")}},
		{parseCase{in: "iscsi:192.168.1.1::::iqn.com.google::::", errField: FieldTarget},
			&parseCase{errField: ok, want: rp("192.168.1.1", 3260, lun(), "iqn.2019-01.com.google::::")}},
		{parseCase{in: "iscsi:192.168.1.1::::", errField: FieldTarget, errHas: "empty"}, nil},
		{parseCase{in: "iscsi:192.168.1.1:::", errField: FieldSyntax, errHas: "too few"}, nil},
		{parseCase{in: "iscs:192.168.1.1::::", errField: FieldScheme, errHas: `"iscs"`}, nil},
		{parseCase{in: "", errField: FieldScheme}, nil},
		{parseCase{in: "iscsi:192.168.1.1::foobar::volume", errField: FieldPort, errHas: `port "foobar"`}, nil},
		{parseCase{in: "iscsi:[fe80::1::::", errField: FieldServer, errHas: "closing ']'"}, nil},
	} {
		checkParse(t, "Parse", Parse, tc.parseCase)
		if tc.fixed != nil {
			f := *tc.fixed
			f.in = date(tc.in)
			checkParse(t, "Parse", Parse, f)
		}
	}
	// With the dracut extension the leading '@' is the empty-credential
	// escape, as u-root treats it.
	checkParse(t, "ParseCmdline", ParseCmdline, parseCase{in: "iscsi:@192.168.1.1::3260::iqn.2019-01.com.oracle:boot", errField: ok,
		want: rp("192.168.1.1", 3260, lun(), "iqn.2019-01.com.oracle:boot")})
}

func TestParseFields(t *testing.T) {
	const good = "iqn.2001-04.com.example:t"
	for _, tc := range []parseCase{
		// Trailing NUL and white space from DHCP servers.
		{in: "iscsi:10.0.0.1::::" + good + "\x00", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi:10.0.0.1::::" + good + " \r\n\x00\x00", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi:10.0.0.1::::" + good + "\x00x", errField: FieldTarget},
		// Ports.
		{in: "iscsi:10.0.0.1::65535::" + good, errField: ok, want: rp("10.0.0.1", 65535, lun(), good)},
		{in: "iscsi:10.0.0.1::03260::" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi:10.0.0.1::0::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1::65536::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1::70000::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1::-1::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1::+3260::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1::3260abc::" + good, errField: FieldPort},
		{in: "iscsi:10.0.0.1:: 3260::" + good, errField: FieldPort},
		// Protocol.
		{in: "iscsi:10.0.0.1:6:::" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi:10.0.0.1:06:::" + good, errField: FieldProtocol},
		{in: "iscsi:10.0.0.1:tcp:::" + good, errField: FieldProtocol},
		// LUNs.
		{in: "iscsi:10.0.0.1:::1A:" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)},
		{in: "iscsi:10.0.0.1:::ffff-ffff-ffff-ffff:" + good, errField: ok,
			want: rp("10.0.0.1", 3260, lun(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), good)},
		{in: "iscsi:10.0.0.1:::1-:" + good, errField: FieldLUN, errHas: "empty group"},
		{in: "iscsi:10.0.0.1:::1--2:" + good, errField: FieldLUN, errHas: "empty group"},
		{in: "iscsi:10.0.0.1:::-1:" + good, errField: FieldLUN, errHas: "empty group"},
		{in: "iscsi:10.0.0.1:::+1:" + good, errField: FieldLUN, errHas: "not a hex digit"},
		{in: "iscsi:10.0.0.1::: 1:" + good, errField: FieldLUN},
		{in: "iscsi:10.0.0.1:::g:" + good, errField: FieldLUN, errHas: `"g" is not a hex digit`},
		// Servers.
		{in: "iscsi:3par.example.com::::" + good, errField: ok, want: rp("3par.example.com", 3260, lun(), good)},
		{in: "iscsi:san.example.com.::::" + good, errField: ok, want: rp("san.example.com.", 3260, lun(), good)},
		// Host names that are also the start of an IPv6 address are
		// accepted when only one reading gives a valid root-path.
		{in: "iscsi:abc::::" + good, errField: ok, want: rp("abc", 3260, lun(), good)},
		{in: "iscsi:abc.::::" + good, errField: ok, want: rp("abc.", 3260, lun(), good)},
		{in: "iscsi:fe80::3260:0:" + good, errField: ok, want: rp("fe80", 3260, lun(), good)},
		{in: "iscsi:fe80::1:0:" + good, errField: ok, want: rp("fe80", 1, lun(), good)},
		{in: "iscsi:10.0.0.256::::" + good, errField: FieldServer, errHas: "IPv4"},
		{in: "iscsi:010.0.0.1::::" + good, errField: FieldServer},
		{in: "iscsi:san_1.example.com::::" + good, errField: FieldServer, errHas: `"_"`},
		{in: "iscsi:-san.example.com::::" + good, errField: FieldServer},
		{in: "iscsi:san..example.com::::" + good, errField: FieldServer},
		{in: "iscsi:10.0.0.1%eth0::::" + good, errField: FieldServer, errHas: "IPv6"},
		{in: "iscsi:[10.0.0.1]::::" + good, errField: FieldServer, errHas: "without them"},
		{in: "iscsi:[fe80::1%]::::" + good, errField: FieldServer, errHas: "empty zone"},
		{in: "iscsi:[fe80::1%eth/0]::::" + good, errField: FieldServer, errHas: "zone"},
		{in: "iscsi:[fe80::1%averyveryverylongname]::::" + good, errField: FieldServer, errHas: "15 bytes"},
		{in: "iscsi:[fe80::1]x::::" + good, errField: FieldServer, errHas: "followed by ':'"},
		{in: "iscsi:[zzz]::::" + good, errField: FieldServer, errHas: "not an IPv6"},
		{in: "iscsi:[2001:DB8::0:1]::::" + good, errField: ok, want: rp("2001:db8::1", 3260, lun(), good)},
		{in: "iscsi:fe80::1::::" + good, errField: FieldServer, errHas: "iscsi:[fe80::1]"},
		// Targets.
		// The target name's case is kept: targets compare it unfolded.
		{in: "iscsi:10.0.0.1::::eui.02004567A425678D", errField: ok, want: rp("10.0.0.1", 3260, lun(), "eui.02004567A425678D")},
		{in: "iscsi:10.0.0.1::::iqn.2000-01.com.synology:DiskStation.Target-1.4f3e2d1c", errField: ok, want: rp("10.0.0.1", 3260, lun(), "iqn.2000-01.com.synology:DiskStation.Target-1.4f3e2d1c")},
		{in: "iscsi:10.0.0.1::::naa.52004567ba64678d", errField: ok, want: rp("10.0.0.1", 3260, lun(), "naa.52004567ba64678d")},
		{in: "iscsi:10.0.0.1::::naa.52004567ba64678d52004567ba64678d", errField: ok,
			want: rp("10.0.0.1", 3260, lun(), "naa.52004567ba64678d52004567ba64678d")},
		{in: "iscsi:10.0.0.1::::eui.0200", errField: FieldTarget, errHas: "16 hex"},
		{in: "iscsi:10.0.0.1::::naa.5200", errField: FieldTarget, errHas: "16 or 32"},
		{in: "iscsi:10.0.0.1::::iqn.2001-13.com.example", errField: FieldTarget, errHas: "month"},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.", errField: FieldTarget, errHas: "naming authority"},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com..example", errField: FieldTarget, errHas: "empty label"},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example", errField: ok, want: rp("10.0.0.1", 3260, lun(), "iqn.2001-04.com.example")},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:a_b", errField: FieldTarget, errHas: `'_'`},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:disk é", errField: FieldTarget},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:é", errField: FieldTarget, errHas: "ASCII"},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:" + strings.Repeat("a", MaxNameLen), errField: FieldTarget, errHas: "at most 223"},
		{in: "iscsi:10.0.0.1::::iqn.2001-04.com.example:" + strings.Repeat("a", MaxNameLen-len("iqn.2001-04.com.example:")), errField: ok,
			want: rp("10.0.0.1", 3260, lun(), "iqn.2001-04.com.example:"+strings.Repeat("a", MaxNameLen-len("iqn.2001-04.com.example:")))},
		{in: "iscsi:10.0.0.1::::disk1", errField: FieldTarget, errHas: `starts with "iqn."`},
		// Scheme and form.
		{in: "nfs:10.0.0.1:/srv", errField: FieldScheme, errHas: `"nfs"`},
		{in: "iscsi://10.0.0.1/" + good + "/0", errField: FieldScheme, errHas: "iSCSI URL"},
		{in: "iscsi:10.0.0.1", errField: FieldSyntax, errHas: "too few"},
		{in: "iscsi:" + strings.Repeat("a", MaxLen), errField: FieldSyntax, errHas: "at most"},
	} {
		checkParse(t, "Parse", Parse, tc)
	}
}

func TestParseLUN(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   sam.LUN
		linux  uint64
		errHas string
	}{
		{in: "", want: lun(), linux: 0},
		{in: "0", want: lun(), linux: 0},
		{in: "1", want: lun(0, 1), linux: 1},
		{in: "1a", want: lun(0, 0x1a), linux: 26},
		{in: "40", want: lun(0, 0x40), linux: 64},
		{in: "0040", want: lun(0, 0x40), linux: 64},
		{in: "4000-0001", want: lun(0x40, 0, 0, 1), linux: 0x14000},
		{in: "1-2-3-4", want: lun(0, 1, 0, 2, 0, 3, 0, 4), linux: 0x0004000300020001},
		{in: "12345", errHas: `LUN "12345": group "12345" has more than 4 hex digits`},
		{in: "0x1a", errHas: `"0x"`},
		{in: "1-2-3-4-5", errHas: "5 groups"},
		{in: "1-", errHas: "empty group"},
		{in: "-", errHas: "empty group"},
		{in: "1 ", errHas: `" " is not a hex digit`},
	} {
		got, err := ParseLUN(tc.in)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseLUN(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.want || got.Linux() != tc.linux {
			t.Errorf("ParseLUN(%q) = %x (Linux %d), %v; want %x (Linux %d)", tc.in, got, got.Linux(), err, tc.want, tc.linux)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"iqn.2001-04.com.example:storage:diskarrays-sn-a8675309", "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309"},
		{"IQN.2001-04.Com.Example:Disk", "iqn.2001-04.com.example:disk"},
		{"iqn.2009-06.dracut:target0", "iqn.2009-06.dracut:target0"},
		{"iqn.1991-05.com.microsoft:server-target-target", "iqn.1991-05.com.microsoft:server-target-target"},
		{"eui.02004567A425678D", "eui.02004567a425678d"},
		{"naa.52004567BA64678D", "naa.52004567ba64678d"},
	} {
		if got, err := NormalizeName(tc.in); err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "iqn.", "iqn.2001-4.com.example", "iqn.20a1-04.com.example", "iqn.2001-00.com.x",
		"iqn.2001-04com.example", "iqn.2001-04.:x", "eui.0200456", "eui.02004567a425678g", "naa.123", "foo.bar", "iqn.2001-04.com.example:a/b"} {
		if got, err := NormalizeName(in); err == nil {
			t.Errorf("NormalizeName(%q) = %q, nil; want an error", in, got)
		}
	}
}

func TestNew(t *testing.T) {
	const good = "iqn.2001-04.com.example:t"
	for _, tc := range []struct {
		server string
		port   uint16
		want   RootPath
	}{
		{"10.0.0.1", 0, rp("10.0.0.1", 3260, lun(0, 1), good)},
		{"10.0.0.1", 3261, rp("10.0.0.1", 3261, lun(0, 1), good)},
		{"fe80::1%eth0", 0, rp("fe80::1%eth0", 3260, lun(0, 1), good)},
		{"[2001:db8::1]", 0, rp("2001:db8::1", 3260, lun(0, 1), good)},
		{"san.example.com", 0, rp("san.example.com", 3260, lun(0, 1), good)},
	} {
		got, err := New(tc.server, tc.port, lun(0, 1), good)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("New(%q, %d) = %#v, %v; want %#v", tc.server, tc.port, got, err, tc.want)
		}
	}
	for _, server := range []string{"", "10.0.0.256", "fe80::1%", "a b"} {
		if got, err := New(server, 0, lun(), good); err == nil {
			t.Errorf("New(%q) = %v, nil; want an error", server, got)
		}
	}
	if _, err := New("10.0.0.1", 0, lun(), "disk"); err == nil {
		t.Errorf("New with target %q succeeded, want an error", "disk")
	}
}

func TestStringAndPortal(t *testing.T) {
	for _, tc := range []struct{ in, str, portal string }{
		{"iscsi:10.0.0.1::::iqn.2001-04.com.example:t", "iscsi:10.0.0.1::3260:0:iqn.2001-04.com.example:t", "10.0.0.1:3260"},
		{"iscsi:[2001:db8::1]:6:3261:4000-1:iqn.2001-04.com.example:t", "iscsi:[2001:db8::1]::3261:4000-0001:iqn.2001-04.com.example:t", "[2001:db8::1]:3261"},
		{"iscsi:[fe80::1%eth0]:::1a:iqn.2001-04.com.example:t", "iscsi:[fe80::1%eth0]::3260:1a:iqn.2001-04.com.example:t", "[fe80::1%eth0]:3260"},
		{"iscsi:san.example.com:::0:eui.02004567a425678d", "iscsi:san.example.com::3260:0:eui.02004567a425678d", "san.example.com:3260"},
	} {
		r, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		if got := r.String(); got != tc.str {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.str)
		}
		if got := r.Portal(); got != tc.portal {
			t.Errorf("Parse(%q).Portal() = %q, want %q", tc.in, got, tc.portal)
		}
	}
}

// TestNonASCIIInMessages: a character the parsers refuse is shown whole, as
// the user typed it, not as the first byte of its UTF-8 encoding ("\xc3");
// what cannot be seen is escaped.
func TestNonASCIIInMessages(t *testing.T) {
	const good = "iqn.2001-04.com.example:d"
	for _, tt := range []struct{ in, want string }{
		{"iscsi:10.0.0.1::::iqn.2001-04.com.exämple:d", `character "ä" at offset 18 is not ASCII`},
		{"iscsi:exämple.com::::" + good, `character "ä" is not allowed in a host name`},
		{"iscsi:10.0.0.1:::é:" + good, `"é" is not a hex digit`},
		{"iscsi:[fe80::1%ethé]::::" + good, `character "é" is not allowed in an interface name`},
		{"iscsi:10.0.0.1::::" + good + "\u200b", `character "\u200b" at offset 25`},
		{"iscsi:10.0.0.1::::iqn.2001-04.com.ex\xc3ample:d", `character "\xc3" at offset 18`},
	} {
		_, err := ParseCmdline(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseCmdline(%q) = %v, want an error containing %s", tt.in, err, tt.want)
		}
	}
}
