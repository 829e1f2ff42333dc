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
// The DHCP client is github.com/insomniacslk/dhcp's nclient4 for the raw
// AF_PACKET socket and reply matching (so the kernel needs CONFIG_PACKET),
// driven by this package's own DISCOVER/REQUEST state machine: RFC 2131
// §4.1 retransmission bounded by the caller, offers without a root-path
// held back while a boot server may still answer, NAK handling (§4.4.1).
// Messages are built here, not with dhcpv4.NewDiscovery, whose transaction
// ID waits for the kernel CRNG for up to two minutes (see msg.go) — the
// reason u-root v0.16.0's dhclient got no lease in the QEMU lab. u-root's
// pkg/dhclient is not used: besides that, it requests no root-path (option
// 17 is missing from its Parameter Request List, and dnsmasq and ISC dhcpd
// only send what is requested), retransmits with a fixed doubling and no
// randomisation, logs through the log package, always writes
// /etc/resolv.conf and keeps nothing to undo a configuration before kexec.
//
// Side effects, all undone by [Config.Down]: links are set up (links that
// lost the DHCP race are set down again by [Acquire] itself), one IPv4
// address, the routes from the lease, possibly an MTU, and a resolv.conf.
package netconf
