package handoff

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/ibft"
)

// fakeSysfs lays out the sysfs of a virtio_net NIC as Linux shows it:
// /sys/class/net/eth0 → ../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0,
// whose device is virtio0 (driver virtio_net, module virtio_net) on the
// PCI function 0000:00:03.0.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	vdev := "devices/pci0000:00/0000:00:03.0/virtio0"
	mk(vdev + "/net/eth0")
	mk("bus/virtio/drivers/virtio_net")
	mk("module/virtio_net")
	mk("class/net")
	os.WriteFile(filepath.Join(root, vdev, "net/eth0/address"), []byte("52:54:00:12:34:56\n"), 0o644)
	ln("../../../virtio0", vdev+"/net/eth0/device")
	ln("../../../../bus/virtio/drivers/virtio_net", vdev+"/driver")
	ln("../../../../module/virtio_net", "bus/virtio/drivers/virtio_net/module")
	ln("../../"+vdev+"/net/eth0", "class/net/eth0")

	// A virtual interface: no device.
	mk("devices/virtual/net/lo")
	os.WriteFile(filepath.Join(root, "devices/virtual/net/lo/address"), []byte("00:00:00:00:00:00\n"), 0o644)
	ln("../../devices/virtual/net/lo", "class/net/lo")

	// A built-in driver without a module link, on PCI segment 1.
	edev := "devices/pci0001:3b/0001:3b:00.1"
	mk(edev + "/net/eth1")
	mk("bus/pci/drivers/e1000e")
	os.WriteFile(filepath.Join(root, edev, "net/eth1/address"), []byte("02:00:00:00:00:02\n"), 0o644)
	ln("../../../0001:3b:00.1", edev+"/net/eth1/device")
	ln("../../../bus/pci/drivers/e1000e", edev+"/driver")
	ln("../../"+edev+"/net/eth1", "class/net/eth1")
	return root
}

func TestReadNICDevice(t *testing.T) {
	root := fakeSysfs(t)
	d, err := ReadNICDevice(root, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if d.MAC.String() != "52:54:00:12:34:56" || d.Module != "virtio_net" || d.Driver != "virtio_net" ||
		d.PCI == nil || *d.PCI != (PCIAddr{0, 0, 3, 0}) || d.DriverModule() != "virtio_net" {
		t.Errorf("ReadNICDevice(eth0) = %+v (PCI %v), want virtio_net at 0000:00:03.0", d, d.PCI)
	}
	d, err = ReadNICDevice(root, "eth1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Module != "" || d.DriverModule() != "e1000e" || d.PCI == nil || d.PCI.String() != "0001:3b:00.1" {
		t.Errorf("ReadNICDevice(eth1) = %+v (PCI %v), want built-in e1000e at 0001:3b:00.1", d, d.PCI)
	}
	d, err = ReadNICDevice(root, "lo")
	if err != nil || d.PCI != nil || d.Driver != "" {
		t.Errorf("ReadNICDevice(lo) = %+v, %v; want no device", d, err)
	}
	for _, bad := range []string{"nope", "../eth0", ""} {
		if _, err := ReadNICDevice(root, bad); err == nil {
			t.Errorf("ReadNICDevice(%q) = nil error", bad)
		}
	}
}

func TestInfoTable(t *testing.T) {
	in := chapInfo(true)
	tbl, err := in.Table()
	if err != nil {
		t.Fatal(err)
	}
	n, tg := tbl.NICs[0], tbl.Targets[0]
	if n.PCI != (ibft.BDF{Bus: 0, Device: 3, Function: 0}) || n.MAC.String() != "52:54:00:12:34:56" ||
		n.Origin != ibft.OriginDHCP || n.Flags != ibft.FlagValid|ibft.FlagBoot|ibft.FlagGlobal ||
		n.DNS[0] != netip.MustParseAddr("10.0.2.3") || n.DHCPServer != netip.MustParseAddr("10.0.2.2") {
		t.Errorf("NIC = %+v", n)
	}
	if tg.CHAPType != ibft.CHAPMutual || tg.CHAPName != "alice" || tg.ReverseCHAPSecret != "t4rget-secret" ||
		tg.LUN != in.Target.LUN || tg.Addr != in.Target.Addr || tg.Flags != ibft.FlagValid|ibft.FlagBoot {
		t.Errorf("Target = %+v", tg)
	}
	if tbl.Initiator.Name != in.InitiatorName || tbl.Signature != ibft.SignatureACPI {
		t.Errorf("Initiator/Signature = %+v %q", tbl.Initiator, tbl.Signature)
	}
	// No CHAP: no CHAP strings at all.
	tbl, _ = labInfo().Table()
	if tg := tbl.Targets[0]; tg.CHAPType != ibft.CHAPNone || tg.CHAPName != "" || tg.CHAPSecret != "" {
		t.Errorf("Target without CHAP = %+v", tg)
	}
	// A NIC outside PCI segment 0 cannot be named by the table.
	far := labInfo()
	far.NIC.PCI = &PCIAddr{Domain: 1, Bus: 0x3b, Device: 0, Function: 1}
	if tbl, _ := far.Table(); tbl.NICs[0].PCI != (ibft.BDF{}) {
		t.Errorf("segment 1 NIC: PCI = %v, want zero", tbl.NICs[0].PCI)
	}
	bad := labInfo()
	bad.Target.Name = ""
	if _, err := bad.Table(); !errors.Is(err, ErrInfo) || !strings.Contains(err.Error(), "target name") {
		t.Errorf("Table(no target name) = %v, want ErrInfo naming it", err)
	}
}

func TestPrepare(t *testing.T) {
	img := cat(microcode(), compress(t, CompressionZstd, cpioOf(debianFiles()...)))
	osInitrd := inspectBytes(t, img)
	for _, tt := range []struct {
		name      string
		info      *Info
		mode      Mode
		kernel    KernelSupport
		wantMode  Mode
		wantTable bool
		wantInCmd string
	}{
		{"auto", labInfo(), ModeAuto, KernelSupport{}, ModeBoth, true, "iscsi_target_name="},
		{"auto chap", chapInfo(false), ModeAuto, KernelSupport{}, ModeIBFT, true, "iscsi_auto"},
		{"auto chap, no table upgrade", chapInfo(false), ModeAuto, KernelSupport{TableUpgrade: No}, ModeCmdline, false, "iscsi_password="},
		{"cmdline", labInfo(), ModeCmdline, KernelSupport{}, ModeCmdline, false, "iscsi_initiator="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Prepare(Request{
				Entry: "root=UUID=1234 ro", Info: tt.info, Mode: tt.mode, Initrd: osInitrd,
				KernelVersion: testKver, Kernel: tt.kernel,
			})
			if err != nil {
				t.Fatalf("Prepare() error: %v", err)
			}
			if p.Mode != tt.wantMode || (p.Table != nil) != tt.wantTable || (p.EarlyCPIO != nil) != tt.wantTable {
				t.Errorf("Prepare() mode %v table %v, want %v %v", p.Mode, p.Table != nil, tt.wantMode, tt.wantTable)
			}
			if !strings.Contains(p.Cmdline, tt.wantInCmd) || !strings.HasPrefix(p.Cmdline, "root=UUID=1234 ro ") {
				t.Errorf("Cmdline = %q, want it to keep the entry and contain %q", p.Cmdline, tt.wantInCmd)
			}
			if !strings.Contains(strings.Join(p.Notes, "\n"), "boot LUN 1 (RFC 4173 hex) is LUN 1 to Linux") {
				t.Errorf("Notes = %q, want the LUN in both notations", p.Notes)
			}
			for _, n := range p.Notes {
				if strings.Contains(n, "s3cret") {
					t.Errorf("note %q shows the secret", n)
				}
			}
			r, size, err := p.Initrd(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(img) + len(p.EarlyCPIO)); size != want {
				t.Errorf("Initrd size = %d, want %d", size, want)
			}
			buf := make([]byte, size)
			if _, err := r.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if _, data, ok := findCPIOData(buf, "kernel/firmware/acpi/"); ok != tt.wantTable || ok && !bytes.Equal(data, p.Table) {
				t.Errorf("table in the initrd: found %v, want %v", ok, tt.wantTable)
			}
		})
	}

	// A Debian initrd without open-iscsi is refused with the fix.
	bare := inspectBytes(t, cpioOf(without(debianFiles(), "iscsi")...))
	p, err := Prepare(Request{Entry: "root=UUID=1", Info: labInfo(), Initrd: bare})
	if !errors.Is(err, ErrNotReady) || p == nil || p.Capability == nil || !strings.Contains(err.Error(), "apt install open-iscsi") {
		t.Errorf("Prepare(no open-iscsi) = %v, want ErrNotReady with the fix", err)
	}
	// The initrd's own initiator name differs: noted.
	p, err = Prepare(Request{Entry: "", Info: labInfo(), Initrd: osInitrd})
	if err != nil || !strings.Contains(strings.Join(p.Notes, "\n"), "iqn.1993-08.org.debian:01:abcdef") {
		t.Errorf("Prepare() notes = %q, %v; want the overridden initiator name", p.Notes, err)
	}
}

