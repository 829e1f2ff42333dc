// Command mkimage builds the lunboot boot image.
//
// Synopsis:
//
//	go run ./initramfs/mkimage [-out DIR] [-kernel DIR] [-modules FILE] [-force]
//
// Description:
//
// mkimage writes DIR/lunboot.cpio.xz, a u-root initramfs, and DIR/vmlinuz,
// the kernel it was built for, and DIR/lunboot-nomodules.cpio, the same
// image without the modules and uncompressed, which a kernel with the
// drivers built in embeds (make linuxboot):
//
//   - u-root (the `go tool u-root` that the module in initramfs/uroot pins,
//     run there) builds one busybox-style binary from the commands that
//     initramfs/uroot/tools.go imports, lunboot and u-root's, with u-root's
//     init as /init and `lunboot boot` as the uinit (GOAMD64=v1,
//     CGO_ENABLED=0), lunboot stamped with the checkout's version and commit
//     (internal/version; `lunboot version` and the boot's first console
//     line print it, and DIR/lunboot.version records it);
//   - the kernel modules that initramfs/modules.txt names, with their
//     dependencies resolved from the kernel tree (package depmod), go to
//     lib/modules/<release>/ with a load order (lunboot.order) that
//     `lunboot modules` and the boot's stage 1 follow, plus a modules.dep
//     for u-root's kmodule;
//   - the archive is compressed with `xz --check=crc32 --lzma2=dict=1MiB -9`,
//     which the kernel's XZ decoder accepts (it knows no CRC64 or SHA-256
//     check, lib/xz/xz_dec_stream.c).
//
// The image without modules must stay within the budget (-budget, 4 MiB
// compressed): that part goes to flash in a LinuxBoot build. When nothing
// that goes into the image changed since the last build (Go sources and
// module versions, the version stamp, the module list, the kernel), mkimage
// prints "image up to date" and exits.
//
// Options:
//
//	-out DIR       output directory (default out)
//	-kernel DIR    unpacked kernel package: boot/vmlinuz-<release>, lib/modules/<release> (default /var/cache/lunboot/kernel/current)
//	-modules FILE  module list (default initramfs/modules.txt)
//	-budget BYTES  largest compressed size of the image without modules (default 4 MiB)
//	-force         rebuild even if up to date
//	-keep          keep the temporary build directory
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
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{}
	fs.StringVar(&c.out, "out", "out", "output `directory`")
	fs.StringVar(&c.kernel, "kernel", "/var/cache/lunboot/kernel/current", "unpacked kernel package `directory`")
	fs.StringVar(&c.modules, "modules", "", "module list `file` (default <repo>/initramfs/modules.txt)")
	fs.Int64Var(&c.budget, "budget", 4<<20, "largest compressed size in `bytes` of the image without modules")
	fs.BoolVar(&c.force, "force", false, "rebuild even if the inputs did not change")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary build directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return build(ctx, c, stdout, stderr)
}
