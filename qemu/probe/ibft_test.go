package probe

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// writeTree creates a fake /sys/firmware/ibft: files map "dir/attr" to
// content; links map "dir/name" to a symlink target.
func writeTree(t *testing.T, files, links map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "ibft")
	for p, v := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	for p, dst := range links {
		if err := os.Symlink(dst, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// ipxeTree is what Linux showed for the iBFT iPXE installed in the lab.
var ipxeTree = map[string]string{
	"acpi_header/signature":    "iBFT",
	"acpi_header/oem_id":       "FENSYS",
	"acpi_header/oem_table_id": "iPXE",
	"initiator/flags":          "3",
	"initiator/index":          "0",
	"initiator/initiator-name": "iqn.2026-11.org.lunboot.lab:ipxe-client",
	"ethernet0/flags":          "3",
	"ethernet0/index":          "0",
	"ethernet0/ip-addr":        "10.21.180.159",
	"ethernet0/mac":            "52:54:00:15:b4:00",
	"ethernet0/origin":         "3",
	"ethernet0/prefix-len":     "24",
	"ethernet0/subnet-mask":    "255.255.255.0",
	"ethernet0/gateway":        "10.21.180.1",
	"target0/flags":            "3",
	"target0/index":            "0",
	"target0/ip-addr":          "10.21.180.1",
	"target0/port":             "3260",
	"target0/lun":              "01000000",
	"target0/nic-assoc":        "0",
	"target0/target-name":      "iqn.2026-11.org.lunboot.lab:mbr",
	"target0/chap-type":        "0",
}

func TestReadIBFT(t *testing.T) {
	dir := writeTree(t, ipxeTree, map[string]string{"ethernet0/device": "../../../devices/pci0000:00/0000:00:03.0"})
	ib, secrets, err := ReadIBFT(dir)
	if err != nil {
		t.Fatalf("ReadIBFT: %v", err)
	}
	if ib.Signature != "iBFT" || ib.OEMID != "FENSYS" || ib.OEMTableID != "iPXE" {
		t.Errorf("header = %q %q %q, want iBFT FENSYS iPXE", ib.Signature, ib.OEMID, ib.OEMTableID)
	}
	if len(ib.NICs) != 1 || ib.NICs[0].Attrs["device"] != "0000:00:03.0" || ib.NICs[0].Attrs["mac"] != "52:54:00:15:b4:00" {
		t.Errorf("NICs = %+v, want ethernet0 with its MAC and PCI device", ib.NICs)
	}
	h, nic, err := ib.Handoff(secrets)
	if err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	want := &Handoff{Source: "ibft", Portal: "10.21.180.1:3260", Target: "iqn.2026-11.org.lunboot.lab:mbr", LUN: "1",
		Initiator: "iqn.2026-11.org.lunboot.lab:ipxe-client", IP: "ibft:origin=3"}
	if !cmp.Equal(h, want, cmpopts.IgnoreUnexported(Handoff{}), cmpopts.EquateEmpty()) {
		t.Errorf("Handoff() = %+v, want %+v", h, want)
	}
	if nic == nil || nic.Name != "ethernet0" {
		t.Errorf("Handoff() NIC = %+v, want ethernet0", nic)
	}
}

func TestReadIBFTSecrets(t *testing.T) {
	files := map[string]string{}
	for k, v := range ipxeTree {
		files[k] = v
	}
	files["target0/chap-type"] = "2"
	files["target0/chap-name"] = "user"
	files["target0/chap-secret"] = "forward-secret-1"
	files["target0/rev-chap-name"] = "target"
	files["target0/rev-chap-name-secret"] = "reverse-secret-2"
	ib, secrets, err := ReadIBFT(writeTree(t, files, nil))
	if err != nil {
		t.Fatalf("ReadIBFT: %v", err)
	}
	for _, e := range ib.Targets {
		for k, v := range e.Attrs {
			if strings.Contains(v, "secret-") {
				t.Errorf("attribute %s/%s = %q: secret not masked", e.Name, k, v)
			}
		}
	}
	h, _, err := ib.Handoff(secrets)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := h.Secrets(); a != "forward-secret-1" || b != "reverse-secret-2" {
		t.Errorf("Secrets() = %q, %q, want the table's", a, b)
	}
	if h.CHAPMode() != "mutual" || h.CHAPUser != "user" || h.ReverseUser != "target" {
		t.Errorf("CHAP = %s %q %q, want mutual user target", h.CHAPMode(), h.CHAPUser, h.ReverseUser)
	}
}

func TestIBFTHandoffChoice(t *testing.T) {
	tests := []struct {
		name    string
		targets []IBFTEntry
		want    string // target name, or "" for an error
	}{
		{"none", nil, ""},
		{"invalid only", []IBFTEntry{{Name: "target0", Attrs: map[string]string{"flags": "0", "target-name": "a"}}}, ""},
		{"boot flag preferred", []IBFTEntry{
			{Name: "target0", Attrs: map[string]string{"flags": "1", "target-name": "a", "ip-addr": "10.0.0.1"}},
			{Name: "target1", Attrs: map[string]string{"flags": "3", "target-name": "b", "ip-addr": "10.0.0.1"}},
		}, "b"},
		{"first valid without boot flags", []IBFTEntry{
			{Name: "target0", Attrs: map[string]string{"flags": "1", "target-name": "a", "ip-addr": "10.0.0.1"}},
			{Name: "target1", Attrs: map[string]string{"flags": "1", "target-name": "b", "ip-addr": "10.0.0.1"}},
		}, "a"},
	}
	for _, tt := range tests {
		ib := &IBFT{Targets: tt.targets}
		h, _, err := ib.Handoff(nil)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s: Handoff() = %+v, want an error", tt.name, h)
		case tt.want != "" && (err != nil || h.Target != tt.want):
			t.Errorf("%s: Handoff() = %+v, %v, want target %q", tt.name, h, err, tt.want)
		}
	}
}

func TestIBFTAmbiguousLUN(t *testing.T) {
	ib := &IBFT{Targets: []IBFTEntry{{Name: "target0", Attrs: map[string]string{
		"flags": "3", "target-name": "t", "ip-addr": "10.0.0.1", "lun": "0100a0000", "nic-assoc": "0"}}}}
	h, _, err := ib.Handoff(nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.LUN != "" || len(h.Warnings) < 1 || !strings.Contains(h.Warnings[0], "ambiguous") {
		t.Errorf("Handoff() LUN %q warnings %q, want no LUN and an ambiguity warning", h.LUN, h.Warnings)
	}
}

func TestReadIBFTAbsent(t *testing.T) {
	if _, _, err := ReadIBFT(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNoIBFT) {
		t.Errorf("ReadIBFT(missing) = %v, want ErrNoIBFT", err)
	}
}

func TestParseSysfsLUN(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"00000000", "0", true},
		{"01000000", "1", true},
		{"00010000", "0-0001", true},
		{"f0000000", "f00", true},
		{"0100000", "", false},
		{"0g000000", "", false},
	}
	for _, tt := range tests {
		l, ok := parseSysfsLUN(tt.in)
		if ok != tt.ok || ok && l.String() != tt.want {
			t.Errorf("parseSysfsLUN(%q) = %s, %v, want %s, %v", tt.in, l, ok, tt.want, tt.ok)
		}
	}
}
