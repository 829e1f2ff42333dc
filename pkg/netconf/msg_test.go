package netconf

import (
	"bytes"
	"net"
	"slices"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The messages must be what insomniacslk's constructors build, apart from
// where the transaction ID comes from.
func TestMessagesMatchLibrary(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 0x50}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("lunboot")),
		dhcpv4.WithRequestedOptions(requestedOptions...),
	}
	ours := newDiscover(mac, mods...)
	theirs, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		t.Fatal(err)
	}
	// NewDiscovery puts 1, 3, 15, 6 first in the PRL; the order carries no
	// meaning (RFC 2132 §9.8 lists, the server answers in its own order).
	theirs.TransactionID = ours.TransactionID
	if !bytes.Equal(canonical(ours), canonical(theirs)) {
		t.Errorf("newDiscover() =\n%s\nwant (dhcpv4.NewDiscovery)\n%s", ours.Summary(), theirs.Summary())
	}

	offer, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithReply(ours),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 50)), dhcpv4.WithServerIP(net.IPv4(10, 0, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	ourReq := newRequest(offer, mods...)
	theirReq, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canonical(ourReq), canonical(theirReq)) {
		t.Errorf("newRequest() =\n%s\nwant (dhcpv4.NewRequestFromOffer)\n%s", ourReq.Summary(), theirReq.Summary())
	}
	if ourReq.TransactionID != ours.TransactionID || ourReq.OpCode != dhcpv4.OpcodeBootRequest {
		t.Errorf("newRequest() xid, op = %v, %v, want the offer's xid %v, BootRequest", ourReq.TransactionID, ourReq.OpCode, ours.TransactionID)
	}
}

func TestNewXIDVaries(t *testing.T) {
	seen := map[dhcpv4.TransactionID]bool{}
	for range 100 {
		seen[newXID()] = true
	}
	if len(seen) < 99 {
		t.Errorf("100 calls of newXID() gave %d distinct IDs, want (nearly) 100", len(seen))
	}
}

// canonical encodes m with its Parameter Request List sorted.
func canonical(m *dhcpv4.DHCPv4) []byte {
	c := *m
	c.Options = dhcpv4.Options{}
	for k, v := range m.Options {
		c.Options[k] = v
	}
	prl := c.ParameterRequestList()
	slices.SortFunc(prl, func(a, b dhcpv4.OptionCode) int { return int(a.Code()) - int(b.Code()) })
	c.UpdateOption(dhcpv4.OptParameterRequestList(prl...))
	return c.ToBytes()
}
