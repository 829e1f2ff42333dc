// Command demo shows lunboot doing its job: a diskless QEMU machine powers
// on with the lunboot image, gets the root-path by DHCP option 17, logs in
// to the lab's iSCSI target, finds the OS on the LUN and kexecs it with a
// hand-off; the OS's own initrd logs in again and boots from the LUN.
//
// Usage:
//
//	demo [-out out] [-firmware bios|uefi] [-image kernel|efi|linuxboot] [-os debian|dracut|noiscsi|probe] [-target tgtd|lio] [-append ARGS] [-quiet]
//	demo -scenario vlan|dns|static|ipv6|multipath [-os debian|dracut|probe]
//	demo -os probe [-fixture gpt-bls|mbr|grub-ext4] [-ipxe]
//	demo -os probe -firmware uefi -lockdown
//	demo -pxe [-fixture gpt-bls|mbr|grub-ext4]
//	demo -scenario multipath [-os probe] [-fixture …]
//	demo -golden N
//
// -golden N boots N clients (1–4) at once from one golden LUN, read-only
// on the target, each with lunboot.overlay=ram: every OS proves its root
// is nbd0 served by its carried lunboot, writes its own marker and sees no
// other's, and powers off; the golden LUN's checksum is unchanged
// (docs/handoff.md, "Golden images").
//
// -firmware picks the machine's firmware: bios (SeaBIOS, the default) or
// uefi (OVMF, Debian package ovmf), which starts lunboot's kernel through
// its EFI stub. Under uefi, -os debian boots the Debian disk laid out as
// Debian's UEFI installer leaves it (an ESP whose GRUB stub lunboot
// follows); -ipxe and -pxe are BIOS only (SeaBIOS's iPXE ROM) and refused.
//
// With -os debian (the default) the disk is the lab's Debian 12 system
// with initramfs-tools and open-iscsi (`make distro`, package qemu/distro).
// The demo streams the console, waits for the booted Debian's proof line
// and its login prompt, stops the machine and prints a summary: lunboot's
// stages and their times, the command line and iBFT the OS received, its
// iSCSI session and root device.
//
// With -os dracut the disk is the same Debian system with a dracut initrd
// (network-legacy).
//
// -scenario boots a Debian disk over one of the lab networks of issue 14:
// vlan (the target and DHCP only on tagged VLAN 100; the dracut disk, since
// an initramfs-tools initrd cannot configure a VLAN), dns (the portal named
// by host name, resolved through the lease's DNS server), static (no
// DHCP server at all, a static ip= and netroot=), ipv6 (an IPv6-only lab,
// the dracut disk) and multipath (two portals, the first killed; the probe
// OS). Combinations that cannot work are refused by name.
//
// -target lio serves the Debian disk from LIO, the Linux kernel's target, in
// the lab's target VM (a second QEMU guest), as a storage appliance would:
// the disk at LUN 0 and an ACL admitting lunboot's default initiator name.
// tgtd is the default; -target lio goes with -os debian only (the probe,
// iPXE and PXE demos run on tgtd).
//
// -image picks which of lunboot's files boots: kernel (the default:
// out/vmlinuz and out/lunboot.cpio.xz with -kernel/-initrd), efi
// (out/lunboot.efi from `make efi`, on a local disk's ESP as
// \EFI\BOOT\BOOTX64.EFI, with its built-in command line; -firmware uefi
// only, no -append) or linuxboot (out/linuxboot.bzImage from `make
// linuxboot`, alone, as a LinuxBoot or coreboot payload is entered). efi
// and linuxboot boot -os debian (linuxboot also -os probe under BIOS, with
// or without -ipxe); the refused combinations are named.
//
// With -os probe the disk is a fixture carrying the probe OS (`make
// fixtures`), which logs in again with what it was handed and reports; -ipxe
// then boots the same MBR disk with iPXE's sanboot for comparison.
//
// -lockdown (with -os probe -firmware uefi) boots under Secure Boot and
// kernel lockdown: OVMF with Debian's snakeoil keys enrolled, lunboot's
// kernel re-signed with the snakeoil key, lockdown=integrity on lunboot's
// command line and (lunboot.append=) the OS's, and the gpt-bls-snakeoil
// disk, whose probe kernel carries the snakeoil signature that lunboot's
// locked-down kexec_file_load checks. It exits 0 only when the OS reports
// itself locked down, found no iBFT and logged in from the command line.
//
// With -pxe the probe OS boots through the PXE chain of docs/deploy.md, from
// the files in docs/dhcp: the guest's iPXE ROM gets lunboot.ipxe over TFTP
// from a dnsmasq configured with docs/dhcp/dnsmasq.conf, the script loads
// lunboot, and only lunboot gets the root-path. Run it from the
// repository's top folder.
//
// With -scenario the demo sets up one of the SAN networks of issue 14 and
// boots it to the OS's proof: multipath (two tgtd on two addresses of the
// target host serving one disk; the first is killed at lunboot's nbd stage
// line and the boot goes on through the second). A scenario boots the
// -os values it supports and refuses the others by name.
//
// It needs root (network namespaces), the Debian packages `make deps`
// installs and the image `make image` builds (out/vmlinuz,
// out/lunboot.cpio.xz). Everything runs in a private network namespace that
// is removed on exit, also on ^C. It exits 0 when the OS proved it booted
// from the LUN, and otherwise non-zero with the lab's log folder named.
// `make demo` runs it.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	out, osName, fixture, appendArgs, scenario string
	image, cpio, target                        string
	ipxe, pxe, quiet, lockdown                 bool
	runs, golden                               int
	firmware                                   qemuvm.Firmware
	stdout                                     io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{stdout: stdout}
	fs.StringVar(&o.out, "out", "out", "build output folder (image, fixtures, lab logs)")
	fs.StringVar(&o.osName, "os", "debian", "what to boot: debian (the Debian 12 disk of `make distro`, initramfs-tools), dracut (the same with a dracut initrd), noiscsi (its copy without iSCSI in the initrd, booted by carry-in) or probe (a fixture with the probe OS)")
	fs.StringVar(&o.scenario, "scenario", "", "boot a Debian disk over a lab network of issue 14: "+scenarioNames())
	fs.StringVar(&o.fixture, "fixture", fixtures.GPTBLS, "with -os probe, the disk to boot: "+strings.Join([]string{fixtures.GPTBLS, fixtures.MBR, fixtures.GRUBExt4}, ", "))
	fs.StringVar(&o.appendArgs, "append", "", "extra kernel arguments for the lunboot image")
	fs.StringVar(&o.cpio, "cpio", "", "with -image kernel, the lunboot initramfs to boot (default <out>/lunboot.cpio.xz), for comparing builds of it")
	fs.StringVar(&o.target, "target", "tgtd", "the iSCSI target serving the disk: tgtd (in the lab's namespace) or lio (the Linux kernel's target in a VM; -os debian only)")
	fs.BoolVar(&o.ipxe, "ipxe", false, "with -os probe, also boot the MBR disk with iPXE sanboot and compare the times")
	fs.BoolVar(&o.pxe, "pxe", false, "boot the probe OS through the documented PXE chain (docs/deploy.md): iPXE, lunboot.ipxe over TFTP, lunboot")
	fs.BoolVar(&o.quiet, "quiet", false, "do not stream the guests' consoles")
	fs.BoolVar(&o.lockdown, "lockdown", false, "with -os probe -firmware uefi: Secure Boot on (OVMF with Debian's snakeoil keys, lunboot's kernel re-signed with them), lockdown=integrity for lunboot and the OS, and the gpt-bls-snakeoil disk; exits 0 only when the OS reports itself locked down and got its target from the command line")
	fs.IntVar(&o.golden, "golden", 0, "boot this many clients (1–4) at once from one read-only golden LUN with lunboot.overlay=ram (the Debian disk; BIOS, tgtd)")
	fs.IntVar(&o.runs, "runs", 1, "boot this many times (with -os probe, each path; not with -pxe, -golden or -scenario multipath) and give medians and ranges in the timeline")
	firmware := fs.String("firmware", "bios", "the machine's firmware: bios (SeaBIOS) or uefi (OVMF)")
	fs.StringVar(&o.image, "image", imageKernel, "what boots: kernel (out/vmlinuz + out/lunboot.cpio.xz), efi (out/lunboot.efi from an ESP; uefi only) or linuxboot (out/linuxboot.bzImage alone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.firmware, err = qemuvm.ParseFirmware(*firmware); err != nil {
		return fmt.Errorf("-firmware: %w", err)
	}
	if o.firmware == qemuvm.UEFI {
		// The iPXE chains boot SeaBIOS's iPXE ROM (legacy sanboot of the
		// MBR disk, the documented PXE recipe); under OVMF they are not
		// what the docs describe, and untested.
		switch {
		case o.pxe:
			return errors.New("-firmware uefi -pxe: the documented PXE chain is tested under BIOS only; use -firmware bios")
		case o.ipxe:
			return errors.New("-firmware uefi -ipxe: iPXE's sanboot of the MBR disk needs BIOS; use -firmware bios")
		}
	}
	switch o.target {
	case "tgtd":
	case "lio":
		if o.pxe || o.osName != "debian" || o.ipxe || o.scenario != "" || o.firmware != qemuvm.BIOS || o.image != imageKernel {
			return fmt.Errorf("-target lio boots the Debian disk under BIOS with -image kernel only: it does not go with -os %s, -scenario, -firmware uefi, -image efi|linuxboot, -pxe or -ipxe (those demos run on tgtd)", o.osName)
		}
	default:
		return fmt.Errorf("-target %q: want tgtd or lio", o.target)
	}
	if err := checkCombination(o); err != nil {
		return err
	}
	if o.runs < 1 {
		return fmt.Errorf("-runs %d: want 1 or more", o.runs)
	}
	if o.runs > 1 && (o.pxe || o.golden != 0 || o.scenario == "multipath") {
		return errors.New("-runs repeats the probe OS and Debian boots; -pxe, -golden and -scenario multipath boot once")
	}
	if o.lockdown {
		if o.osName != "probe" || o.firmware != qemuvm.UEFI || o.image != imageKernel || o.scenario != "" || o.pxe || o.ipxe {
			return errors.New("-lockdown boots the probe OS under OVMF with -image kernel: it needs -os probe -firmware uefi and takes no -image efi|linuxboot, -scenario, -pxe or -ipxe")
		}
		fixtureSet := false
		fs.Visit(func(f *flag.Flag) { fixtureSet = fixtureSet || f.Name == "fixture" })
		if fixtureSet && o.fixture != fixtures.GPTSnakeoil {
			return fmt.Errorf("-lockdown boots the %s disk (its kernel signed with the snakeoil key), not -fixture %s: the unsigned kernel's refusal is qemu/e2e's TestLockdownUnsigned", fixtures.GPTSnakeoil, o.fixture)
		}
		o.fixture = fixtures.GPTSnakeoil
	}
	if o.golden != 0 {
		osSet := false
		fs.Visit(func(f *flag.Flag) { osSet = osSet || f.Name == "os" })
		if o.golden < 1 || o.golden > maxGolden {
			return fmt.Errorf("-golden %d: want 1 to %d clients", o.golden, maxGolden)
		}
		if osSet && o.osName != "debian" || o.scenario != "" || o.pxe || o.ipxe || o.firmware != qemuvm.BIOS || o.target != "tgtd" || o.image != imageKernel {
			return errors.New("-golden boots the Debian disk from tgtd under BIOS with -image kernel: it takes no -os other than debian, -scenario, -pxe, -ipxe, -firmware uefi, -target lio or -image efi|linuxboot")
		}
	}
	if o.image == imageLinuxBoot && o.osName == "probe" {
		// The LinuxBoot kernel carries lunboot inside: no initramfs.
		kernel := filepath.Join(o.out, "linuxboot.bzImage")
		if _, err := os.Stat(kernel); err != nil {
			return fmt.Errorf("%w (run `make linuxboot`)", err)
		}
		return runProbe(ctx, o, kernel, "")
	}
	if o.image != imageKernel {
		return runDeliverable(ctx, o)
	}
	kernel, image := filepath.Join(o.out, "vmlinuz"), cmp.Or(o.cpio, filepath.Join(o.out, "lunboot.cpio.xz"))
	for _, f := range []string{kernel, image} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (run `make image`)", err)
		}
	}
	osSet := false
	fs.Visit(func(f *flag.Flag) { osSet = osSet || f.Name == "os" })
	if o.golden != 0 {
		return runGolden(ctx, o, kernel, image, o.golden)
	}
	if o.firmware == qemuvm.UEFI && (o.scenario != "" || o.osName == "dracut" || o.osName == "noiscsi") {
		// Under OVMF the demo boots the debian-uefi disk (or the probe OS);
		// the scenarios and the other Debian disks are laid out for BIOS.
		return fmt.Errorf("-firmware uefi boots -os debian (the debian-uefi disk) or -os probe, without -scenario; use -firmware bios for -os %s %s", o.osName, o.scenario)
	}
	if o.scenario != "" {
		if o.pxe || o.ipxe {
			return fmt.Errorf("-scenario %s boots a Debian disk through lunboot's own network stage: it takes neither -pxe nor -ipxe", o.scenario)
		}
		s, osName, err := findScenario(o.scenario, o.osName, osSet)
		if err != nil {
			return err
		}
		o.osName = osName
		if s.run != nil {
			return s.run(ctx, o, kernel, image)
		}
		return runDebian(ctx, o, kernel, image, s)
	}
	if o.pxe {
		if (osSet && o.osName != "probe") || o.ipxe {
			return fmt.Errorf("-pxe boots the probe OS: it takes neither -os %s nor -ipxe", o.osName)
		}
		return runPXE(ctx, o, kernel, image)
	}
	switch o.osName {
	case "debian", "dracut", "noiscsi":
		if o.ipxe {
			return fmt.Errorf("-ipxe needs -os probe")
		}
		return runDebian(ctx, o, kernel, image, nil)
	case "probe":
		return runProbe(ctx, o, kernel, image)
	}
	return fmt.Errorf("-os %q: want debian, dracut, noiscsi or probe", o.osName)
}

