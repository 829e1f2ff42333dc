package handoff

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/ibft"
)

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
	// rd.iscsi.param= cannot reach initramfs-tools' script: noted.
	withParams := labInfo()
	withParams.ISCSIParams = []string{"node.session.timeo.replacement_timeout=30"}
	p, err = Prepare(Request{Entry: "", Info: withParams, Initrd: osInitrd})
	if err != nil || !strings.Contains(strings.Join(p.Notes, "\n"), "rd.iscsi.param= node parameter(s) not passed: initramfs-tools") || strings.Contains(p.Cmdline, "replacement_timeout") {
		t.Errorf("Prepare(debian, params) notes = %q, cmdline %q, %v; want a note that they are not passed", p.Notes, p.Cmdline, err)
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
	// Checked as dracut, the same initrd lacks iscsiadm; Force proceeds
	// and says what was overridden.
	if _, err := Prepare(Request{Info: labInfo(), Initrd: custom, Dialect: dracutLegacy}); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "iscsiadm") {
		t.Errorf("Prepare(Dialect: dracut) = %v, want missing iscsiadm", err)
	}
	p, err = Prepare(Request{Info: labInfo(), Initrd: custom, Dialect: dracutLegacy, Force: true})
	if err != nil || !strings.Contains(p.Cmdline, "netroot=iscsi:") || !strings.Contains(strings.Join(p.Notes, "\n"), "check overridden: missing iscsiadm") {
		t.Errorf("Prepare(Force) = %+v, %v", p, err)
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

// TestPrepareMorePaths: the other paths reach the OS only with
// dm-multipath in its initrd or lunboot.multipath=1, then as one
// netroot= per path (the one in use first) and the iBFT's second target.
func TestPrepareMorePaths(t *testing.T) {
	plain := inspectBytes(t, cpioOf(dracutFiles()...))
	mp := inspectBytes(t, cpioOf(append(dracutFiles(),
		exe("usr/sbin/multipathd"), file("usr/lib/modules/"+testKver+"/kernel/drivers/md/dm-multipath.ko", "m"))...))
	if plain.HasMultipath() || !mp.HasMultipath() {
		t.Fatalf("HasMultipath: plain %v, with multipath-tools %v; want false, true", plain.HasMultipath(), mp.HasMultipath())
	}
	info := func() *Info {
		in := labInfo()
		in.MorePaths = []Target{{Addr: netip.MustParseAddrPort("10.0.2.3:3260"), TPGT: 2}}
		return in
	}
	for _, tt := range []struct {
		name    string
		initrd  *Initrd
		ask     bool
		netroot int
		targets int
	}{
		{"no multipath in the initrd", plain, false, 1, 1},
		{"lunboot.multipath=1", plain, true, 2, 2},
		{"dm-multipath in the initrd", mp, false, 2, 2},
	} {
		p, err := Prepare(Request{Entry: "root=UUID=1", Info: info(), Initrd: tt.initrd, Mode: ModeBoth, Multipath: tt.ask, KernelVersion: testKver, Force: true})
		if err != nil {
			t.Errorf("%s: Prepare() = %v", tt.name, err)
			continue
		}
		if n := strings.Count(p.Cmdline, "netroot="); n != tt.netroot || !strings.Contains(p.Cmdline, "netroot=iscsi:10.0.2.2::3260:1:") {
			t.Errorf("%s: cmdline %q has %d netroot=, want %d, the path in use first", tt.name, p.Cmdline, n, tt.netroot)
		}
		if tt.netroot == 2 && strings.Index(p.Cmdline, "10.0.2.2") > strings.Index(p.Cmdline, "10.0.2.3") {
			t.Errorf("%s: the path in use is not first: %q", tt.name, p.Cmdline)
		}
		var tbl ibft.Table
		if err := tbl.UnmarshalBinary(p.Table); err != nil {
			t.Fatalf("%s: table: %v", tt.name, err)
		}
		if len(tbl.Targets) != tt.targets || tbl.Targets[0].Addr.String() != "10.0.2.2:3260" || tbl.Targets[0].Flags&ibft.FlagBoot == 0 {
			t.Errorf("%s: iBFT targets %+v, want %d, the boot target first", tt.name, tbl.Targets, tt.targets)
		}
		if tt.targets == 2 && (tbl.Targets[1].Addr.String() != "10.0.2.3:3260" || tbl.Targets[1].Flags&ibft.FlagBoot != 0) {
			t.Errorf("%s: second iBFT target %+v, want 10.0.2.3:3260 without the boot flag", tt.name, tbl.Targets[1])
		}
	}
}
