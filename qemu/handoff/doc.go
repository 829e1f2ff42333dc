// Package handoff boots real distributions through lunboot in the lab and
// checks, from inside the booted OS, that lunboot's hand-off worked: the
// lab's Debian 12 systems (package qemu/distro) are exported from tgtd, a
// diskless QEMU guest powers on with lunboot's image, gets the root-path by
// DHCP option 17, logs in, finds the system's boot entry on the LUN and
// kexecs its kernel with a command line in the initrd's dialect and, per
// lunboot.handoff=, an iBFT in front of the initrd. The OS's own initrd must
// then log in again and mount its root from the LUN; its proof line
// (package qemu/distro/osproof) says what it received and what it did.
//
// The library half (Start, Machine, WriteSummary; the console parsers are
// in qemu/bootlog) serves the tests here and `make demo` (qemu/cmd/demo).
// The tests cover each hand-off mode on the initramfs-tools and dracut
// initrds, mutual CHAP with no secret on the OS command line or lunboot's
// console, and the refusal, before kexec, of an initrd that cannot log in.
package handoff
