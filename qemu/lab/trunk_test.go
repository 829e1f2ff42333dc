package lab_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// attachTap opens the lab's tap as QEMU would (no virtio-net header), in
// the lab's namespace, for reads with deadlines.
func attachTap(t *testing.T, l *lab.Lab, name string) *os.File {
	t.Helper()
	var f *os.File
	err := netns.Do(l.NetNS(), func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatalf("attach %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// arpRequest is an Ethernet ARP request from mac/ip for target, tagged
// with vid unless vid is 0.
func arpRequest(mac net.HardwareAddr, ip, target net.IP, vid uint16) []byte {
	b := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac...)
	if vid != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, vid)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0806)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	b = append(b, mac...)
	b = append(b, ip.To4()...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, target.To4()...)
}

// arpReply waits up to d for an ARP reply on the tap and returns its VLAN
// (-1 when untagged).
func arpReply(t *testing.T, f *os.File, d time.Duration) (vid int, ok bool) {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(d)
	for {
		f.SetReadDeadline(deadline)
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, false
		}
		if err != nil {
			t.Fatalf("read tap: %v", err)
		}
		fr := buf[:n]
		vid = -1
		if n >= 18 && binary.BigEndian.Uint16(fr[12:]) == 0x8100 {
			vid = int(binary.BigEndian.Uint16(fr[14:]) & 0xfff)
			fr = append(fr[:12:12], fr[16:]...)
		}
		if len(fr) >= 22 && binary.BigEndian.Uint16(fr[12:]) == 0x0806 && bytes.Equal(fr[20:22], []byte{0, 2}) {
			return vid, true
		}
	}
}

// TestTrunkPort: with Options.VLAN the guest's tap reaches the bridge's
// address only with frames tagged with that VLAN, and gets the answers
// tagged; untagged frames and other VLANs reach nothing.
func TestTrunkPort(t *testing.T) {
	l := labtest.Start(t, lab.Options{VLAN: 100})
	tap := l.Taps()[0]
	f := attachTap(t, l, tap.Name)
	p := l.Prefix().Addr().As4()
	me := net.IPv4(p[0], p[1], p[2], 77) // a guest's address in the lab
	server := net.IP(l.ServerIP().AsSlice())

	// A few tries: a frame sent while the relay's port joins the bridge
	// may be lost, as on a switch port that just came up.
	var vid int
	var ok bool
	for try := 0; try < 3 && !ok; try++ {
		if _, err := f.Write(arpRequest(tap.MAC, me, server, 100)); err != nil {
			t.Fatal(err)
		}
		vid, ok = arpReply(t, f, 2*time.Second)
	}
	if !ok || vid != 100 {
		t.Fatalf("ARP on VLAN 100: reply %v on VLAN %d, want a reply tagged 100", ok, vid)
	}
	for _, vid := range []uint16{0, 200} {
		if _, err := f.Write(arpRequest(tap.MAC, me, server, vid)); err != nil {
			t.Fatal(err)
		}
		if got, ok := arpReply(t, f, 1500*time.Millisecond); ok {
			t.Errorf("ARP on VLAN %d (0: untagged) got a reply (VLAN %d), want none", vid, got)
		}
	}
	if d := l.TrunkDrops(); d < 2 {
		t.Errorf("TrunkDrops() = %d, want at least the untagged and the VLAN 200 request", d)
	}
}
