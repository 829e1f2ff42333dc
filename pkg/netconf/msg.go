package netconf

import (
	"encoding/binary"
	"math/rand/v2"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// DHCP messages are built here rather than with dhcpv4.NewDiscovery and
// dhcpv4.NewRequestFromOffer because those draw the transaction ID from
// u-root's uio/rand, which polls getrandom(GRND_NONBLOCK) until the kernel
// CRNG is initialised, for up to dhcpv4.RandomTimeout (2 minutes). A
// non-blocking poll never makes the kernel generate entropy itself, so in a
// firmware-stage boot without a hardware RNG source (a QEMU TCG guest
// without virtio-rng, verified in the lab) no DISCOVER is sent for two
// minutes and then none at all: this is why u-root v0.16.0's dhclient got
// no lease in the lab while busybox udhcpc, which uses an ordinary PRNG,
// did. An xid only has to differ between clients and transactions (RFC 2131
// §2: "a random number chosen by the client"), and the chaddr check
// filters replies anyway; math/rand/v2 is seeded by the Go runtime from
// the kernel's AT_RANDOM bytes and never blocks.

// newXID returns a transaction ID.
func newXID() dhcpv4.TransactionID {
	var x dhcpv4.TransactionID
	binary.BigEndian.PutUint32(x[:], rand.Uint32())
	return x
}

// newMessage returns a BOOTREQUEST with the header defaults dhcpv4.New
// uses, transaction ID xid, and mods applied.
func newMessage(xid dhcpv4.TransactionID, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        iana.HWTypeEthernet,
		ClientHWAddr:  make(net.HardwareAddr, 6),
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		Options:       make(dhcpv4.Options),
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

// newDiscover builds a DHCPDISCOVER (RFC 2131 §4.4.1, table 5).
func newDiscover(mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMessage(newXID(), dhcpv4.PrependModifiers(mods,
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))...)
}

// newRequest builds the DHCPREQUEST for offer in the SELECTING state (RFC
// 2131 §4.3.2): the offer's xid, 'requested IP address' and 'server
// identifier' set, ciaddr zero.
func newRequest(offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return newMessage(offer.TransactionID, dhcpv4.PrependModifiers(mods,
		dhcpv4.WithReply(offer),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier))...)
}