func TestPrepareOverrides(t *testing.T) {
	// A custom initrd (unknown generator) is refused unless a dialect is
	// named; with one, the named generator's items are checked.
	custom := inspectBytes(t, cpioOf(append(without(debianFiles(), "conf/", "scripts/functions"),
		file("init", "#!/bin/sh\n"))...))
	if _, err := Prepare(Request{Info: labInfo(), Initrd: custom}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Prepare(unknown generator) = %v, want ErrNotReady", err)
	}
	p, err := Prepare(Request{Entry: "ro", Info: labInfo(), Initrd: custom, Dialect: debian})
	if err != nil || !strings.Contains(p.Cmdline, "iscsi_target_name=") {
		t.Fatalf("Prepare(Dialect: initramfs-tools) = %+v, %v", p, err)
	}
	// Checked as dracut, the same initrd lacks iscsiadm; NoCheck proceeds
	// and says what was overridden.
	if _, err := Prepare(Request{Info: labInfo(), Initrd: custom, Dialect: dracutLegacy}); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "iscsiadm") {
		t.Errorf("Prepare(Dialect: dracut) = %v, want missing iscsiadm", err)
	}
	p, err = Prepare(Request{Info: labInfo(), Initrd: custom, Dialect: dracutLegacy, NoCheck: true})
	if err != nil || !strings.Contains(p.Cmdline, "netroot=iscsi:") || !strings.Contains(strings.Join(p.Notes, "\n"), "check overridden: missing iscsiadm") {
		t.Errorf("Prepare(NoCheck) = %+v, %v", p, err)
	}
	// No initrd at all (one Inspect could not read): a dialect is required.
	if _, err := Prepare(Request{Info: labInfo()}); err == nil {
		t.Errorf("Prepare(no initrd, no dialect) = nil error")
	}
	p, err = Prepare(Request{Info: labInfo(), Dialect: dracutNM})
	if err != nil || p.Mode != ModeBoth || !strings.Contains(strings.Join(p.Notes, "\n"), "not verified") {
		t.Errorf("Prepare(no initrd, dracut) = %+v, %v", p, err)
	}
}
