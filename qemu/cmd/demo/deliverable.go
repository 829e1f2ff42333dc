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

// checkCombination refuses, by name, the -firmware and -image choices
// that make no sense, before anything starts.
func checkCombination(o options, fw qemuvm.Firmware) error {
	switch o.image {
	case imageKernel, imageLinuxBoot:
	case imageEFI:
		if fw != qemuvm.UEFI {
			return fmt.Errorf("-image efi needs -firmware uefi: out/lunboot.efi is an EFI executable, which SeaBIOS cannot start")
		}
		if o.appendArgs != "" {
			return fmt.Errorf("-image efi takes no -append: out/lunboot.efi carries its own command line (rebuild it with go run ./initramfs/mkefi -cmdline …)")
		}
	default:
		return fmt.Errorf("-image %q: want kernel, efi or linuxboot", o.image)
	}
	if o.image == imageKernel && fw == qemuvm.BIOS {
		return nil
	}
	what := "-image " + o.image
	if o.image == imageKernel {
		what = "-firmware " + o.firmware
	}
	if o.pxe {
		return fmt.Errorf("%s boots the Debian disk; -pxe boots out/vmlinuz and out/lunboot.cpio.xz under BIOS only", what)
	}
	if o.osName != "debian" || o.ipxe {
		return fmt.Errorf("%s boots -os debian: the probe OS needs lunboot.force=1 and the fixtures are BIOS disks", what)
	}
	return nil
}

// runDeliverable boots the Debian disk with the chosen firmware and
// deliverable.
func runDeliverable(ctx context.Context, o options, fw qemuvm.Firmware) error {
	cfg := handoff.Config{Firmware: fw, Args: o.appendArgs}
	need := func(name, by string) (string, error) {
		p := filepath.Join(o.out, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w (run `%s`)", err, by)
		}
		return p, nil
	}
	var err error
	switch o.image {
	case imageKernel:
		if cfg.Kernel, err = need("vmlinuz", "make image"); err == nil {
			cfg.Image, err = need("lunboot.cpio.xz", "make image")
		}
	case imageEFI:
		cfg.EFI, err = need("lunboot.efi", "make efi")
	case imageLinuxBoot:
		cfg.Kernel, err = need("linuxboot.bzImage", "make linuxboot")
	default:
		err = fmt.Errorf("-image %q: want kernel, efi or linuxboot", o.image)
	}
	if err != nil {
		return err
	}
	return bootDebian(ctx, o, cfg)
}
