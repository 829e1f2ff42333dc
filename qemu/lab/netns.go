package lab

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/lunboot/lunboot/internal/netns"
)

// RequestLease runs a DHCP client (insomniacslk nclient4) in a fresh client
// namespace whose eth0 (MAC mac, or a lab default) is a veth joined to the
// lab's bridge, and returns the DISCOVER/OFFER/REQUEST/ACK outcome. mods
// adjust the requests (dhcpv4.WithRequestedOptions(dhcpv4.OptionRootPath)
// asks for option 17). The client namespace is removed before returning. It
// checks the lab's DHCP service the way a guest would see it, without QEMU.
func (l *Lab) RequestLease(ctx context.Context, mac net.HardwareAddr, mods ...dhcpv4.Modifier) (*nclient4.Lease, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errClosed
	}
	l.clientSeq++
	n := l.clientSeq
	l.mu.Unlock()
	if mac == nil {
		mac = net.HardwareAddr{0x52, 0x54, 0x00, 0xcc, byte(l.seq), byte(n)}
	}
	cns := fmt.Sprintf("%s-c%d", l.ns, n)
	peer := fmt.Sprintf("vc%d", n)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.netns().DeleteMatching(ctx, func(ns string) bool { return ns == cns })
	}()
	h := l.netns()
	if err := h.Add(ctx, cns); err != nil {
		return nil, fmt.Errorf("lab: dhcp client namespace: %w", err)
	}
	if err := h.AddVeth(ctx,
		netns.End{NS: l.ns, Name: peer, Master: l.bridge, Up: true},
		netns.End{NS: cns, Name: "eth0", MAC: mac, Up: true}); err != nil {
		return nil, fmt.Errorf("lab: dhcp client namespace: %w", err)
	}
	var lease *nclient4.Lease
	err := netns.Do(cns, func() error {
		c, err := nclient4.New("eth0", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(5))
		if err != nil {
			return err
		}
		defer c.Close()
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		lease, err = c.Request(rctx, mods...)
		return err
	})
	if err != nil {
		l.cmds.printf("# dhcp client %s in %s: %v", mac, cns, err)
		return nil, fmt.Errorf("lab: DHCP request from %s: %w (dnsmasq log %s)", mac, err, l.LogPath("dnsmasq.log"))
	}
	l.cmds.printf("# dhcp client %s in %s got %s", mac, cns, lease.ACK.YourIPAddr)
	return lease, nil
}
