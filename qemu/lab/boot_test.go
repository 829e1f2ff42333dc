package lab_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
	"github.com/lunboot/lunboot/qemu/probe"
)

// Bounds for one guest under TCG on a loaded two-core machine.
const (
	bootTimeout   = 4 * time.Minute
	resultTimeout = 4 * time.Minute
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests under TCG (minutes); skipped with -short")
	}
}

// checkLogin checks that the probe logged in with the hand-off from source
// and read the disk's sector 0.
func checkLogin(t *testing.T, r *probe.Result, source string, disk *fixtures.Disk) {
	t.Helper()
	l, ok := r.Login(source)
	if !ok {
		t.Errorf("probe made no login with a %q hand-off; hand-offs %+v", source, r.Handoffs)
		return
	}
	if !l.OK {
		t.Errorf("probe login with the %s hand-off failed: %s", source, l.Error)
		return
	}
	if l.Sector0SHA256 != disk.Sector0SHA256 {
		t.Errorf("login %s: sector 0 sha256 = %s, want %s (fixture %s)", source, l.Sector0SHA256, disk.Sector0SHA256, disk.Name)
	}
	if !l.LoggedOut {
		t.Errorf("login %s: the probe did not log out cleanly", source)
	}
}

// TestProbeDirectBoot boots the probe OS with -kernel/-initrd and each kind
// of hand-off lunboot can give an OS: the probe must log in to the lab's
// tgtd with it and read the fixture's sector 0.
func TestProbeDirectBoot(t *testing.T) {
	skipShort(t)
	fx := labtest.Fixtures(t)
	disk, err := fx.Disk(fixtures.GPTBLS)
	if err != nil {
		t.Fatal(err)
	}
	testenv.GuestSlot(t)
	l := labtest.Start(t, lab.Options{Name: "probe-direct"})
	tg := labtest.Target(t, l)
	server := l.ServerIP().String()
	const initiator = "iqn.2026-11.org.lunboot.lab:probe-direct"

	t.Run("cmdline-dhcp", func(t *testing.T) {
		exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:plain", Images: []string{disk.Path}})
		if err != nil {
			t.Fatal(err)
		}
		d := labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})
		defer d.Stop()
		entry, _ := disk.Entry("bls-default")
		cmdline := entry.Cmdline + " ip=dhcp" +
			" netroot=iscsi:" + server + "::3260:1:" + exp.IQN + " rd.iscsi.initiator=" + initiator +
			" iscsi_initiator=" + initiator + " iscsi_target_name=" + exp.IQN + " iscsi_target_ip=" + server + " iscsi_target_port=3260"
		vm := labtest.VM(t, l, lab.VMConfig{Name: "dhcp", Kernel: fx.Kernel, Initrd: fx.Initrd, Cmdline: cmdline})
		start := labtest.Expect(t, vm, bootTimeout, probe.StartPattern)
		if start.Groups[1] != fixtures.GPTBLS {
			t.Errorf("start marker fixture = %q, want %q", start.Groups[1], fixtures.GPTBLS)
		}
		r, _ := labtest.ProbeResult(t, vm, resultTimeout)
		if r.Entry != "bls-default" {
			t.Errorf("probe entry = %q, want bls-default", r.Entry)
		}
		if r.Net == nil || r.Net.Method != "dhcp" || r.Net.RootPath != exp.RootPath() {
			t.Errorf("probe network = %+v, want DHCP with root-path %q", r.Net, exp.RootPath())
		}
		checkLogin(t, r, "dracut", disk)
		checkLogin(t, r, "initramfs-tools", disk)
		if l, _ := r.Login("dracut"); l.Initiator != initiator || l.LUN != "1" || l.LUNScanned {
			t.Errorf("dracut login = initiator %q LUN %q (scanned %v), want %q LUN 1 as handed over", l.Initiator, l.LUN, l.LUNScanned, initiator)
		}
		if r.IBFT != nil {
			t.Errorf("probe found an iBFT (%+v) where none was given", r.IBFT)
		}
		if err := vm.Wait(context.Background()); err != nil {
			t.Errorf("probe did not power off cleanly: %v", err)
		}
		if n, err := tg.Sessions(exp.TID); err != nil || n != 0 {
			t.Errorf("tgtd sessions after the probe = %d, %v; want 0 (it logs out)", n, err)
		}
	})

	t.Run("mutual-chap", func(t *testing.T) {
		chap := &lab.CHAP{Username: "probe-user", Secret: "s3cret-forward-1", TargetUsername: "probe-target", TargetSecret: "s3cret-reverse-2"}
		exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:chap", Images: []string{disk.Path}, CHAP: chap})
		if err != nil {
			t.Fatal(err)
		}
		d := labtest.DHCP(t, l, lab.DHCPConfig{})
		defer d.Stop()
		cmdline := "console=ttyS0 panic=-1 lunboot.fixture=manual ip=dhcp" +
			" iscsi_initiator=" + initiator + " iscsi_target_name=" + exp.IQN + " iscsi_target_ip=" + server +
			" iscsi_username=" + chap.Username + " iscsi_password=" + chap.Secret +
			" iscsi_in_username=" + chap.TargetUsername + " iscsi_in_password=" + chap.TargetSecret
		vm := labtest.VM(t, l, lab.VMConfig{Name: "chap", Kernel: fx.Kernel, Initrd: fx.Initrd, Cmdline: cmdline})
		r, m := labtest.ProbeResult(t, vm, bootTimeout+resultTimeout)
		checkLogin(t, r, "initramfs-tools", disk)
		if lg, _ := r.Login("initramfs-tools"); lg.CHAP != "mutual" {
			t.Errorf("login CHAP = %q, want mutual", lg.CHAP)
		}
		// The secrets were on the kernel command line, which the kernel
		// echoes; neither the probe nor the lab's logs may show them.
		vm.Wait(context.Background())
		conLog, _ := os.ReadFile(vm.ConsoleLog())
		cmdLog, _ := os.ReadFile(l.LogPath("commands.log"))
		for what, text := range map[string]string{"console": vm.Console(), "console log": string(conLog),
			"commands.log": string(cmdLog), "result line": m.Groups[0]} {
			for _, s := range []string{chap.Secret, chap.TargetSecret} {
				if strings.Contains(text, s) {
					t.Errorf("%s shows secret %q", what, s)
				}
			}
		}
		if !strings.Contains(r.Cmdline, "iscsi_password=***") {
			t.Errorf("result cmdline %q does not show the masked password", r.Cmdline)
		}
	})

	t.Run("acpi-ibft-static", func(t *testing.T) {
		exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:ibft", Images: []string{disk.Path}})
		if err != nil {
			t.Fatal(err)
		}
		// No DHCP server: the probe must take its address from the iBFT.
		mac := l.Taps()[0].MAC
		guest := netip.AddrFrom4([4]byte{l.ServerIP().As4()[0], l.ServerIP().As4()[1], l.ServerIP().As4()[2], 50})
		table := ibft.Table{
			Signature: ibft.SignatureACPI,
			Initiator: ibft.Initiator{Flags: ibft.FlagValid | ibft.FlagBoot, Name: initiator},
			NICs: []ibft.NIC{{
				Flags: ibft.FlagValid | ibft.FlagBoot | ibft.FlagGlobal, IP: netip.PrefixFrom(guest, 24),
				Origin: ibft.OriginManual, MAC: mac, PCI: ibft.BDF{Device: lab.NICPCIAddr},
			}},
			Targets: []ibft.Target{{
				Flags: ibft.FlagValid | ibft.FlagBoot, Addr: exp.Portal, LUN: sam.LUNFromLinux(1), Name: exp.IQN,
			}},
		}
		b, err := table.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "ibft.aml")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		vm := labtest.VM(t, l, lab.VMConfig{Name: "ibft", Kernel: fx.Kernel, Initrd: fx.Initrd,
			Cmdline: "console=ttyS0 panic=-1 lunboot.fixture=manual iscsi_auto", ACPITables: []string{path}})
		r, _ := labtest.ProbeResult(t, vm, bootTimeout+resultTimeout)
		if r.IBFT == nil {
			t.Fatalf("probe saw no iBFT; errors %v", r.Errors)
		}
		if r.IBFT.Signature != ibft.SignatureACPI || r.IBFT.Initiator["initiator-name"] != initiator {
			t.Errorf("iBFT signature %q initiator %q, want %q and %q", r.IBFT.Signature, r.IBFT.Initiator["initiator-name"], ibft.SignatureACPI, initiator)
		}
		if len(r.IBFT.NICs) != 1 || !strings.EqualFold(r.IBFT.NICs[0].Attrs["mac"], mac.String()) || r.IBFT.NICs[0].Attrs["device"] != "0000:00:03.0" {
			t.Errorf("iBFT NICs = %+v, want one with MAC %s linked to PCI 0000:00:03.0", r.IBFT.NICs, mac)
		}
		if r.Net == nil || r.Net.Method != "ibft" || r.Net.Address != guest.String()+"/24" {
			t.Errorf("probe network = %+v, want the iBFT's static %s/24", r.Net, guest)
		}
		if len(r.Firmware) != 1 || r.Firmware[0] != "iscsi_auto" {
			t.Errorf("firmware parameters = %q, want [iscsi_auto]", r.Firmware)
		}
		checkLogin(t, r, "ibft", disk)
		if lg, _ := r.Login("ibft"); lg.LUN != "1" || lg.LUNScanned {
			t.Errorf("iBFT login read LUN %q (scanned %v), want the iBFT's LUN 1", lg.LUN, lg.LUNScanned)
		}
	})
}

