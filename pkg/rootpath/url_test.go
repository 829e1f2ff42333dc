package rootpath

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	const good = "iqn.2001-04.com.example:d"
	for _, tc := range []parseCase{
		{in: "iscsi://10.0.0.1/" + good + "/0", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "ISCSI://10.0.0.1/" + good + "/0", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi://10.0.0.1:3261/" + good + "/26", errField: ok, want: rp("10.0.0.1", 3261, lun(0, 0x1a), good)},
		{in: "iscsi://10.0.0.1/" + good + "/256", errField: ok, want: rp("10.0.0.1", 3260, lun(1, 0), good)},
		{in: "iscsi://10.0.0.1/" + good + "/16384", errField: ok, want: rp("10.0.0.1", 3260, lun(0x40, 0), good)},
		{in: "iscsi://[2001:db8::1]:3262/" + good + "/1", errField: ok, want: rp("2001:db8::1", 3262, lun(0, 1), good)},
		{in: "iscsi://[fe80::1%eth0]/" + good + "/1", errField: ok, want: rp("fe80::1%eth0", 3260, lun(0, 1), good)},
		{in: "iscsi://san.example.com/" + good + "/0", errField: ok, want: rp("san.example.com", 3260, lun(), good)},
		{in: "iscsi://10.0.0.1/iqn.2001-04.com.example%3Ad/0", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},
		{in: "iscsi://bob%s3cret@10.0.0.1/" + good + "/0", errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "bob", "s3cret")},
		{in: "iscsi://bob:s3cret@10.0.0.1/" + good + "/0", errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "bob", "s3cret")},
		{in: "iscsi://bob%s3c@r/t%@10.0.0.1/" + good + "/0", errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "bob", "s3c@r/t%")},
		{in: "iscsi://bob%s3cret@10.0.0.1/" + good + "/0?target_user=tgt&target_password=t4rget", errField: ok,
			want: withCHAP(rp("10.0.0.1", 3260, lun(), good), "bob", "s3cret", "tgt", "t4rget")},
		{in: "iscsi://10.0.0.1/" + good + "/0\x00", errField: ok, want: rp("10.0.0.1", 3260, lun(), good)},

		{in: "iscsi:10.0.0.1::::" + good, errField: FieldScheme, errHas: "iscsi://"},
		{in: "iscsi://10.0.0.1", errField: FieldSyntax, errHas: "/<target>/<lun>"},
		{in: "iscsi://10.0.0.1/" + good, errField: FieldLUN, errHas: "missing"},
		{in: "iscsi://10.0.0.1/" + good + "/", errField: FieldLUN, errHas: "decimal"},
		{in: "iscsi://10.0.0.1/" + good + "/1a", errField: FieldLUN, errHas: "decimal"},
		{in: "iscsi://10.0.0.1/" + good + "/-1", errField: FieldLUN},
		{in: "iscsi://10.0.0.1/" + good + "/18446744073709551616", errField: FieldLUN, errHas: "64-bit"},
		{in: "iscsi://10.0.0.1/" + good + "/0/extra", errField: FieldLUN},
		{in: "iscsi://10.0.0.1:/" + good + "/0", errField: FieldPort, errHas: "empty port"},
		{in: "iscsi://10.0.0.1:0/" + good + "/0", errField: FieldPort},
		{in: "iscsi://10.0.0.1:99999/" + good + "/0", errField: FieldPort},
		{in: "iscsi://fe80::1/" + good + "/0", errField: FieldServer, errHas: "brackets"},
		{in: "iscsi://[fe80::1/" + good + "/0", errField: FieldServer, errHas: "closing"},
		{in: "iscsi://[fe80::1]x/" + good + "/0", errField: FieldServer},
		{in: "iscsi:///" + good + "/0", errField: FieldServer, errHas: "missing: an iSCSI URL names the target portal's host"},
		{in: "iscsi://", errField: FieldServer, errHas: "missing: an iSCSI URL names the target portal's host"},
		{in: "iscsi://:3260/" + good + "/0", errField: FieldServer, errHas: "missing"},
		{in: "iscsi://bob%pw@/" + good + "/0", errField: FieldServer, errHas: "missing"},
		{in: "iscsi://10.0.0.1/iqn.x:t/0", errField: FieldTarget},
		{in: "iscsi://10.0.0.1/iqn.2001-04.com.example%3/0", errField: FieldTarget, errHas: "two hex digits"},
		{in: "iscsi://bob@10.0.0.1/" + good + "/0", errField: FieldCredentials},
		{in: "iscsi://%pw@10.0.0.1/" + good + "/0", errField: FieldCredentials},
		{in: "iscsi://10.0.0.1/" + good + "/0?header_digest=crc32c", errField: FieldQuery, errHas: "target_user="},
		{in: "iscsi://bob%pw@10.0.0.1/" + good + "/0?target_user=tgt", errField: FieldCredentials, errHas: "go together"},
		{in: "iscsi://10.0.0.1/" + good + "/0?target_user=tgt&target_password=x", errField: FieldCredentials, errHas: "also needs"},
		{in: "iscsi://bob%p?w@10.0.0.1/" + good + "/0", errField: FieldCredentials, errHas: "cannot contain '?'"},
	} {
		checkParse(t, "ParseURL", ParseURL, tc)
	}
}

