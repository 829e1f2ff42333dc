package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// handoff is stage 9: the OS initrd inspected (can it log in again?), the
// OS kernel's release and build facts read, the hand-off decided
// (handoff.Decide, through Prepare), the command line in the initrd's
// dialect, and the iBFT prepended.
func (b *boot) handoff(ctx context.Context) (string, error) {
	info, err := b.handoffInfo()
	if err != nil {
		return "", err
	}
	req := handoff.Request{
		Entry: strings.TrimSpace(b.entry.Cmdline + " " + b.cfg.Append),
		Info:  info,
		Mode:  b.cfg.Handoff,
		Force: b.cfg.Force,
	}
	if k, err := os.Open(b.kernel); err == nil {
		req.KernelVersion, err = handoff.KernelRelease(k)
		k.Close()
		if err != nil {
			b.log.Debug("OS kernel version unknown", "err", err)
		}
	}
	if req.KernelVersion != "" {
		var parts []fs.FS
		for _, p := range b.found.Partitions {
			if p.Mounted != "" {
				parts = append(parts, os.DirFS(p.Mounted))
			}
		}
		req.Kernel, req.ExtraBuiltin = handoff.ReadKernelFacts(parts, req.KernelVersion)
	}
	if sb, err := handoff.SecureBoot(b.o.Sysfs); err == nil {
		req.SecureBoot = sb
	}
	// A locked-down firmware kernel stands for Secure Boot: kexec takes
	// only signed kernels, and the OS will lock down too and ignore an
	// iBFT from its initrd, so the hand-off goes by the command line.
	if lvl, err := handoff.ReadLockdown(b.o.Sysfs); err != nil {
		b.log.Warn("kernel lockdown unknown", "err", err)
	} else {
		b.lockdown, req.Lockdown = lvl, lvl
		if handoff.LockedDown(lvl) {
			b.o.Console.Info("  kernel lockdown: %s (Secure Boot): the OS kernel must be signed, and the hand-off goes by the command line", lvl)
		}
	}
	var osInitrd *os.File
	var size int64
	if b.initrd != "" {
		if osInitrd, err = os.Open(b.initrd); err != nil {
			return "", err
		}
		defer osInitrd.Close()
		st, err := osInitrd.Stat()
		if err != nil {
			return "", err
		}
		size = st.Size()
		req.Initrd, req.InspectErr = handoff.Inspect(osInitrd, size)
	}
	plan, err := handoff.Prepare(req)
	if plan != nil {
		for _, w := range plan.Warnings {
			b.o.Console.Info("warning: %s", w)
		}
		for _, n := range plan.Notes {
			b.o.Console.Info("  %s", n)
		}
	}
	if err != nil {
		if plan != nil && plan.Capability != nil {
			b.o.Console.Info("%s", plan.Capability.Report())
		}
		var re *handoff.RefusedError
		if errors.Is(err, handoff.ErrLockdownSecrets) {
			return "", permanent(withCheck(err, "%s", advice.LockdownCHAP()))
		}
		if errors.As(err, &re) {
			return "", permanent(withCheck(err, "%s", re.Fix))
		}
		return "", permanent(withCheck(err, "rebuild the OS initrd with iSCSI support (see above), or boot with lunboot.force=1 to kexec anyway"))
	}
	b.log.Info("hand-off decided", "mode", plan.Mode, "reason", plan.Reason)
	b.osCmdline = plan.Cmdline
	b.o.Console.Info("  OS command line: %s", handoff.MaskCmdline(plan.Cmdline))
	if osInitrd != nil && plan.EarlyCPIO != nil {
		r, n, err := plan.Initrd(osInitrd, size)
		if err != nil {
			return "", err
		}
		final := b.tempPath("lunboot-initrd")
		f, err := os.Create(final)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(f, io.NewSectionReader(r, 0, n)); err != nil {
			f.Close()
			return "", fmt.Errorf("writing the initrd with the iBFT: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", err
		}
		os.Remove(b.initrd)
		b.initrd = final
	}
	gen := "unknown"
	if plan.Capability != nil {
		gen = plan.Capability.Dialect.String()
	}
	s := fmt.Sprintf("%s initrd; hand-off %s", gen, plan.Mode)
	if plan.Table != nil {
		s += fmt.Sprintf(" (iBFT %d bytes in the initrd)", len(plan.Table))
	}
	return s, nil
}

// handoffInfo describes the session for the OS: the portal actually used
// (after any redirection), the NIC by MAC and PCI address, and CHAP only if
// the target demanded it.
func (b *boot) handoffInfo() (*handoff.Info, error) {
	si := b.session.Info()
	ap, err := netip.ParseAddrPort(si.Portal)
	if err != nil {
		return nil, fmt.Errorf("the hand-off needs the portal as an IP address, got %q: %w", si.Portal, err)
	}
	info := &handoff.Info{
		InitiatorName: b.cfg.Initiator,
		Target:        handoff.Target{Addr: ap, Name: si.TargetName, LUN: b.cfg.Target.LUN, TPGT: si.TPGT},
		ISCSIParams:   b.cfg.ISCSIParams,
	}
	if si.CHAP != iscsi.CHAPNone {
		info.CHAP = &iscsi.CHAP{Username: b.cfg.CHAP.Username, Secret: b.cfg.CHAP.Secret}
		if si.CHAP == iscsi.CHAPMutual {
			info.CHAP.TargetUsername, info.CHAP.TargetSecret = b.cfg.CHAP.TargetUsername, b.cfg.CHAP.TargetSecret
		}
	}
	n := b.net
	info.NIC = handoff.NIC{
		Name: n.Link.Name, MAC: n.Link.MAC, Driver: n.Link.Module,
		Addr: n.Address, Gateway: n.Gateway, DNS: n.DNS, Hostname: n.Hostname,
		HostnameGiven: b.cfg.Origin(bootcfg.FieldHostname).Kind == bootcfg.Cmdline,
		Origin:        ibft.OriginManual,
	}
	if info.NIC.Driver == "" {
		info.NIC.Driver = n.Link.Driver
	}
	if n.Origin == netconf.OriginDHCP {
		info.NIC.Origin, info.NIC.DHCPServer = ibft.OriginDHCP, n.Server
	}
	if bdf, ok := n.Link.PCIBDF(); ok {
		info.NIC.PCI = &handoff.PCIAddr{Bus: uint8(bdf >> 8), Device: uint8(bdf>>3) & 0x1f, Function: uint8(bdf) & 7}
	}
	return info, nil
}
