// Package nbd exposes a blockdev.Device to the Linux kernel as /dev/nbdN.
//
// The kernel's NBD driver (drivers/block/nbd.c) sends block requests over a
// stream socket; this package is the other end of that socket. There is no
// NBD handshake: the kernel is configured over generic netlink (family
// "nbd", include/uapi/linux/nbd-netlink.h), so only the transmission phase of
// the NBD protocol (NetworkBlockDevice/nbd doc/proto.md) is spoken here.
//
// The package has three layers:
//
//   - The wire format: Request and Reply with their encoders and decoders,
//     the command, flag and error values of the protocol.
//   - Serve, which answers the requests arriving on one connection with
//     calls to a blockdev.Device, many of them concurrently, because the
//     device behind it is usually an iSCSI LUN with a network round trip per
//     request.
//   - Attach, Disconnect and Status, which drive the kernel over generic
//     netlink (Linux only; on other systems they return ErrNotSupported).
//
// The kernel never sends the NBD handshake, structured replies, block status
// or (in Linux 6.1) WRITE_ZEROES; Serve still answers WRITE_ZEROES so that it
// can serve any transmission-phase client.
package nbd
