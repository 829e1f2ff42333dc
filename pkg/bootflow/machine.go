package bootflow

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/lunboot/lunboot/pkg/nbd"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/osfind"
	"github.com/lunboot/lunboot/pkg/scsi"
	"github.com/u-root/u-root/pkg/boot/kexec"
)

// Machine is what Boot does to the machine beyond its own memory: the
// network interface, the connections to the portal, the block device, the
// mounts and kexec. A nil field is the real one; tests replace them to run
// Boot in-process, without root or QEMU.
type Machine struct {
	// Network configures the boot interface (stage 3): netconf.Configure.
	Network func(context.Context, netconf.Options) (*netconf.Config, error)
	// Dial opens the TCP connections to the iSCSI portal (stage 5); nil
	// is package iscsi's own dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolve looks a root-path's host name up through the given DNS
	// servers (stage 5): netconf.LookupHost with Dial's network.
	Resolve func(ctx context.Context, host string, servers []netip.Addr) ([]netip.Addr, error)
	// AttachNBD serves the LUN's disk as a kernel block device (stage 6):
	// nbd.Attach.
	AttachNBD func(context.Context, *scsi.Disk, nbd.AttachOptions) (BlockDevice, error)
	// FindOS mounts the block device's partitions read-only and reads their
	// boot entries (stage 7): osfind.Scan.
	FindOS func(ctx context.Context, log *slog.Logger, device string) (*osfind.Found, error)
	// KexecLoad stages the OS kernel, initrd (nil for none) and command
	// line in the kernel (stage 10): kexec.FileLoad.
	KexecLoad func(kernel, initrd *os.File, cmdline string) error
	// Kexec jumps into the staged kernel and returns only on failure
	// (stage 12): kexec.Reboot.
	Kexec func() error
	// WatchLink reports the boot NIC's carrier changes until ctx ends:
	// netconf.WatchCarrier; with a replaced Network (a test) nil watches
	// nothing.
	WatchLink func(ctx context.Context, l netconf.Link, onChange func(up bool)) error
}

// BlockDevice is the LUN attached as a kernel block device (*nbd.Device).
type BlockDevice interface {
	// Path is the device node, /dev/nbdN.
	Path() string
	// Partitions are the partitions' device nodes.
	Partitions() []string
	// Detach flushes and removes the device.
	Detach(ctx context.Context) error
}

// withDefaults fills the nil fields with the real machine.
func (m Machine) withDefaults() Machine {
	if m.Network == nil {
		m.Network = netconf.Configure
		if m.WatchLink == nil {
			m.WatchLink = netconf.WatchCarrier
		}
	}
	if m.Resolve == nil {
		dial := m.Dial
		m.Resolve = func(ctx context.Context, host string, servers []netip.Addr) ([]netip.Addr, error) {
			return netconf.LookupHost(ctx, host, servers, dial)
		}
	}
	if m.AttachNBD == nil {
		m.AttachNBD = func(ctx context.Context, d *scsi.Disk, o nbd.AttachOptions) (BlockDevice, error) {
			dev, err := nbd.Attach(ctx, d, o)
			if err != nil {
				return nil, err
			}
			return dev, nil
		}
	}
	if m.FindOS == nil {
		m.FindOS = osfind.Scan
	}
	if m.KexecLoad == nil {
		m.KexecLoad = kexec.FileLoad
	}
	if m.Kexec == nil {
		m.Kexec = kexec.Reboot
	}
	return m
}
