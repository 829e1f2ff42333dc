package bootflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/kmod"
)

// modules is stage 1: load the drivers the image carries, with the
// <module>.<param>= values of the command line. A module that fails is
// reported by name and the boot goes on; the stages that need it fail later
// with their own message. The stage is bounded by kmod.LoadTimeout: a
// module whose init never returns ends the boot naming it.
func (b *boot) modules(ctx context.Context) (string, error) {
	mctx, cancel := context.WithTimeout(ctx, kmod.LoadTimeout)
	defer cancel()
	res, err := kmod.LoadAll(mctx, b.log, kmod.Options{Params: kmod.ParamsFromCmdline(b.o.Cmdline)})
	if err != nil {
		if errors.Is(err, kmod.ErrWrongKernel) {
			b.o.Console.Info("warning: %v", err)
			return "none loaded: the image's modules are for another kernel", nil
		}
		if mctx.Err() != nil && ctx.Err() == nil {
			var stuck []string
			for _, r := range res {
				if r.Status == kmod.Skipped && errors.Is(r.Err, context.DeadlineExceeded) {
					stuck = append(stuck, r.Name)
				}
			}
			return "", withCheck(fmt.Errorf("%w (not finished within %s: %s)", err, kmod.LoadTimeout, strings.Join(stuck, ", ")),
				"the first module named waits for hardware or firmware that does not answer; `lunboot modules -v` in the rescue shell shows it, and <module>.<param>= on the command line can configure it")
		}
		return "", err
	}
	var loaded, present, failed []string
	for _, r := range res {
		switch {
		case r.Status == kmod.Loaded:
			loaded = append(loaded, r.Name)
		case r.Status.OK():
			present = append(present, r.Name)
		case r.Status == kmod.Failed || r.Status == kmod.Skipped:
			failed = append(failed, r.Name)
			b.o.Console.Info("module %s %s: %s", r.Name, r.Status, r.Detail())
		}
	}
	s := fmt.Sprintf("%d loaded, %d already present", len(loaded), len(present))
	if len(failed) > 0 {
		s += fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(failed, ", "))
	}
	return s, nil
}

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