func TestParseTarget(t *testing.T) {
	const good = "iqn.2001-04.com.example:d"
	for _, tc := range []parseCase{
		{in: "iscsi://10.0.0.1/" + good + "/26", errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)},
		{in: "  iscsi://10.0.0.1/" + good + "/26", errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)},
		{in: "iscsi:10.0.0.1:::1a:" + good, errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)},
		{in: "iscsi:u:p@10.0.0.1:::1a:" + good, errField: ok, want: withCHAP(rp("10.0.0.1", 3260, lun(0, 0x1a), good), "u", "p")},
		{in: "10.0.0.1", errField: FieldScheme},
	} {
		checkParse(t, "ParseTarget", ParseTarget, tc)
	}
}

func TestParsePortal(t *testing.T) {
	const good = "iqn.2001-04.com.example:d"
	for _, tc := range []parseCase{
		{in: "10.0.0.1", errField: ok, want: rp("10.0.0.1", 3260, lun(), "")},
		{in: "10.0.0.1:3261", errField: ok, want: rp("10.0.0.1", 3261, lun(), "")},
		{in: "san.example.com", errField: ok, want: rp("san.example.com", 3260, lun(), "")},
		{in: "[2001:db8::1]:3262", errField: ok, want: rp("2001:db8::1", 3262, lun(), "")},
		{in: "[fe80::1%eth0]", errField: ok, want: rp("fe80::1%eth0", 3260, lun(), "")},
		{in: "2001:db8::1", errField: ok, want: rp("2001:db8::1", 3260, lun(), "")},
		{in: "iscsi://10.0.0.1", errField: ok, want: rp("10.0.0.1", 3260, lun(), "")},
		{in: "iscsi://10.0.0.1:3261/", errField: ok, want: rp("10.0.0.1", 3261, lun(), "")},
		{in: "iscsi://10.0.0.1/" + good + "/26", errField: ok, want: rp("10.0.0.1", 3260, lun(0, 0x1a), good)},
		{in: "iscsi:10.0.0.1::3261:1a:" + good, errField: ok, want: rp("10.0.0.1", 3261, lun(0, 0x1a), good)},

		{in: "", errField: FieldServer, errHas: "missing: a portal is"},
		{in: ":3260", errField: FieldServer, errHas: "missing"},
		{in: "10.0.0.1:99999", errField: FieldPort, errHas: "1 to 65535"},
		{in: "10.0.0.1:", errField: FieldPort, errHas: "empty port"},
		{in: "fe80::1:3260x", errField: FieldServer, errHas: "brackets"},
		{in: "exämple.com", errField: FieldServer, errHas: `character "ä"`},
		{in: "iscsi://", errField: FieldServer, errHas: "missing"},
		{in: "iscsi://10.0.0.1:0", errField: FieldPort},
		{in: "iscsi://10.0.0.1/" + good, errField: FieldLUN, errHas: "missing"},
		{in: "iscsi:10.0.0.1::::", errField: FieldTarget},
	} {
		checkParse(t, "ParsePortal", ParsePortal, tc)
	}
	r, err := ParsePortal("iscsi://bob%s3cret@10.0.0.1:3261")
	if err != nil || r.Username != "bob" || r.Password != "s3cret" || r.Portal() != "10.0.0.1:3261" {
		t.Errorf("ParsePortal(URL with credentials) = %+v, %v; want bob's credentials for 10.0.0.1:3261", r, err)
	}
	_, err = ParsePortal("bob%s3cret@10.0.0.1:99999")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ParsePortal(portal with a password) = %v, want an error that does not show the password", err)
	}
}
