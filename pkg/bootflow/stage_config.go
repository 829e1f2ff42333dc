package bootflow

import (
	"context"
	"errors"
	"fmt"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
)

// config is stage 2: the kernel command line, and a firmware iBFT if the
// platform's ROM left one. DHCP, the third source, comes with the network.
func (b *boot) config(ctx context.Context) (string, error) {
	src, err := bootcfg.ParseCmdline(b.o.Cmdline)
	if err != nil {
		return "", withCheck(err, "fix the lunboot.* / netroot= / rd.iscsi.* options on the kernel command line (docs/configuration.md lists them)")
	}
	b.cmdline = src

	fwNote := "no firmware iBFT"
	if t, err := ibft.Read(b.o.Sysfs); err == nil {
		if fw, ok := firmwareSource(t); ok {
			b.firmware = fw.Source()
			fwNote = "firmware iBFT found"
		} else {
			fwNote = "firmware iBFT without a boot target"
		}
	} else if !errors.Is(err, ibft.ErrNotFound) {
		b.o.Console.Info("warning: firmware iBFT unreadable: %v", err)
		fwNote = "firmware iBFT unreadable"
	}
	// Resolve (not Merge): the target may still come from DHCP.
	b.cfg = bootcfg.Resolve(b.cmdline, bootcfg.Source{}, b.firmware)
	for _, w := range b.cfg.Warnings {
		b.o.Console.Info("warning: %s", w)
	}
	where := "target from DHCP"
	if b.cmdline.Target.IsSet() {
		where = "target from the command line"
	} else if b.firmware.Target.IsSet() {
		where = "target from the firmware iBFT unless DHCP gives one"
	}
	return fmt.Sprintf("%s; %s", where, fwNote), nil
}

// firmwareSource picks the first target flagged for boot and its NIC, as
// iscsistart -b does.
func firmwareSource(t *ibft.Table) (bootcfg.Firmware, bool) {
	for _, tg := range t.Targets {
		if tg.IsZero() || tg.Flags&ibft.FlagValid == 0 || tg.Flags&ibft.FlagBoot == 0 {
			continue
		}
		fw := bootcfg.Firmware{
			Initiator:  t.Initiator.Name,
			TargetAddr: tg.Addr.Addr(),
			TargetPort: tg.Addr.Port(),
			LUN:        tg.LUN,
			TargetName: tg.Name,
		}
		if tg.CHAPType != ibft.CHAPNone {
			fw.CHAP = iscsi.CHAP{Username: tg.CHAPName, Secret: tg.CHAPSecret}
			if tg.CHAPType == ibft.CHAPMutual {
				fw.CHAP.TargetUsername, fw.CHAP.TargetSecret = tg.ReverseCHAPName, tg.ReverseCHAPSecret
			}
		}
		if int(tg.NICIndex) < len(t.NICs) {
			n := t.NICs[tg.NICIndex]
			fw.MAC = n.MAC
			fw.DHCP = n.Origin == ibft.OriginDHCP || n.DHCPServer.IsValid() && !n.DHCPServer.IsUnspecified()
			fw.RouterAdvert = n.Origin == ibft.OriginRouterAdv
			fw.Address, fw.Gateway, fw.Hostname, fw.VLAN = n.IP, n.Gateway, n.Hostname, n.VLAN
			for _, d := range n.DNS {
				if d.IsValid() && !d.IsUnspecified() {
					fw.DNS = append(fw.DNS, d)
				}
			}
		}
		return fw, true
	}
	return bootcfg.Firmware{}, false
}
