// Package handoff prepares the OS that lunboot kexecs to open the iSCSI
// session again: lunboot's own session dies with the firmware kernel, so the
// OS initrd must log in by itself.
//
// It works in four steps:
//
//  1. Inspect the OS initrd (Inspect): walk its concatenated cpio archives
//     (uncompressed or gzip, xz, zstd, legacy lz4, bzip2, lzma), keeping only
//     names and a few small configuration files, and tell dracut from
//     initramfs-tools. Read what the OS kernel says about itself
//     (KernelRelease of its bzImage, ReadKernelFacts from its partitions).
//  2. Check it can take over (Initrd.Check): iSCSI tools and scripts for its
//     generator, iscsi_tcp, the boot NIC's driver, a network stack,
//     iscsi_ibft. A missing piece is reported with how to add it, the most
//     common real-world failure.
//  3. Decide how to pass the parameters (Decide, lunboot.handoff=): on the
//     command line in the initrd's dialect (Cmdline), in an iBFT delivered
//     through the initrd (EarlyCPIO, PrependInitrd), or both. Decide is the
//     one place for that policy, step 2 and lunboot.force= included; its
//     rules and their precedence are tabled in docs/handoff.md.
//  4. Build the command line and the table from Info, what lunboot knows
//     about the session (initiator, target, LUN, CHAP, NIC).
//
// Prepare runs steps 2 to 4 on what step 1 found.
//
// Sources: dracut-ng modules.d/74iscsi and 45net-lib, Debian open-iscsi's
// initramfs local-top/iscsi, initramfs-tools scripts/functions
// (configure_networking), Linux init/initramfs.c, lib/earlycpio.c,
// drivers/acpi/tables.c and drivers/firmware/iscsi_ibft.c. Not done: the
// low-memory iBFT (a kexec_load segment in 0x80000–0x9FFFF for non-EFI
// x86); the initrd route covers both kexec syscalls and EFI.
package handoff
