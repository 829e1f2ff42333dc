// Package bootcfg is everything `lunboot boot` is told, and where each
// value came from.
//
// Values come from four places, in this order of precedence:
//
//  1. the kernel command line: lunboot.* options, and the dracut (and
//     initramfs-tools) options administrators already write: netroot=,
//     root=iscsi:, rd.iscsi.*, iscsi_*, ip=, BOOTIF=, nameserver=;
//  2. DHCP: the root-path (option 17 or option 43 sub-option 201), the
//     initiator name (option 203 or 43.203), the lease's address, router,
//     DNS servers and host name;
//  3. a firmware iBFT, if the platform's boot ROM set one up;
//  4. defaults, including an initiator name derived from the boot NIC's MAC
//     (DefaultInitiatorName).
//
// The firmware iBFT moves ahead of DHCP with rd.iscsi.firmware=1,
// rd.iscsi.ibft=1, ip=ibft, iscsi_auto or lunboot.ibft=prefer, and is
// dropped with lunboot.ibft=ignore.
//
// ParseCmdline turns the command line into a Source. pkg/netconf and
// pkg/ibft describe what they found with the plain structs Network and
// Firmware, whose Source methods validate it. Resolve applies precedence and
// defaults; Merge also checks that the result is complete enough to boot
// (a target, an initiator name, consistent CHAP) and, when it is not, says
// where it looked. Every field of the resulting Config remembers its Origin,
// so the boot log can say "initiator iqn.… (from DHCP option 203)".
//
// Secrets: CHAP passwords never appear in String, LogValue, Format, JSON
// or error output of any type here. Passwords given on the kernel command
// line are nevertheless readable by every process through /proc/cmdline;
// docs/configuration.md says so and how to avoid it.
package bootcfg
