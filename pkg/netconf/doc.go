// Package netconf is stage 3 of the lunboot boot: it finds the candidate
// network interfaces, brings them up, waits (boundedly) for carrier, gets a
// DHCPv4 lease on all of them in parallel — or applies a static ip=
// configuration — and applies the winning configuration to its link with
// netlink so the iSCSI login can reach the target.
//
// What the rest of the boot needs from the network comes back as a [Config]:
// the interface (name, index, MAC, driver module, PCI address for the iBFT),
// the IPv4 configuration, and what DHCP said about the boot: the root-path
// (option 17, or option 43 sub-option 201 as iSCSI HBA ROMs use it) and the
// initiator IQN (option 203, or 43.203), each with the option it came from.
// The root-path is returned as text; pkg/rootpath parses it.
//
// The DHCP client is github.com/insomniacslk/dhcp's nclient4 (raw AF_PACKET
// sockets, so the kernel needs CONFIG_PACKET), driven by this package's own
// DISCOVER/REQUEST retransmission loop (RFC 2131 §4.1 backoff, bounded by
// the caller). u-root's pkg/dhclient is not used: it requests no root-path
// (option 17 is missing from its Parameter Request List), retransmits with a
// fixed doubling and no randomisation, logs through the log package, always
// writes /etc/resolv.conf and has nothing to undo a configuration before
// kexec.
//
// Side effects, all undone by [Config.Down]: links are set up (links that
// lost the DHCP race are set down again by [Acquire] itself), one IPv4
// address, the routes from the lease, possibly an MTU, and a resolv.conf.
package netconf
