package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/netns"
)

// The lab's VLAN mode (Options.VLAN) makes each guest's tap a trunk port
// of a switch whose only VLAN is Options.VLAN: frames tagged with that VLAN
// reach the bridge (and so dnsmasq and tgtd) untagged, the bridge's frames
// reach the guest tagged, and everything else the guest sends — untagged
// frames, other VLANs — reaches nothing.
//
// A Linux bridge does this itself with VLAN filtering (`ip link set br0
// type bridge vlan_filtering 1`, `bridge vlan add dev tap0 vid 100`), but
// the kernels this lab runs on are built without
// CONFIG_BRIDGE_VLAN_FILTERING (and without 8021q), so the port is a small
// relay instead: a packet socket on the guest's tap, which is on no bridge,
// and a tap of its own on the bridge. The guest's tap is opened without
// the virtio-net header (qemuvm.NIC.NoOffload) so that every frame read
// from it is complete, checksums included; the relay's own tap has no
// offloads either, so the kernel hands it complete, segmented frames.

// trunk is one relayed port.
type trunk struct {
	guest, bridged string // the guest's tap, the relay's tap on the bridge
	vid            uint16
	tapFile        *os.File
	pfd            int
	stop           atomic.Bool
	wg             sync.WaitGroup
	// Dropped counts frames from the guest that were untagged or of
	// another VLAN.
	dropped atomic.Int64
}

// tpacketAuxdata is struct tpacket_auxdata (include/uapi/linux/if_packet.h).
type tpacketAuxdata struct {
	Status   uint32
	Len      uint32
	Snaplen  uint32
	Mac      uint16
	Net      uint16
	VLANTCI  uint16
	VLANTPID uint16
}

const tpStatusVLANValid = 1 << 4 // TP_STATUS_VLAN_VALID

// startTrunk takes tap off the bridge and relays it, as a trunk port
// carrying vid, to a new tap "v<tap>" on the bridge.
func (l *Lab) startTrunk(ctx context.Context, tap string, vid uint16) (*trunk, error) {
	t := &trunk{guest: tap, bridged: "v" + tap, vid: vid, pfd: -1}
	if _, err := l.run(ctx, "ip", "-n", l.ns, "link", "set", tap, "nomaster"); err != nil {
		return nil, err
	}
	// The namespace's own stack must not answer on the trunk either:
	// Linux answers ARP for any local address on any interface and
	// accepts IP for it (the weak host model), so untagged frames would
	// reach the bridge's address through tap itself. arp_ignore=8 never
	// answers ARP there, rp_filter=1 drops IPv4 whose source is routed
	// elsewhere (every lab address is on the bridge), and IPv6 is off.
	for _, kv := range []string{
		"net.ipv4.conf." + tap + ".arp_ignore=8",
		"net.ipv4.conf." + tap + ".rp_filter=1",
		"net.ipv6.conf." + tap + ".disable_ipv6=1",
	} {
		if _, err := l.run(ctx, "ip", "netns", "exec", l.ns, "sysctl", "-q", "-w", kv); err != nil {
			return nil, err
		}
	}
	err := netns.Do(l.ns, func() error {
		f, err := openTap(t.bridged)
		if err != nil {
			return err
		}
		t.tapFile = f
		ifi, err := net.InterfaceByName(tap)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		t.pfd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket to %s: %w", tap, err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return fmt.Errorf("PACKET_AUXDATA: %w", err)
		}
		// Bounded reads, so that the relay notices close.
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		t.close()
		return nil, fmt.Errorf("lab: trunk port %s: %w", tap, err)
	}
	if _, err := l.run(ctx, "ip", "-n", l.ns, "link", "set", t.bridged, "master", l.bridge, "up"); err != nil {
		t.close()
		return nil, err
	}
	t.wg.Add(2)
	go t.fromGuest()
	go t.toGuest()
	l.cmds.printf("# %s is a trunk port carrying VLAN %d only: relayed to %s on %s (untagged frames and other VLANs are dropped)", tap, vid, t.bridged, l.bridge)
	return t, nil
}

// openTap creates a tap (no packet information, no virtio-net header:
// the kernel hands it complete frames) in the calling thread's namespace.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	// Blocking reads with a deadline through the runtime poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// fromGuest relays the guest's VLAN frames, untagged, to the bridge.
func (t *trunk) fromGuest() {
	defer t.wg.Done()
	buf := make([]byte, 65536)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(tpacketAuxdata{}))))
	for !t.stop.Load() {
		n, oobn, _, from, err := unix.Recvmsg(t.pfd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
			continue // what toGuest sent
		}
		frame := buf[:n]
		vid, tagged := -1, false
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cm.Header.Level == unix.SOL_PACKET && cm.Header.Type == unix.PACKET_AUXDATA && len(cm.Data) >= int(unsafe.Sizeof(tpacketAuxdata{})) {
					aux := (*tpacketAuxdata)(unsafe.Pointer(&cm.Data[0]))
					if aux.Status&tpStatusVLANValid != 0 {
						vid, tagged = int(aux.VLANTCI&0xfff), true
					}
				}
			}
		}
		if !tagged && n >= 18 && binary.BigEndian.Uint16(frame[12:14]) == unix.ETH_P_8021Q {
			// The tag left in the frame: take it out.
			vid, tagged = int(binary.BigEndian.Uint16(frame[14:16])&0xfff), true
			copy(frame[12:], frame[16:])
			frame = frame[:n-4]
		}
		if !tagged || vid != int(t.vid) {
			t.dropped.Add(1)
			continue
		}
		if _, err := t.tapFile.Write(frame); err != nil && t.stop.Load() {
			return
		}
	}
}

// toGuest relays the bridge's frames to the guest, tagged.
func (t *trunk) toGuest() {
	defer t.wg.Done()
	buf := make([]byte, 65536+4)
	for !t.stop.Load() {
		t.tapFile.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := t.tapFile.Read(buf[4:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return
		}
		if n < 14 {
			continue
		}
		// Move the addresses forward and put the 802.1Q tag behind them.
		copy(buf[0:12], buf[4:16])
		binary.BigEndian.PutUint16(buf[12:14], unix.ETH_P_8021Q)
		binary.BigEndian.PutUint16(buf[14:16], t.vid)
		if _, err := unix.Write(t.pfd, buf[:n+4]); err != nil && t.stop.Load() {
			return
		}
	}
}

// close stops the relay and removes its tap.
func (t *trunk) close() {
	t.stop.Store(true)
	t.wg.Wait()
	if t.tapFile != nil {
		t.tapFile.Close()
	}
	if t.pfd >= 0 {
		unix.Close(t.pfd)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
