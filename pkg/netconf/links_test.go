package netconf

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeSysfs builds the sysfs shapes linkFromSysfs reads, with the same
// relative symlinks the kernel uses.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// virtio_net (modular): the netdev's device is virtio0, a child of the
	// PCI function 0000:00:03.0.
	mkdir("devices/pci0000:00/0000:00:03.0/virtio0")
	mkdir("bus/virtio/drivers/virtio_net")
	mkdir("module/virtio_net")
	link("../../../../module/virtio_net", "bus/virtio/drivers/virtio_net/module")
	link("../../../../bus/virtio/drivers/virtio_net", "devices/pci0000:00/0000:00:03.0/virtio0/driver")
	link("../../../devices/pci0000:00/0000:00:03.0/virtio0", "class/net/eth0/device")
	// e1000e built in (no module link), behind a PCIe bridge.
	mkdir("devices/pci0000:00/0000:00:1c.0/0000:03:00.0")
	mkdir("bus/pci/drivers/e1000e")
	link("../../../../bus/pci/drivers/e1000e", "devices/pci0000:00/0000:00:1c.0/0000:03:00.0/driver")
	link("../../../devices/pci0000:00/0000:00:1c.0/0000:03:00.0", "class/net/eno1/device")
	// A USB NIC: no PCI function between the interface and the USB bus
	// matches — its nearest PCI ancestor is the host controller.
	mkdir("devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0")
	mkdir("bus/usb/drivers/r8152")
	mkdir("module/r8152")
	link("../../../../module/r8152", "bus/usb/drivers/r8152/module")
	link("../../../../../../bus/usb/drivers/r8152", "devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/driver")
	link("../../../devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0", "class/net/enx0/device")
	// A virtual interface: no device link at all.
	mkdir("class/net/veth0")
	return root
}

func TestLinkFromSysfs(t *testing.T) {
	root := fakeSysfs(t)
	for _, tt := range []struct {
		name                string
		driver, module, pci string
	}{
		{"eth0", "virtio_net", "virtio_net", "0000:00:03.0"},
		{"eno1", "e1000e", "", "0000:03:00.0"},
		{"enx0", "r8152", "r8152", "0000:00:14.0"},
		{"veth0", "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
			got := linkFromSysfs(root, &netlink.LinkAttrs{Name: tt.name, Index: 7, HardwareAddr: mac})
			if got.Name != tt.name || got.Index != 7 || got.MAC.String() != mac.String() ||
				got.Driver != tt.driver || got.Module != tt.module || got.PCI != tt.pci {
				t.Fatalf("linkFromSysfs(%s) = %+v, want driver %q module %q pci %q", tt.name, got, tt.driver, tt.module, tt.pci)
			}
		})
	}
}

func TestHasCarrier(t *testing.T) {
	for _, tt := range []struct {
		oper  netlink.LinkOperState
		flags uint32
		want  bool
	}{
		{netlink.OperUp, unix.IFF_UP | unix.IFF_LOWER_UP, true},
		{netlink.OperDown, unix.IFF_UP, false},
		{netlink.OperLowerLayerDown, unix.IFF_UP, false},
		{netlink.OperDormant, unix.IFF_UP | unix.IFF_LOWER_UP, false},
		{netlink.OperTesting, unix.IFF_UP | unix.IFF_LOWER_UP, false},
		// Carrier on, operstate not yet updated by the kernel's linkwatch.
		{netlink.OperDown, unix.IFF_UP | unix.IFF_LOWER_UP, true},
		// Operstate up but the carrier bit already gone (cable pulled).
		{netlink.OperUp, unix.IFF_UP, false},
		// Drivers that do not report operstate: the carrier bit decides.
		{netlink.OperUnknown, unix.IFF_UP | unix.IFF_LOWER_UP, true},
		{netlink.OperUnknown, unix.IFF_UP, false},
	} {
		a := &netlink.LinkAttrs{OperState: tt.oper, RawFlags: tt.flags}
		if got := hasCarrier(a); got != tt.want {
			t.Errorf("hasCarrier(operstate %v, flags %#x) = %v, want %v", tt.oper, tt.flags, got, tt.want)
		}
	}
}
