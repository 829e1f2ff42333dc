package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/qemu/handoff"
)

// The -image values: lunboot's three deliverables.
const (
	imageKernel    = "kernel"
	imageEFI       = "efi"
	imageLinuxBoot = "linuxboot"
)

// checkCombination refuses, by name, the -image choices that make no
// sense with the other flags, before anything starts. (-image kernel is
// the classic pair, which every other flag combines with.)
func checkCombination(o options) error {
	if o.cpio != "" && o.image != imageKernel {
		return fmt.Errorf("-cpio replaces out/lunboot.cpio.xz of -image kernel; -image %s carries its own initramfs", o.image)
	}
	switch o.image {
	case imageKernel:
		return nil
	case imageLinuxBoot:
	case imageEFI:
		if o.firmware != qemuvm.UEFI {
			return fmt.Errorf("-image efi needs -firmware uefi: out/lunboot.efi is an EFI executable, which SeaBIOS cannot start")
		}
		if o.appendArgs != "" {
			return fmt.Errorf("-image efi takes no -append: out/lunboot.efi carries its own command line (rebuild it with go run ./initramfs/mkefi -cmdline …)")
		}
	default:
		return fmt.Errorf("-image %q: want kernel, efi or linuxboot", o.image)
	}
	if o.scenario != "" {
		return fmt.Errorf("-image %s boots the Debian disk over the plain lab; -scenario %s runs with -image kernel", o.image, o.scenario)
	}
	if o.pxe {
		return fmt.Errorf("-image %s boots the Debian disk; -pxe loads out/vmlinuz and out/lunboot.cpio.xz over the network", o.image)
	}
	if o.image == imageLinuxBoot && o.osName == "probe" && o.firmware == qemuvm.BIOS && !o.lockdown {
		// The bzImage has no built-in command line: the demo's (with
		// lunboot.force=1) reaches it as any boot loader's would.
		return nil
	}
	if o.osName != "debian" || o.ipxe {
		return fmt.Errorf("-image %s boots -os debian, and -image linuxboot -os probe under BIOS (the probe OS needs lunboot.force=1 on a command line of the demo's choosing, which out/lunboot.efi does not take)", o.image)
	}
	return nil
}

// runDeliverable boots the Debian disk from out/lunboot.efi or
// out/linuxboot.bzImage under o's firmware.
func runDeliverable(ctx context.Context, o options) error {
	cfg := handoff.Config{Args: o.appendArgs}
	need := func(name, by string) (string, error) {
		p := filepath.Join(o.out, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w (run `%s`)", err, by)
		}
		return p, nil
	}
	var err error
	switch o.image {
	case imageEFI:
		cfg.EFI, err = need("lunboot.efi", "make efi")
	case imageLinuxBoot:
		cfg.Kernel, err = need("linuxboot.bzImage", "make linuxboot")
	default:
		err = fmt.Errorf("-image %q: want efi or linuxboot here", o.image)
	}
	if err != nil {
		return err
	}
	return bootDebian(ctx, o, cfg, nil)
}
