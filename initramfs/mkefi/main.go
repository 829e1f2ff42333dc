// Command mkefi builds out/lunboot.efi: lunboot as one EFI executable, a
// Unified Kernel Image (UAPI Group's UKI specification, Type #2 entries of
// the Boot Loader Specification) that UEFI firmware starts like any EFI
// application, from an ESP, a USB stick, a boot option or UEFI HTTP boot.
//
// Synopsis:
//
//	go run ./initramfs/mkefi [-out DIR] [-kernel FILE] [-initrd FILE] [-cmdline TEXT] [-stub FILE]
//
// Description:
//
// The executable is systemd's EFI stub (Debian package systemd-boot-efi)
// with the kernel (.linux), lunboot's image (.initrd), the default kernel
// command line (.cmdline) and an os-release naming lunboot and its version
// (.osrel) added as PE sections by objcopy, each at a page-aligned address
// after the stub's own sections. At start the stub hands the kernel the
// initrd (through the LINUX_EFI_INITRD_MEDIA_GUID LoadFile2 protocol that
// Linux 5.8 and later ask for) and the command line: the built-in one, or,
// when Secure Boot is off and the boot option carries load options, those
// instead (systemd-stub(7)).
//
// Debian 12's systemd (252) has no ukify, which arrived in systemd 253; the
// stub and objcopy are what it leaves, and what ukify itself does.
//
// The kernel is out/vmlinuz (Debian's, which the image's modules are for);
// -kernel out/linuxboot.bzImage with an empty -initrd makes a UKI of the
// LinuxBoot kernel instead (its image is inside it).
//
// Options:
//
//	-out DIR       output directory (default out)
//	-kernel FILE   kernel (default DIR/vmlinuz)
//	-initrd FILE   initramfs (default DIR/lunboot.cpio.xz; "" for none)
//	-cmdline TEXT  built-in kernel command line (default "console=tty0 console=ttyS0,115200")
//	-stub FILE     EFI stub (default /usr/lib/systemd/boot/efi/linuxx64.efi.stub)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "mkefi:", err)
		os.Exit(1)
	}
}

const unset = "\x00unset"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkefi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.out, "out", "out", "output `directory`")
	fs.StringVar(&c.kernel, "kernel", "", "kernel `file` (default <out>/vmlinuz)")
	fs.StringVar(&c.initrd, "initrd", unset, "initramfs `file` (default <out>/lunboot.cpio.xz; empty for none)")
	fs.StringVar(&c.cmdline, "cmdline", DefaultCmdline, "built-in kernel command `line`")
	fs.StringVar(&c.stub, "stub", DefaultStub, "EFI stub `file` (Debian package systemd-boot-efi)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return build(ctx, c, stdout)
}
