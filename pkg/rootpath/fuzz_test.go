package rootpath

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// seeds are the reference matrix rows (ipxe_rfc.md §1.6), u-root's
// iscsiuri_test.go inputs and the extension forms, for every fuzzer.
var seeds = []string{
	"iscsi:192.168.50.1::::iqn.2009-06.dracut:target0",
	"iscsi:10.0.0.1:6:3261:1:iqn.2001-04.com.example:disk",
	"iscsi:10.0.0.1:::1a:iqn.x:t",
	"iscsi:10.0.0.1:::0x1a:iqn.x:t",
	"iscsi:10.0.0.1:::4000-0001:iqn.x:t",
	"iscsi:10.0.0.1:::12345:iqn.x:t",
	"iscsi:10.0.0.1:::1-2-3-4-5:iqn.x:t",
	"iscsi:[2001:db8::1]::3260:0:iqn.x:t",
	"iscsi:[fe80::1%net0]::::iqn.x:t",
	"iscsi:2001:db8::1::3260:0:iqn.x:t",
	"iscsi:san.example.com::::iqn.x:t",
	"iscsi:10.0.0.1::::iqn.2001-04.com.example:disk#1",
	"iscsi:10.0.0.1::3260:0:iqn.2009-06.dracut:iqn.target",
	"iscsi:user:secret@10.0.0.1::::iqn.x:t",
	"iscsi:u:p:ru:rp@10.0.0.1::::iqn.x:t",
	"iscsi:@10.0.0.1::3260::iqn.x:t@sk",
	"iscsi:10.0.0.1:::iqn.2009-06.dracut:target0",
	"iscsi:10.0.0.1:::iqn.x",
	"iscsi:10.0.0.1::::",
	"iscsi::6:3260:0:iqn.x:t",
	"iscsi:10.0.0.1::abc::iqn.x:t",
	"iscsi:10.0.0.1:17:::iqn.x:t",
	"ISCSI:10.0.0.1::::iqn.x:t",
	"iscsi:10.0.0.1::::IQN.2001-04.COM.EXAMPLE:DISK",
	"iscsi:192.168.1.1:::1:iqn.com.oracle:boot",
	"iscsi:@192.168.1.1::3260::iqn.com.oracle:boot",
	"iscsi:[fe80::1]::3260::iqn.com.google:esxi-boot-]:image",
	"iscsi:192.168.1.1::::iqn.com.google::::",
	"iscsi:[fe80::1::::",
	"iscsi:u:p@[fe80::1%eth0]::3260::eth1:1a:iqn.2001-04.com.example:t",
	"iscsi:abc::::iqn.2001-04.com.example:t",
	"iscsi:fe80::1:0:iqn.2001-04.com.example:t",
	"iscsi:10.0.0.1:::ffff-ffff-ffff-ffff:naa.52004567ba64678d52004567ba64678d",
	"iscsi:10.0.0.1::::eui.02004567A425678D\x00",
	"iscsi://bob%s3c@r/t%@[fe80::1%eth0]:3261/iqn.2001-04.com.example%3Ad/26?target_user=t&target_password=p",
	"iscsi://10.0.0.1/iqn.2001-04.com.example:d/18446744073709551615",
	"iscsi://10.0.0.1/iqn.2001-04.com.example:d/1a",
	"iscsi://fe80/iqn.2001-04.com.example:d:x:y:iqn.z/0",
}

// checkRoundTrip is the property every parser must have: what parses
// formats to a canonical root-path that strict Parse reads back to the
// same target, and formats identically again.
func checkRoundTrip(t *testing.T, name, in string, r RootPath, err error) {
	if err != nil {
		var perr *Error
		if !errors.As(err, &perr) {
			t.Fatalf("%s(%q) error %v is not *Error", name, in, err)
		}
		if perr.Err == nil {
			t.Fatalf("%s(%q) returned *Error without a reason", name, in)
		}
		return
	}
	if r.Target == "" || r.Server == "" || r.Port == 0 {
		t.Fatalf("%s(%q) = %#v with an empty field and no error", name, in, r)
	}
	s := r.String()
	back, err := Parse(s)
	if err != nil {
		t.Fatalf("%s(%q).String() = %q, which Parse rejects: %v", name, in, s, err)
	}
	want := r.WithoutCredentials()
	want.Iface, want.NetDev = "", ""
	if !back.Equal(want) {
		t.Fatalf("Parse(%s(%q).String()) = %#v, want %#v", name, in, back, want)
	}
	if s2 := back.String(); s2 != s {
		t.Fatalf("%s(%q): String() %q re-parses and formats as %q", name, in, s, s2)
	}
	if len(back.Warnings) != 0 {
		t.Fatalf("canonical form %q parses with warnings %q", s, back.Warnings)
	}
	_ = fmt.Sprintf("%v %+v %#v", r, r, r)
	_ = r.LogValue()
	_ = r.Portal()
}

func addSeeds(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		checkRoundTrip(t, "Parse", s, r, err)
		if err == nil && r.HasCredentials() {
			t.Fatalf("Parse(%q) accepted credentials", s)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseCmdline(s)
		checkRoundTrip(t, "ParseCmdline", s, r, err)
		// Whatever strict Parse accepts, the extension must read the same.
		if p, perr := Parse(s); perr == nil {
			if err != nil || !p.Equal(r) {
				t.Fatalf("Parse(%q) = %v but ParseCmdline = %#v, %v", s, p, r, err)
			}
		}
		if err == nil && r.Password != "" && !strings.Contains(Mask, r.Password) && strings.Contains(r.Masked(), r.Password+"@") {
			t.Fatalf("ParseCmdline(%q).Masked() = %q shows the password", s, r.Masked())
		}
	})
}

func FuzzParseURL(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseURL(s)
		checkRoundTrip(t, "ParseURL", s, r, err)
	})
}

func FuzzParsePortal(f *testing.F) {
	addSeeds(f)
	for _, s := range []string{"10.0.0.1", "10.0.0.1:3261", "[2001:db8::1]:3262", "2001:db8::1", "[fe80::1%eth0]", "san.example.com:3260",
		"iscsi://10.0.0.1", "iscsi://bob%pw@10.0.0.1:3261/", "bob%pw@10.0.0.1", ":3260", "iscsi://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortal(s)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || perr.Err == nil {
				t.Fatalf("ParsePortal(%q) error %v is not *Error with a reason", s, err)
			}
			return
		}
		if r.Server == "" || r.Port == 0 {
			t.Fatalf("ParsePortal(%q) = %#v with an empty field and no error", s, r)
		}
		// The portal as the initiator dials it reads back as itself.
		back, err := ParsePortal(r.Portal())
		if err != nil || back.Server != r.Server || back.Port != r.Port {
			t.Fatalf("ParsePortal(%q).Portal() = %q, which reads back as %#v, %v", s, r.Portal(), back, err)
		}
		if r.Target != "" {
			checkRoundTrip(t, "ParsePortal", s, r, nil)
		}
	})
}