// TestIPXESanboot boots the MBR fixture the way a NIC boot ROM would:
// SeaBIOS runs Debian's iPXE ROM, which gets the root-path (and the
// initiator name, option 203) by DHCP, sanboots the LUN from tgtd, syslinux
// loads the probe OS, and the probe logs in again with the iBFT iPXE left in
// base memory. It also reports the boot times lunboot will be compared with.
func TestIPXESanboot(t *testing.T) {
	skipShort(t)
	labtest.Require(t)
	testenv.RequireFile(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "make deps (Debian package ipxe-qemu)")
	fx := labtest.Fixtures(t)
	disk, err := fx.Disk(fixtures.MBR)
	if err != nil {
		t.Fatal(err)
	}
	testenv.GuestSlot(t)
	l := labtest.Start(t, lab.Options{Name: "ipxe"})
	tg := labtest.Target(t, l)
	exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:mbr", Images: []string{disk.Path}})
	if err != nil {
		t.Fatal(err)
	}
	const initiator = "iqn.2026-11.org.lunboot.lab:ipxe-client"
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath(), InitiatorName: initiator})
	vm := labtest.VM(t, l, lab.VMConfig{Name: "ipxe", NetBoot: true})

	san := labtest.Expect(t, vm, bootTimeout, regexp.MustCompile(`Booting from SAN device 0x80`))
	syslinux := labtest.Expect(t, vm, bootTimeout, regexp.MustCompile(`SYSLINUX \S+`))
	start := labtest.Expect(t, vm, bootTimeout, probe.StartPattern)
	r, done := labtest.ProbeResult(t, vm, resultTimeout)
	t.Logf("iPXE sanboot times from QEMU start: SAN boot +%s, syslinux +%s, probe OS running +%s, login proven +%s",
		san.At.Round(time.Millisecond), syslinux.At.Round(time.Millisecond), start.At.Round(time.Millisecond), done.At.Round(time.Millisecond))

	if r.Fixture != fixtures.MBR || r.Entry != "syslinux" {
		t.Errorf("booted entry %s/%s, want %s/syslinux", r.Fixture, r.Entry, fixtures.MBR)
	}
	if r.IBFT == nil {
		t.Fatalf("the probe saw no iBFT after iPXE sanboot; errors %v", r.Errors)
	}
	if got := r.IBFT.Initiator["initiator-name"]; got != initiator {
		t.Errorf("iBFT initiator-name = %q, want %q (DHCP option 203)", got, initiator)
	}
	if len(r.IBFT.Targets) == 0 || r.IBFT.Targets[0].Attrs["target-name"] != exp.IQN {
		t.Errorf("iBFT targets = %+v, want %s", r.IBFT.Targets, exp.IQN)
	}
	if len(r.IBFT.NICs) == 0 || !strings.EqualFold(r.IBFT.NICs[0].Attrs["mac"], vm.MAC().String()) {
		t.Errorf("iBFT NICs = %+v, want MAC %s", r.IBFT.NICs, vm.MAC())
	}
	checkLogin(t, r, "ibft", disk)
	if lg, _ := r.Login("ibft"); lg.Initiator != initiator {
		t.Errorf("iBFT login as %q, want %q", lg.Initiator, initiator)
	}
	t.Logf("iBFT from iPXE: %s %s/%s initiator %v nics %v targets %v", r.IBFT.Signature, r.IBFT.OEMID, r.IBFT.OEMTableID,
		r.IBFT.Initiator, r.IBFT.NICs, r.IBFT.Targets)
	if ip := net.ParseIP(strings.Split(r.Net.Address, "/")[0]); ip == nil || !l.Prefix().Contains(netip.MustParseAddr(ip.String())) {
		t.Errorf("probe address %q not in the lab's %s", r.Net.Address, l.Prefix())
	}
}