// newLab starts the demo's lab, logging into <out>/lab-logs/demo-<time>.
func newLab(ctx context.Context, o options, adjust ...func(*lab.Options)) (*lab.Lab, error) {
	lo := lab.Options{Name: "demo",
		LogDir: filepath.Join(o.out, "lab-logs", "demo-"+time.Now().Format("20060102-150405"))}
	if o.target == "lio" {
		lo.Taps = 2 // lunboot on tap 0, the LIO target VM on tap 1
	}
	for _, f := range adjust {
		if f != nil {
			f(&lo)
		}
	}
	l, err := lab.New(ctx, lo)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.stdout, "== lab %s: server %s, logs in %s\n", l.NetNS(), l.ServerAddr(), l.LogDir())
	return l, nil
}

// diskLab builds the fixtures, starts the lab and a target, and exports
// the -fixture disk under the target name iqn gives it. The caller closes
// the lab; on error nothing is left running.
func diskLab(ctx context.Context, o options, iqn func(*fixtures.Disk) string) (*lab.Lab, *lab.Target, *lab.Export, *fixtures.Disk, error) {
	fmt.Fprintf(o.stdout, "== fixtures\n")
	set, err := fixtures.Build(ctx, fixtures.Options{Out: filepath.Join(o.out, "fixtures")})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	disk, err := set.Disk(o.fixture)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	l, err := newLab(ctx, o)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err == nil {
		var exp *lab.Export
		if exp, err = tg.Export(lab.ExportSpec{IQN: iqn(disk), Images: []string{disk.Path}}); err == nil {
			return l, tg, exp, disk, nil
		}
	}
	l.Close()
	return nil, nil, nil, nil, err
}

// console returns the callback that streams a guest's console, or nil
// with -quiet.
func (o options) console(prefix string) func(string) {
	if o.quiet {
		return nil
	}
	return func(line string) { fmt.Fprintf(o.stdout, "%s │ %s\n", prefix, line) }
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
