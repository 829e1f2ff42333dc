package bootcfg

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSysfs writes product_uuid under a temporary sysfs root; content ""
// leaves the file out (a machine without DMI).
func fakeSysfs(t *testing.T, content string) string {
	t.Helper()
	root := t.TempDir()
	if content == "" {
		return root
	}
	dir := filepath.Join(root, "class", "dmi", "id")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "product_uuid"), []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestReadSystemUUID(t *testing.T) {
	for _, tc := range []struct {
		content, want, wantErr string
	}{
		// As the kernel prints it: lower case, a trailing newline.
		{"4c4c4544-0042-3510-8052-b4c04f384d32\n", "4c4c4544-0042-3510-8052-b4c04f384d32", ""},
		{"4C4C4544-0042-3510-8052-B4C04F384D32", "4c4c4544-0042-3510-8052-b4c04f384d32", ""},
		{"", "", "no such file"},
		{"not-a-uuid\n", "", "8-4-4-4-12"},
		{"4c4c4544+0042-3510-8052-b4c04f384d32", "", "8-4-4-4-12"},
		{"4c4c4544-0042-3510-8052-b4c04f384d3g", "", "8-4-4-4-12"},
	} {
		s := ReadSystemUUID(fakeSysfs(t, tc.content))
		if s.Value != tc.want || (s.Err == nil) != (tc.wantErr == "") || s.Err != nil && !strings.Contains(s.Err.Error(), tc.wantErr) {
			t.Errorf("ReadSystemUUID(%q) = %q, %v; want %q, error containing %q", tc.content, s.Value, s.Err, tc.want, tc.wantErr)
		}
		if !s.IsSet() {
			t.Errorf("ReadSystemUUID(%q) is not set; want a Detected origin with the value or the error", tc.content)
		}
	}
}

func TestIPXEInitiatorName(t *testing.T) {
	for _, tc := range []struct {
		host, uuid, want string
		folded           bool
		wantErr          string
	}{
		// iPXE prefers the host name (DHCP option 12) to the UUID.
		{"node7", "4c4c4544-0042-3510-8052-b4c04f384d32", "iqn.2010-04.org.ipxe:node7", false, ""},
		{"node7.example.com", "", "iqn.2010-04.org.ipxe:node7.example.com", false, ""},
		{"", "4c4c4544-0042-3510-8052-b4c04f384d32", "iqn.2010-04.org.ipxe:4c4c4544-0042-3510-8052-b4c04f384d32", false, ""},
		{"", "4C4C4544-0042-3510-8052-B4C04F384D32", "iqn.2010-04.org.ipxe:4c4c4544-0042-3510-8052-b4c04f384d32", false, ""},
		{"Node7", "", "iqn.2010-04.org.ipxe:node7", true, ""},
		{"", "", "", false, "no host name"},
		{"bad_host", "", "", false, "not allowed"},
		{"", "1234", "", false, "8-4-4-4-12"},
	} {
		got, folded, err := IPXEInitiatorName(tc.host, tc.uuid)
		if got != tc.want || folded != tc.folded || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("IPXEInitiatorName(%q, %q) = %q, %v, %v; want %q, %v, error containing %q", tc.host, tc.uuid, got, folded, err, tc.want, tc.folded, tc.wantErr)
		}
	}
}

// TestIPXEInitiatorMerge follows lunboot.initiator=ipxe through Merge: the
// lease's host name, else the system UUID from a fake sysfs, and the
// error when there is neither.
func TestIPXEInitiatorMerge(t *testing.T) {
	const uuid = "4c4c4544-0042-3510-8052-b4c04f384d32"
	for _, tc := range []struct {
		name      string
		cmdline   string
		host      string // DHCP option 12
		sysfsUUID string // "" means no product_uuid
		want      string
		wantFrom  string
		wantErr   string
	}{
		{"host name from DHCP", "lunboot.initiator=ipxe", "node7", uuid, "iqn.2010-04.org.ipxe:node7", "DHCP option 12", ""},
		{"UUID without host name", "lunboot.initiator=ipxe", "", uuid + "\n", "iqn.2010-04.org.ipxe:" + uuid, "SMBIOS system UUID", ""},
		// ip='s host name is lunboot's, not what iPXE saw.
		{"ip= host name does not count", "lunboot.initiator=ipxe ip=::::other:eth0:dhcp", "", uuid, "iqn.2010-04.org.ipxe:" + uuid, "SMBIOS system UUID", ""},
		{"neither", "lunboot.initiator=ipxe", "", "", "", "", "product_uuid"},
		// The command line beats DHCP option 203, as any initiator= does.
		{"beats option 203", "lunboot.initiator=IPXE", "node7", uuid, "iqn.2010-04.org.ipxe:node7", "lunboot.initiator=ipxe", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := mustCmdline(t, tc.cmdline+" netroot=iscsi:192.0.2.1::::"+tgt)
			cmd.SystemUUID = ReadSystemUUID(fakeSysfs(t, tc.sysfsUUID))
			n := lease()
			n.Hostname = tc.host
			c, err := Merge(cmd, n.Source(), Source{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "lunboot.initiator") {
					t.Fatalf("Merge = %v; want an error naming lunboot.initiator and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Initiator != tc.want {
				t.Errorf("initiator = %q, want %q", c.Initiator, tc.want)
			}
			if o := c.Origin(FieldInitiator); o.Kind != Cmdline || !strings.Contains(o.String(), tc.wantFrom) {
				t.Errorf("initiator origin = %v, want the command line, mentioning %q", o, tc.wantFrom)
			}
		})
	}
}

// TestDNSUnderDHCP checks that nameserver= and the lease's DNS servers are
// both used with DHCP, the command line's first, as dracut does.
func TestDNSUnderDHCP(t *testing.T) {
	ad := netip.MustParseAddr
	cmd := mustCmdline(t, "nameserver=192.0.2.99 nameserver=192.0.2.53")
	c := Resolve(cmd, lease().Source(), Source{})
	want := []netip.Addr{ad("192.0.2.99"), ad("192.0.2.53")} // the lease's 192.0.2.53 only once
	if !slices.Equal(c.IP.DNS, want) {
		t.Errorf("DNS = %v, want %v", c.IP.DNS, want)
	}
	if o := c.Origin(FieldDNS).String(); !strings.Contains(o, "nameserver") || !strings.Contains(o, "DHCP option 6") {
		t.Errorf("DNS origin = %q, want both the command line and DHCP option 6", o)
	}
	// Static: the command line's only.
	cmd = mustCmdline(t, "ip=192.0.2.10::192.0.2.254:24::eth0:off nameserver=192.0.2.99")
	c = Resolve(cmd, Network{Interface: "eth0", MAC: mac1}.Source(), Source{})
	if !slices.Equal(c.IP.DNS, []netip.Addr{ad("192.0.2.99")}) {
		t.Errorf("static DNS = %v, want only the command line's", c.IP.DNS)
	}
}
