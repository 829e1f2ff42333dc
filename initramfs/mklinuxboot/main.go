// Command mklinuxboot builds out/linuxboot.bzImage: a Linux kernel with
// everything lunboot needs built in and lunboot's image inside it, the one
// file a LinuxBoot or coreboot build flashes as its payload.
//
// Synopsis:
//
//	go run ./initramfs/mklinuxboot [-out DIR] [-cache DIR] [-source FILE] [-config FILE] [-initramfs FILE] [-jobs N] [-budget BYTES]
//
// Description:
//
// The kernel is Debian's linux-source-6.1 (the tarball that package puts in
// /usr/src), configured as ARCH=x86_64 tinyconfig with
// initramfs/linuxboot.config merged in (scripts/kconfig/merge_config.sh,
// then olddefconfig); every CONFIG_X=y of the fragment must survive that,
// or mklinuxboot names the lines that did not and stops. No modules.
// CONFIG_INITRAMFS_SOURCE is lunboot's image without modules, uncompressed
// (out/lunboot-nomodules.cpio from make image): the bzImage's own xz
// compresses it once, with the kernel.
//
// Two caches under DIR/linuxboot (the machine's cache, LUNBOOT_CACHE):
//
//   - the kernel build tree, keyed by the source tarball's SHA-256, the
//     fragment and this builder's recipe: a cold build (unpack, configure,
//     compile) runs once per machine and key; when only the initramfs
//     changed (every commit does: lunboot is stamped with it) the tree is
//     relinked with the new archive, which recompiles one file;
//   - finished bzImages, keyed by the tree's key and the archive's
//     SHA-256: a second run with the same inputs only copies.
//
// One build at a time per tree (a lock file); others wait.
//
// Options:
//
//	-out DIR         output directory (default out)
//	-cache DIR       machine cache (default $LUNBOOT_CACHE, else /var/cache/lunboot)
//	-source FILE     kernel source tarball (default /usr/src/linux-source-6.1.tar.xz)
//	-config FILE     config fragment (default <repo>/initramfs/linuxboot.config)
//	-initramfs FILE  uncompressed cpio to embed (default DIR/lunboot-nomodules.cpio)
//	-jobs N          parallel compile jobs (default the number of CPUs)
//	-budget BYTES    largest bzImage (default 8 MiB, the flash parts LinuxBoot and coreboot use)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "mklinuxboot:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mklinuxboot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{}
	cache := os.Getenv("LUNBOOT_CACHE")
	if cache == "" {
		cache = "/var/cache/lunboot"
	}
	fs.StringVar(&c.out, "out", "out", "output `directory`")
	fs.StringVar(&c.cache, "cache", cache, "machine cache `directory`")
	fs.StringVar(&c.source, "source", defaultSource, "kernel source tarball `file`")
	fs.StringVar(&c.fragment, "config", "", "config fragment `file` (default <repo>/initramfs/linuxboot.config)")
	fs.StringVar(&c.initramfs, "initramfs", "", "uncompressed cpio `file` to embed (default <out>/lunboot-nomodules.cpio)")
	fs.IntVar(&c.jobs, "jobs", runtime.NumCPU(), "parallel compile `jobs`")
	fs.Int64Var(&c.budget, "budget", 8<<20, "largest bzImage in `bytes`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.jobs < 1 {
		return fmt.Errorf("-jobs %d: want at least 1", c.jobs)
	}
	return build(ctx, c, stdout)
}
