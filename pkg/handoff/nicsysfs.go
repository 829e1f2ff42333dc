package handoff

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// NICDevice is what sysfs says about a network interface's hardware.
type NICDevice struct {
	MAC net.HardwareAddr
	// Module is the kernel module of the driver bound to the device
	// (<dev>/driver/module); empty when the driver is built in without a
	// module entry.
	Module string
	// Driver is the driver's name (<dev>/driver), often equal to Module.
	Driver string
	// PCI is the PCI function the interface sits on, found by walking up
	// the device path (virtio_net's device is virtioN, whose parent is the
	// PCI function); nil for non-PCI devices.
	PCI *PCIAddr
}

// DriverModule is the module name the OS initrd must contain: Module, or
// Driver when sysfs names no module.
func (d NICDevice) DriverModule() string {
	if d.Module != "" {
		return d.Module
	}
	return d.Driver
}

var pciNameRE = regexp.MustCompile(`^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$`)

// ReadNICDevice reads /sys/class/net/<ifname> under the sysfs mount point
// sysfs (normally "/sys"; tests pass a fake tree): the MAC address, the
// driver and its module, and the PCI address.
func ReadNICDevice(sysfs, ifname string) (NICDevice, error) {
	var d NICDevice
	if ifname == "" || strings.ContainsAny(ifname, "/\x00") || ifname == "." || ifname == ".." {
		return d, fmt.Errorf("handoff: read NIC: invalid interface name %q", ifname)
	}
	dir := filepath.Join(sysfs, "class", "net", ifname)
	b, err := os.ReadFile(filepath.Join(dir, "address"))
	if err != nil {
		return d, fmt.Errorf("handoff: read NIC %s: %w", ifname, err)
	}
	if d.MAC, err = net.ParseMAC(strings.TrimSpace(string(b))); err != nil {
		return d, fmt.Errorf("handoff: read NIC %s: address: %w", ifname, err)
	}
	dev, err := filepath.EvalSymlinks(filepath.Join(dir, "device"))
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil // virtual interface: no device, no driver
	}
	if err != nil {
		return d, fmt.Errorf("handoff: read NIC %s: device: %w", ifname, err)
	}
	if drv, err := filepath.EvalSymlinks(filepath.Join(dev, "driver")); err == nil {
		d.Driver = filepath.Base(drv)
		if mod, err := filepath.EvalSymlinks(filepath.Join(drv, "module")); err == nil {
			d.Module = filepath.Base(mod)
		}
	}
	for p := dev; p != "/" && p != "." && len(p) > len(sysfs); p = filepath.Dir(p) {
		m := pciNameRE.FindStringSubmatch(filepath.Base(p))
		if m == nil {
			continue
		}
		dom, _ := strconv.ParseUint(m[1], 16, 16)
		bus, _ := strconv.ParseUint(m[2], 16, 8)
		slot, _ := strconv.ParseUint(m[3], 16, 8)
		fn, _ := strconv.ParseUint(m[4], 16, 8)
		if slot > 31 {
			break
		}
		d.PCI = &PCIAddr{Domain: uint16(dom), Bus: uint8(bus), Device: uint8(slot), Function: uint8(fn)}
		break
	}
	return d, nil
}