// TestOVMFDirectBoot starts lunboot's image under UEFI firmware (OVMF)
// with -kernel/-initrd, as QEMU hands a kernel to OVMF: the kernel must
// start through its EFI stub (it reports the EFI system table OVMF gave
// it) and lunboot must start. Nothing is served, so it stops there.
func TestOVMFDirectBoot(t *testing.T) {
	skipShort(t)
	testenv.RequireFile(t, qemuvm.OVMFCode, "make deps (Debian package ovmf)")
	kernel, initrd := labtest.Image(t)
	testenv.GuestSlot(t)
	l := labtest.Start(t, lab.Options{Name: "ovmf-direct"})
	vm := labtest.VM(t, l, lab.VMConfig{Name: "ovmf", Firmware: qemuvm.UEFI, Kernel: kernel, Initrd: initrd,
		Cmdline: "console=ttyS0 panic=-1"})
	efi := labtest.Expect(t, vm, bootTimeout, regexp.MustCompile(`efi: EFI v\d+\.\d+ by (EDK II|.*)`))
	start := labtest.Expect(t, vm, bootTimeout, regexp.MustCompile(regexp.QuoteMeta(bootlog.StartLine)))
	t.Logf("under OVMF: kernel saw %q at +%s, lunboot started at +%s", efi.Groups[0], efi.At.Round(time.Second), start.At.Round(time.Second))
	vm.Kill()
}
