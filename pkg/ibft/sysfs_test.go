package ibft

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/pkg/sam"
)

// kernelAddr formats an address as iscsi_ibft.c's sprintf_ipaddr does: %pI4
// for IPv4-mapped addresses, %pI6 (eight zero-padded groups) otherwise.
func kernelAddr(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	b := a.As16()
	var g []string
	for i := 0; i < 16; i += 2 {
		g = append(g, fmt.Sprintf("%02x%02x", b[i], b[i+1]))
	}
	return strings.Join(g, ":")
}

// writeFakeSysfs lays out what iscsi_ibft + iscsi_boot_sysfs would show for
// tbl under <root>/firmware/ibft, hiding attributes as ibft_check_*_for do.
func writeFakeSysfs(t *testing.T, root string, tbl *Table) {
	t.Helper()
	base := filepath.Join(root, "firmware", "ibft")
	put := func(dir, name, val string) {
		t.Helper()
		d := filepath.Join(base, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(val), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	putAddr := func(dir, name string, a netip.Addr) {
		if a.IsValid() && !a.IsUnspecified() {
			put(dir, name, kernelAddr(a)+"\n")
		}
	}
	sig := tbl.Signature
	if sig == "" {
		sig = SignatureACPI
	}
	put("acpi_header", "signature", sig+"\n")
	put("acpi_header", "oem_id", fmt.Sprintf("%-6s\n", tbl.OEMID))
	put("acpi_header", "oem_table_id", fmt.Sprintf("%-8s\n", tbl.OEMTableID))
	if in := tbl.Initiator; !in.IsZero() {
		put("initiator", "index", "0\n")
		put("initiator", "flags", fmt.Sprintf("%d\n", in.Flags))
		putAddr("initiator", "isns-server", in.ISNSServer)
		putAddr("initiator", "slp-server", in.SLPServer)
		putAddr("initiator", "pri-radius-server", in.PrimaryRADIUS)
		putAddr("initiator", "sec-radius-server", in.SecondaryRADIUS)
		if in.Name != "" {
			put("initiator", "initiator-name", in.Name+"\n")
		}
	}
	for i, n := range tbl.NICs {
		if n.IsZero() {
			continue
		}
		d := fmt.Sprintf("ethernet%d", i)
		put(d, "index", fmt.Sprintf("%d\n", i))
		put(d, "flags", fmt.Sprintf("%d\n", n.Flags))
		putAddr(d, "ip-addr", n.IP.Addr())
		if n.IP.Bits() > 0 {
			put(d, "prefix-len", fmt.Sprintf("%d\n", n.IP.Bits()))
			put(d, "subnet-mask", "255.255.255.0") // no newline, as the kernel prints it
		}
		put(d, "origin", fmt.Sprintf("%d\n", n.Origin))
		putAddr(d, "gateway", n.Gateway)
		putAddr(d, "primary-dns", n.DNS[0])
		putAddr(d, "secondary-dns", n.DNS[1])
		putAddr(d, "dhcp", n.DHCPServer)
		put(d, "vlan", fmt.Sprintf("%d\n", n.VLAN))
		put(d, "mac", n.MAC.String()+"\n")
		if n.Hostname != "" {
			put(d, "hostname", n.Hostname+"\n")
		}
		link := "../../../devices/pci0000:00/0000:" + n.PCI.String()
		if err := os.Symlink(link, filepath.Join(base, d, "device")); err != nil {
			t.Fatal(err)
		}
	}
	for i, tg := range tbl.Targets {
		if tg.IsZero() {
			continue
		}
		d := fmt.Sprintf("target%d", i)
		put(d, "index", fmt.Sprintf("%d\n", i))
		put(d, "flags", fmt.Sprintf("%d\n", tg.Flags))
		put(d, "ip-addr", kernelAddr(tg.Addr.Addr())+"\n")
		put(d, "port", fmt.Sprintf("%d\n", tg.Addr.Port()))
		put(d, "lun", FormatSysfsLUN(tg.LUN)+"\n")
		put(d, "nic-assoc", fmt.Sprintf("%d\n", tg.NICIndex))
		put(d, "chap-type", fmt.Sprintf("%d\n", tg.CHAPType))
		if tg.Name != "" {
			put(d, "target-name", tg.Name+"\n")
		}
		if tg.CHAPName != "" {
			put(d, "chap-name", tg.CHAPName+"\n")
			put(d, "chap-secret", tg.CHAPSecret+"\n")
		}
		if tg.ReverseCHAPName != "" {
			put(d, "rev-chap-name", tg.ReverseCHAPName+"\n")
			put(d, "rev-chap-name-secret", tg.ReverseCHAPSecret+"\n")
		}
	}
}

var addrCmp = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func TestReadSysfs(t *testing.T) {
	tbl := labTable(t)
	tbl.OEMID, tbl.OEMTableID = "LUNBOT", "LUNBOOT"
	tbl.Initiator.ISNSServer = netip.MustParseAddr("2001:db8::5")
	tbl.NICs[0].Hostname = "client-1"
	tbl.NICs[0].VLAN = 7
	tbl.Targets[0].LUN = sam.LUN{0x40, 0x01, 0, 0, 0, 0, 0, 0}
	tbl.Targets[0].CHAPType = CHAPMutual
	tbl.Targets[0].CHAPName, tbl.Targets[0].CHAPSecret = "alice", "0123456789ab"
	tbl.Targets[0].ReverseCHAPName, tbl.Targets[0].ReverseCHAPSecret = "tgt", "ba9876543210"
	root := t.TempDir()
	writeFakeSysfs(t, root, tbl)

	got, err := ReadSysfs(root)
	if err != nil {
		t.Fatalf("ReadSysfs() error: %v", err)
	}
	want := *tbl
	want.Signature = SignatureACPI
	if diff := cmp.Diff(&want, got, addrCmp...); diff != "" {
		t.Errorf("ReadSysfs() differs (-want +got):\n%s", diff)
	}

	// Read falls back to the attributes when no raw table is published.
	got2, err := Read(root)
	if err != nil || !cmp.Equal(got, got2, addrCmp...) {
		t.Errorf("Read() = %v, %v; want the ReadSysfs result", got2, err)
	}
}

func TestReadACPI(t *testing.T) {
	tbl := labTable(t)
	b, err := tbl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dir := filepath.Join(root, "firmware", "acpi", "tables")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A firmware table published as "iBFT", plus a sysfs tree that says
	// something else: the raw table wins.
	tbl.Signature = SignatureLowMem
	if b, err = tbl.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "iBFT"), b, 0o400); err != nil {
		t.Fatal(err)
	}
	other := labTable(t)
	other.Initiator.Name = "iqn.other:x"
	writeFakeSysfs(t, root, other)

	got, err := Read(root)
	if err != nil {
		t.Fatalf("Read() error: %v", err)
	}
	if got.Initiator.Name != tbl.Initiator.Name || got.Signature != SignatureLowMem {
		t.Errorf("Read() = initiator %q signature %q, want %q %q from the raw table", got.Initiator.Name, got.Signature, tbl.Initiator.Name, SignatureLowMem)
	}

	// A corrupt raw table is an error, not a silent fallback.
	b[20] ^= 0xff
	if err := os.WriteFile(filepath.Join(dir, "iBFT"), b, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(root); !errors.Is(err, ErrChecksum) {
		t.Errorf("Read(corrupt table) = %v, want ErrChecksum", err)
	}
}

func TestReadNotFound(t *testing.T) {
	if _, err := Read(t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read(empty) = %v, want ErrNotFound", err)
	}
}

func TestReadSysfsMalformed(t *testing.T) {
	for _, tt := range []struct {
		name, dir, attr, val string
	}{
		{"bad flags", "ethernet0", "flags", "seven\n"},
		{"bad mac", "ethernet0", "mac", "zz:00\n"},
		{"bad ip", "target0", "ip-addr", "10.0.0.300\n"},
		{"bad lun", "target0", "lun", "xyz\n"},
		{"prefix too long", "ethernet0", "prefix-len", "40\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFakeSysfs(t, root, labTable(t))
			p := filepath.Join(root, "firmware", "ibft", tt.dir, tt.attr)
			if err := os.WriteFile(p, []byte(tt.val), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, err := ReadSysfs(root); !errors.Is(err, ErrMalformed) {
				t.Errorf("ReadSysfs() = %+v, %v; want ErrMalformed", got, err)
			}
		})
	}
}

func TestParseSysfsLUN(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want sam.LUN
	}{
		{"00000000", sam.LUN{}},
		{"01000000", sam.LUN{0, 1}},
		{"01a000000", sam.LUN{0, 0x1a}},
		{"401000000", sam.LUN{0x40, 0x01}},
		{"4040000000", sam.LUN{0x40, 0x40}},
		{"400010000", sam.LUN{0x40, 0, 0, 1}},
		{"0ff000000", sam.LUN{0, 0xff}},
		{"1020304050607080", sam.LUN{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80}},
		{"0001000000000000", sam.LUN{0, 0x01}}, // a zero-padding kernel
	} {
		got, err := parseSysfsLUN(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSysfsLUN(%q) = % x, %v; want % x", tt.in, got[:], err, tt.want[:])
		}
	}
	for _, bad := range []string{"", "0000000", "00000000000000000", "0000000g", "00000 00"} {
		if got, err := parseSysfsLUN(bad); err == nil {
			t.Errorf("parseSysfsLUN(%q) = % x, want error", bad, got[:])
		}
	}
	// Every single-level LUN a target hands out survives the quirk:
	// peripheral addressing for 0–255, flat addressing (0x40..) above.
	for n := uint64(0); n < 0x8000; n++ {
		if n == 256 {
			n = 0x4000
		}
		l := sam.LUNFromLinux(n)
		got, err := parseSysfsLUN(FormatSysfsLUN(l))
		if err != nil || got != l {
			t.Fatalf("parseSysfsLUN(FormatSysfsLUN(% x)) = % x, %v", l[:], got[:], err)
		}
	}
}

func FuzzParseSysfsLUN(f *testing.F) {
	for _, s := range []string{"00000000", "401000000", "01a000000", "1020304050607080"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseSysfsLUN(s)
		if err != nil || len(s) == 16 {
			return
		}
		// A split never gives a two-digit byte a leading zero, so printing
		// it again as the kernel does must reproduce the input.
		if got := FormatSysfsLUN(l); !strings.EqualFold(got, s) {
			t.Fatalf("FormatSysfsLUN(parseSysfsLUN(%q)) = %q", s, got)
		}
	})
}

func TestSecretAttr(t *testing.T) {
	for name, want := range map[string]bool{
		"chap-secret": true, "rev-chap-name-secret": true, "rev-chap-secret": true,
		"chap-name": false, "rev-chap-name": false, "target-name": false, "chap-type": false, "": false,
	} {
		if got := SecretAttr(name); got != want {
			t.Errorf("SecretAttr(%q) = %v, want %v", name, got, want)
		}
	}
}
