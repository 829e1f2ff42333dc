//go:build tools

// Package uroot lists what the boot image's busybox binary is built from:
// lunboot and the u-root commands, one import each. initramfs/mkimage reads
// this list and runs `go tool u-root` in this module, so that u-root's
// build-time dependencies (its shell's editor, the commands' libraries)
// stay out of lunboot's own go.mod; `go mod tidy` here keeps them pinned,
// and the image builds offline from the module cache.
package uroot

import (
	_ "github.com/lunboot/lunboot/cmds/lunboot"
	_ "github.com/u-root/u-root/cmds/core/cat"
	_ "github.com/u-root/u-root/cmds/core/cpio"
	_ "github.com/u-root/u-root/cmds/core/dmesg"
	_ "github.com/u-root/u-root/cmds/core/echo"
	_ "github.com/u-root/u-root/cmds/core/gosh"
	_ "github.com/u-root/u-root/cmds/core/init"
	_ "github.com/u-root/u-root/cmds/core/insmod"
	_ "github.com/u-root/u-root/cmds/core/ip"
	_ "github.com/u-root/u-root/cmds/core/kexec"
	_ "github.com/u-root/u-root/cmds/core/ls"
	_ "github.com/u-root/u-root/cmds/core/lsmod"
	_ "github.com/u-root/u-root/cmds/core/mkdir"
	_ "github.com/u-root/u-root/cmds/core/mount"
	_ "github.com/u-root/u-root/cmds/core/ps"
	_ "github.com/u-root/u-root/cmds/core/shutdown"
	_ "github.com/u-root/u-root/cmds/core/umount"
)
