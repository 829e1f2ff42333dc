package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread switched into the named namespace. Sockets
// fn opens belong to that namespace for their whole life, wherever the
// goroutines using them later run. If the thread cannot be switched back it
// is discarded with its goroutine, never reused.
func inNetNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked and the runtime retires the thread.
		errc <- ferr
	}()
	return <-errc
}

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
		_ = l.removeNamespaces(ctx, func(ns string) bool { return ns == cns })
	}()
	steps := [][]string{
		{"ip", "netns", "add", cns},
		{"ip", "-n", l.ns, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", cns},
		{"ip", "-n", l.ns, "link", "set", peer, "master", l.bridge, "up"},
		{"ip", "-n", cns, "link", "set", "lo", "up"},
		{"ip", "-n", cns, "link", "set", "eth0", "address", mac.String(), "up"},
	}
	for _, s := range steps {
		if _, err := l.run(ctx, s...); err != nil {
			return nil, fmt.Errorf("lab: dhcp client namespace: %w", err)
		}
	}
	var lease *nclient4.Lease
	err := inNetNS(cns, func() error {
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
