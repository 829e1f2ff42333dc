package qemuvm

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/proc"
	"github.com/lunboot/lunboot/internal/testenv"
)

func TestCommand(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	base := []string{"-accel", "tcg", "-cpu", DefaultCPU, "-m", DefaultMemory, "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc,graphics=off",
		"-serial", "stdio", "-monitor", "none", "-no-reboot"}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{
			name: "direct boot, console added",
			cfg:  Config{Kernel: "/k", Initrd: "/i", Cmdline: "quiet"},
			want: slices.Concat([]string{"qemu-system-x86_64"}, base,
				[]string{"-kernel", "/k", "-append", "console=ttyS0 quiet", "-initrd", "/i"}),
		},
		{
			name: "lab guest in a namespace",
			cfg: Config{
				Wrap: []string{"ip", "netns", "exec", "ns"}, Name: "lunboot-vm0", Memory: "2G", CPUs: 2, CPU: "max",
				Kernel: "/k", Cmdline: "console=ttyS1 x=1",
				NICs:       []NIC{{Tap: "tap0", MAC: mac}, {Tap: "tap1", Model: "e1000"}},
				ACPITables: []string{"/t,1"}, Monitor: "/run/m.sock", Args: []string{"-serial", "file:/x"},
			},
			want: []string{"ip", "netns", "exec", "ns", "qemu-system-x86_64", "-name", "lunboot-vm0",
				"-accel", "tcg", "-cpu", "max", "-m", "2G", "-smp", "2",
				"-nodefaults", "-no-user-config", "-display", "none", "-machine", "pc,graphics=off",
				"-serial", "stdio", "-monitor", "unix:/run/m.sock,server=on,wait=off", "-no-reboot",
				"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
				"-device", "virtio-net-pci,addr=0x3,mac=52:54:00:01:02:03,netdev=n0",
				"-netdev", "tap,id=n1,ifname=tap1,script=no,downscript=no",
				"-device", "e1000,addr=0x4,netdev=n1",
				"-kernel", "/k", "-append", "console=ttyS1 x=1",
				"-acpitable", "file=/t,,1", "-serial", "file:/x"},
		},
		{
			name: "network boot, unplugged NIC, drives",
			cfg: Config{NetBoot: true, NICs: []NIC{{MAC: mac, Slot: 5}},
				Drives: []Drive{{File: "/d.img"}, {File: "/e.qcow2", Format: "qcow2", Interface: "ide", ReadOnly: true, Snapshot: true}}},
			want: slices.Concat([]string{"qemu-system-x86_64"}, base, []string{
				"-device", "virtio-net-pci,addr=0x5,mac=52:54:00:01:02:03,bootindex=1",
				"-drive", "file=/d.img,format=raw,if=virtio",
				"-drive", "file=/e.qcow2,format=qcow2,if=ide,readonly=on,snapshot=on",
				"-boot", "n"}),
		},
		{
			name: "UEFI, direct boot",
			cfg:  Config{Firmware: UEFI, UEFIVars: "/w/vars,1.fd", Kernel: "/k"},
			want: slices.Concat([]string{"qemu-system-x86_64"}, base, []string{
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
				"-drive", "if=pflash,format=raw,unit=1,file=/w/vars,,1.fd",
				"-kernel", "/k", "-append", "console=ttyS0"}),
		},
		{
			name: "UEFI, disk boot",
			cfg:  Config{Firmware: UEFI, UEFIVars: "/v", DiskBoot: true, Drives: []Drive{{File: "/esp.img"}}},
			want: slices.Concat([]string{"qemu-system-x86_64"}, base, []string{
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
				"-drive", "if=pflash,format=raw,unit=1,file=/v",
				"-drive", "file=/esp.img,format=raw,if=none,id=disk0",
				"-device", "virtio-blk-pci,drive=disk0,bootindex=1",
				"-boot", "c"}),
		},
	}
	for _, tt := range tests {
		got, err := tt.cfg.Command()
		if err != nil {
			t.Errorf("%s: Command() = %v", tt.name, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: Command() =\n  %q\nwant\n  %q", tt.name, got, tt.want)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Kernel: "/k", NetBoot: true, NICs: []NIC{{}}},
		{NetBoot: true},
		{NetBoot: true, Initrd: "/i", NICs: []NIC{{}}},
		{Kernel: "/k", Firmware: Firmware(7)},
		{Kernel: "/k", Firmware: UEFI},
		{DiskBoot: true},
		{DiskBoot: true, Kernel: "/k", Drives: []Drive{{File: "/d"}}},
		{Kernel: "/k", Drives: []Drive{{}}},
	} {
		if got, err := c.Command(); err == nil {
			t.Errorf("%+v: Command() = %q, want an error", c, got)
		}
	}
}

func TestParseFirmware(t *testing.T) {
	for _, f := range []Firmware{BIOS, UEFI} {
		got, err := ParseFirmware(strings.ToLower(f.String()))
		if err != nil || got != f {
			t.Errorf("ParseFirmware(%q) = %v, %v; want %v", strings.ToLower(f.String()), got, err, f)
		}
	}
	if _, err := ParseFirmware("coreboot"); err == nil || !strings.Contains(err.Error(), "coreboot") {
		t.Errorf("ParseFirmware(coreboot) = %v, want an error naming it", err)
	}
}

func TestNewUEFIVars(t *testing.T) {
	want, err := os.ReadFile(OVMFVars)
	if err != nil {
		testenv.Missing(t, "OVMF (Debian package ovmf): "+err.Error())
	}
	path := filepath.Join(t.TempDir(), "vars.fd")
	if err := NewUEFIVars(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(want) {
		t.Errorf("copy of %s: %d bytes, %v; want the template's %d", OVMFVars, len(got), err, len(want))
	}
	if err := NewUEFIVars(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("NewUEFIVars into a missing folder succeeded")
	}
}

// TestRunBounded runs a stand-in emulator that never exits and checks that
// Run kills it when ctx ends, and passes the serial console through.
func TestRunBounded(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Run(ctx, Config{Binary: fake, Kernel: "/k"}, proc.IO{Stdout: &out})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run returned after %v", d)
	}
	if !strings.Contains(out.String(), "-kernel /k -append console=ttyS0") {
		t.Errorf("console = %q, want the fake's echo of its arguments", out.String())
	}
}
