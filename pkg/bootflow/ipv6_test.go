package bootflow

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/u-root/u-root/pkg/cpio"
)

// testDracutInitrd is a dracut image with the iscsi and network-legacy
// modules (Debian 12's dracut 059 layout), as a newc archive.
func testDracutInitrd(t testing.TB) []byte {
	m := "usr/lib/modules/" + testRelease + "/"
	recs := []cpio.Record{
		cpio.Symlink("bin", "usr/bin"), cpio.Symlink("sbin", "usr/sbin"), cpio.Symlink("lib", "usr/lib"),
		cpio.StaticFile("usr/lib/dracut/modules.txt", "systemd\nbase\nnet-lib\nnetwork-legacy\nnetwork\niscsi\nrootfs-block\n", 0o644),
		cpio.StaticFile("usr/lib/dracut/dracut-059", "", 0o644),
		cpio.StaticFile("usr/lib/dracut/hooks/cmdline/90parse-iscsiroot.sh", "#!/bin/sh\n", 0o755),
		cpio.StaticFile("usr/sbin/iscsiroot", "\x7fELF", 0o755),
		cpio.StaticFile("usr/sbin/iscsiadm", "\x7fELF", 0o755),
		cpio.StaticFile("usr/sbin/iscsid", "\x7fELF", 0o755),
		cpio.StaticFile("usr/sbin/ifup", "\x7fELF", 0o755),
		cpio.StaticFile("usr/sbin/dhclient", "\x7fELF", 0o755),
		cpio.StaticFile(m+"kernel/drivers/scsi/iscsi_tcp.ko", "ko", 0o644),
		cpio.StaticFile(m+"kernel/drivers/firmware/iscsi_ibft.ko", "ko", 0o644),
		cpio.StaticFile(m+"kernel/drivers/net/virtio_net.ko", "ko", 0o644),
		cpio.StaticFile(m+"modules.builtin", "kernel/lib/crc32c.ko\n", 0o644),
	}
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// ipv6Machine is the lab's machine with a network stage that answers as
// DHCPv6 does in the IPv6 lab: the address from an IA_NA with the
// advertised /64, the root-path from option 59. It records the IPv6 mode
// the boot asked for.
func ipv6Machine(l *lab, mode *netconf.IPv6Mode) Machine {
	m := l.machine()
	m.Network = func(ctx context.Context, o netconf.Options) (*netconf.Config, error) {
		*mode = o.IPv6
		l.record("network")
		mac, _ := net.ParseMAC("52:54:00:12:34:56")
		return &netconf.Config{
			Link:     netconf.Link{Name: "eth0", MAC: mac, Driver: "virtio_net", Module: "virtio_net", PCI: "0000:00:03.0"},
			Origin:   netconf.OriginDHCPv6,
			Address:  netip.MustParsePrefix("fd00:77::57/64"),
			Gateway:  netip.MustParseAddr("fe80::1"),
			ServerID: "DUID-LL{HWType=Ethernet HWAddr=02:00:00:00:00:01}",
			RootPath: netconf.Sourced{Value: "iscsi:[fd00:77::1]::3260:0:" + testTarget, Source: netconf.SourceOption59},
		}, nil
	}
	return m
}

// TestBootIPv6 boots with ip=dhcp6 and nothing else: the network stage is
// asked for DHCPv6, the target comes from option 59 with its bracketed
// IPv6 portal, and the dracut initrd is handed ip=dhcp6, the bracketed
// netroot= and an iBFT.
func TestBootIPv6(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.initrd = testDracutInitrd(t)
		l.tgt.LUN(0).WriteAt(l.initrd, initrdOff)
		var mode netconf.IPv6Mode
		con := &recorder{}
		err := Boot(context.Background(), Options{
			Console: con, Cmdline: "ip=dhcp6", Sysfs: t.TempDir(), TempDir: t.TempDir(),
			NoExec: true, SkipModules: true, Machine: ipv6Machine(l, &mode),
		})
		if err != nil {
			t.Fatalf("Boot() = %v; console:\n%s", err, con.text())
		}
		if mode != netconf.IPv6DHCP {
			t.Errorf("network stage asked for %v, want dhcp6", mode)
		}
		for _, line := range []string{
			"network: IPv6 by DHCPv6",
			"ok network: eth0 (52:54:00:12:34:56, virtio_net) fd00:77::57/64 via fe80::1, DHCPv6 in ",
			"root-path from option 59 (DHCPv6)",
			"ok target: " + testTarget + " LUN 0 (Linux LUN 0) at [fd00:77::1]:3260 as iqn.",
			"ok handoff: dracut",
		} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		c := l.loaded.cmdline
		for _, want := range []string{" netroot=iscsi:[fd00:77::1]::3260:0:" + testTarget + " ", " ip=dhcp6 ", " BOOTIF=01-52-54-00-12-34-56 "} {
			if !strings.Contains(c+" ", want) {
				t.Errorf("kexec command line %q lacks %q", c, strings.TrimSpace(want))
			}
		}
		if !bytes.Contains(l.loaded.initrd, []byte("kernel/firmware/acpi/")) {
			t.Errorf("kexec initrd carries no iBFT")
		}
	})
}

// TestBootIPv6InitramfsTools: the same boot with an initramfs-tools initrd
// stops in the handoff stage, before kexec, saying why.
func TestBootIPv6InitramfsTools(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		var mode netconf.IPv6Mode
		con := &recorder{}
		err := Boot(context.Background(), Options{
			Console: con, Cmdline: "ip=dhcp6", Sysfs: t.TempDir(), TempDir: t.TempDir(),
			NoExec: true, SkipModules: true, Machine: ipv6Machine(l, &mode),
		})
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "handoff" || !errors.Is(err, handoff.ErrInitramfsToolsIPv6) {
			t.Fatalf("Boot() = %v, want a handoff StageError wrapping ErrInitramfsToolsIPv6; console:\n%s", err, con.text())
		}
		if l.loaded.kernel != nil {
			t.Errorf("a kernel was kexec-loaded")
		}
		if !strings.Contains(con.text(), "klibc ipconfig") {
			t.Errorf("console does not say why:\n%s", con.text())
		}
		if strings.Contains(se.Check, "lunboot.force=1") || !strings.Contains(se.Check, "over IPv4") {
			t.Errorf("the check to print is %q: want it to name IPv4 and not suggest lunboot.force=1, which cannot help an IPv4-only initrd", se.Check)
		}
	})
}
