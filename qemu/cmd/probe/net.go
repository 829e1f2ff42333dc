//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"github.com/lunboot/lunboot/qemu/probe"
)

// setupNet picks the NIC and configures it the way the hand-off asks: an
// ip= static address, ip=ibft or (without ip=) the iBFT NIC's address as
// iscsistart -N would set it, otherwise DHCP.
func setupNet(ctx context.Context, s *state, cl probe.Cmdline, ibNIC *probe.IBFTEntry) *probe.Net {
	n := &probe.Net{}
	ipVal, hasIP := cl.Get("ip")
	method, static := probe.ParseIP(ipVal)
	if !hasIP {
		method = "dhcp"
		if ibNIC != nil && ibNIC.Attrs["ip-addr"] != "" {
			method = "ibft"
		}
	}
	if method == "ibft" && ibNIC == nil {
		n.Error = "ip=ibft but the iBFT has no NIC for the boot target; trying DHCP"
		method = "dhcp"
	}

	// Which interface: the iBFT NIC's MAC, BOOTIF=, the ip= device, or
	// the first Ethernet interface.
	wantMAC := ""
	if ibNIC != nil {
		wantMAC = strings.ToLower(ibNIC.Attrs["mac"])
	}
	if b, ok := cl.Get("BOOTIF"); ok && len(b) == len("01-aa-bb-cc-dd-ee-ff") {
		wantMAC = strings.ToLower(strings.ReplaceAll(b[3:], "-", ":"))
	}
	link, err := findLink(ctx, wantMAC, static.Device)
	if err != nil {
		n.Error = err.Error()
		return n
	}
	n.Interface, n.MAC = link.Attrs().Name, link.Attrs().HardwareAddr.String()
	if err := netlink.LinkSetUp(link); err != nil {
		n.Error = fmt.Sprintf("link %s up: %v", n.Interface, err)
		return n
	}
	waitCarrier(ctx, link.Attrs().Name, 10*time.Second)
	n.Method = method
	s.logf("net: %s (%s) method %s", n.Interface, n.MAC, method)

	var addr *net.IPNet
	var gw net.IP
	switch method {
	case "off":
		n.Error = "ip=off: no network configured"
		return n
	case "static":
		ip := net.ParseIP(static.Address)
		mask := parseMask(static.Netmask)
		if ip == nil || mask == nil {
			n.Error = fmt.Sprintf("ip= static address %q netmask %q unusable", static.Address, static.Netmask)
			return n
		}
		addr = &net.IPNet{IP: ip, Mask: mask}
		gw = net.ParseIP(static.Gateway)
	case "ibft":
		a := ibNIC.Attrs
		ip := net.ParseIP(a["ip-addr"])
		mask := parseMask(a["subnet-mask"])
		if mask == nil {
			mask = parseMask(a["prefix-len"])
		}
		if ip == nil || mask == nil {
			n.Error = fmt.Sprintf("iBFT %s ip-addr %q mask %q unusable", ibNIC.Name, a["ip-addr"], a["subnet-mask"])
			return n
		}
		addr = &net.IPNet{IP: ip, Mask: mask}
		gw = net.ParseIP(a["gateway"])
	default:
		lease, err := dhcp(ctx, n.Interface)
		if err != nil {
			n.Error = fmt.Sprintf("DHCP on %s: %v", n.Interface, err)
			return n
		}
		ack := lease.ACK
		addr = &net.IPNet{IP: ack.YourIPAddr, Mask: ack.SubnetMask()}
		if r := ack.Router(); len(r) > 0 {
			gw = r[0]
		}
		n.RootPath = ack.RootPath()
		n.InitiatorName = string(ack.Options.Get(dhcpv4.GenericOptionCode(203)))
	}
	if gw != nil && gw.IsUnspecified() {
		gw = nil
	}
	n.Address = addr.String()
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: addr}); err != nil {
		n.Error = fmt.Sprintf("address %s on %s: %v", addr, n.Interface, err)
		return n
	}
	if gw != nil {
		n.Gateway = gw.String()
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			n.Error = fmt.Sprintf("default route via %s: %v", gw, err)
		}
	}
	s.logf("net: %s address %s gateway %s dhcp-root-path %q dhcp-initiator %q", n.Interface, n.Address, n.Gateway, n.RootPath, n.InitiatorName)
	return n
}

func parseMask(s string) net.IPMask {
	if s == "" {
		return nil
	}
	if ip := net.ParseIP(s).To4(); ip != nil {
		return net.IPMask(ip)
	}
	if bits, err := strconv.Atoi(s); err == nil && bits >= 0 && bits <= 32 {
		return net.CIDRMask(bits, 32)
	}
	return nil
}

// findLink waits (bounded) for the NIC driver to create the interface.
func findLink(ctx context.Context, mac, name string) (netlink.Link, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		var first netlink.Link
		for _, l := range links {
			a := l.Attrs()
			if a.Name == "lo" || len(a.HardwareAddr) != 6 {
				continue
			}
			switch {
			case mac != "" && strings.EqualFold(a.HardwareAddr.String(), mac):
				return l, nil
			case mac == "" && name != "" && a.Name == name:
				return l, nil
			}
			if first == nil {
				first = l
			}
		}
		if mac == "" && name == "" && first != nil {
			return first, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if first != nil {
				return first, nil // the wanted MAC or name is absent: use what exists
			}
			return nil, fmt.Errorf("no network interface appeared within 15s (NIC driver loaded?)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCarrier waits until the link reports a carrier, or gives up after d
// (DHCP retries cover a slow link anyway).
func waitCarrier(ctx context.Context, name string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		l, err := netlink.LinkByName(name)
		if err == nil && (l.Attrs().OperState == netlink.OperUp || l.Attrs().RawFlags&0x10000 != 0) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dhcp asks for a lease with the options an iSCSI boot cares about.
func dhcp(ctx context.Context, ifname string) (*nclient4.Lease, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(3*time.Second), nclient4.WithRetry(5))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	return c.Request(ctx, dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionRootPath,
		dhcpv4.OptionVendorSpecificInformation, dhcpv4.GenericOptionCode(203)))
}
