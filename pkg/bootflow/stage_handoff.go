package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
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
		// Several paths go to the OS only when its initrd has
		// dm-multipath or lunboot.multipath=1 asks (handoff.Prepare).
		Multipath: b.cfg.Multipath,
	}
	if k, err := os.Open(b.kernel); err == nil {
		req.KernelVersion, err = handoff.KernelRelease(k)
		k.Close()
		if err != nil {
			b.log.Debug("OS kernel version unknown", "err", err)
		}
	}
	var parts []fs.FS
	for _, p := range b.found.Partitions {
		if p.Mounted != "" {
			parts = append(parts, os.DirFS(p.Mounted))
		}
	}
	if req.KernelVersion != "" {
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
	if b.cfg.Overlay.Kind != handoff.OverlayNone {
		if err := b.goldenImage(ctx, &req, parts); err != nil {
			return "", err
		}
	}
	var carry *handoff.CarryPlan
	if req.Mode == handoff.ModeCarry || req.Mode == handoff.ModeAuto && !req.Force {
		carry, req.Carry = handoff.PlanCarry(req.Initrd, parts, req.KernelVersion, info.NIC.Driver, busModules(b.o.Sysfs, b.net.Link.Name)...)
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
		if errors.Is(err, handoff.ErrInitramfsToolsIPv6) {
			// Nothing in the initrd speaks IPv6: lunboot.force=1 cannot help.
			return "", permanent(withCheck(err, "boot this OS over IPv4, or rebuild its initrd with dracut (dracut --add \"iscsi network-legacy\")"))
		}
		return "", permanent(withCheck(err, "rebuild the OS initrd with iSCSI support (see above), or boot with lunboot.force=1 to kexec anyway"))
	}
	b.log.Info("hand-off decided", "mode", plan.Mode, "reason", plan.Reason)
	b.osCmdline = plan.Cmdline
	b.o.Console.Info("  hand-off %s: %s", plan.Mode, plan.Reason)
	b.o.Console.Info("  OS command line: %s", handoff.MaskCmdline(plan.Cmdline))
	if plan.Mode == handoff.ModeCarry {
		return b.carryIn(carry, req.Initrd, osInitrd, info)
	}
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
	// The other paths, after the one in use (the iBFT and dracut take
	// addresses, not names: a named portal stays out).
	for _, p := range b.session.Paths()[1:] {
		if a, err := netip.ParseAddr(p.Host); err == nil && p.Portal() != si.Portal {
			info.MorePaths = append(info.MorePaths, handoff.Target{Addr: netip.AddrPortFrom(a, p.Port), Name: si.TargetName, LUN: b.cfg.Target.LUN, TPGT: p.TPGT})
		}
	}
	if si.CHAP != iscsi.CHAPNone {
		info.CHAP = &iscsi.CHAP{Username: b.cfg.CHAP.Username, Secret: b.cfg.CHAP.Secret}
		if si.CHAP == iscsi.CHAPMutual {
			info.CHAP.TargetUsername, info.CHAP.TargetSecret = b.cfg.CHAP.TargetUsername, b.cfg.CHAP.TargetSecret
		}
	}
	if b.resolved.IsValid() && b.resolved == ap {
		// The portal the name resolved to, not one a redirection chose.
		info.Target.Host = b.cfg.Target.Server
	}
	n := b.net
	info.NIC = handoff.NIC{
		Name: n.Link.Name, MAC: n.Link.MAC, Driver: n.Link.Module,
		Addr: n.Address, Gateway: n.Gateway, DNS: n.DNS, Hostname: n.Hostname,
		HostnameGiven: b.cfg.Origin(bootcfg.FieldHostname).Kind == bootcfg.Cmdline,
		Origin:        ibft.OriginManual,
		VLAN:          n.Link.VLAN,
	}
	if info.NIC.Driver == "" {
		info.NIC.Driver = n.Link.Driver
	}
	switch n.Origin {
	case netconf.OriginDHCP:
		info.NIC.Origin, info.NIC.DHCPServer = ibft.OriginDHCP, n.Server
	case netconf.OriginDHCPv6:
		// iBFT origin is the Windows NL_PREFIX_ORIGIN of the address:
		// Dhcp (3) for DHCPv6, RouterAdvertisement (4) for SLAAC; EDK2
		// writes neither right for IPv6 (edk2 issue 9572). The DHCPv6
		// server has no address to record (it answers from its
		// link-local address and is named by its DUID).
		info.NIC.Origin = ibft.OriginDHCP
	case netconf.OriginSLAAC:
		info.NIC.Origin = ibft.OriginRouterAdv
	}
	if bdf, ok := n.Link.PCIBDF(); ok {
		info.NIC.PCI = &handoff.PCIAddr{Bus: uint8(bdf >> 8), Device: uint8(bdf>>3) & 0x1f, Function: uint8(bdf) & 7}
	}
	return info, nil
}

// carryIn builds the carry cpio (handoff.WriteCarry: this very binary, the
// OS kernel's modules from the LUN, the hook, the session's settings) and
// appends it to the OS initrd, in tmpfs like the other copies.
func (b *boot) carryIn(plan *handoff.CarryPlan, in *handoff.Initrd, osInitrd *os.File, info *handoff.Info) (string, error) {
	start := time.Now()
	if plan == nil || osInitrd == nil {
		return "", permanent(errors.New("carry-in was chosen without a carry plan or an OS initrd"))
	}
	// The binary is streamed into the initrd, never read whole: held in
	// memory with its copy in the cpio it took the boot's peak RSS to
	// 63–66 MiB.
	bin, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("carry-in: open the running lunboot: %w", err)
	}
	defer bin.Close()
	binInfo, err := bin.Stat()
	if err != nil {
		return "", fmt.Errorf("carry-in: the running lunboot: %w", err)
	}
	si := b.session.Info()
	n := b.net
	set := &handoff.CarrySettings{
		V: handoff.CarrySettingsVersion, Portal: si.Portal, Target: si.TargetName,
		LUN: b.cfg.Target.LUN.Linux(), Initiator: b.cfg.Initiator, ISID: b.isid.String(),
		HeaderDigest: b.cfg.HeaderDigest.Policy().String(), DataDigest: b.cfg.DataDigest.Policy().String(),
		MAC: n.Link.MAC.String(), Address: n.Address.String(), MTU: n.MTU, Release: plan.Release,
	}
	if n.Gateway.IsValid() {
		set.Gateway = n.Gateway.String()
	}
	if b.cfg.Overlay.Kind != handoff.OverlayNone {
		set.Overlay, set.OverlaySize = b.cfg.Overlay.String(), b.cfg.OverlaySize
	}
	if c := info.CHAP; c != nil {
		set.CHAPUser, set.CHAPSecret, set.CHAPTargetUser, set.CHAPTargetSecret = c.Username, c.Secret, c.TargetUsername, c.TargetSecret
	}
	order, _ := in.Captured("scripts/local-top/ORDER")
	final := b.tempPath("lunboot-initrd")
	f, err := os.Create(final)
	if err != nil {
		return "", err
	}
	if _, err := osInitrd.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return "", err
	}
	total, contents, err := handoff.AppendCarry(f, osInitrd, handoff.CarryInput{
		Binary: bin, BinarySize: binInfo.Size(), Plan: plan, Settings: set, Order: order})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(final)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return "", permanent(withCheck(err, "the OS's module tree on the LUN must be readable"))
		}
		return "", permanent(fmt.Errorf("writing the initrd with the carry cpio: %w", err))
	}
	os.Remove(b.initrd)
	b.initrd = final
	b.o.Console.Info("  carry cpio %s: lunboot %s, %d OS modules (%s: %s), hook %s, settings; initrd now %s",
		bytesize.Format(contents.Size), bytesize.Format(contents.BinarySize), len(contents.Modules),
		bytesize.Format(int64(contents.ModuleBytes)), strings.Join(contents.Modules, " "), contents.Hook, bytesize.Format(total))
	return fmt.Sprintf("%s initrd; hand-off carry (carry cpio %s built in %s)", plan.Generator, bytesize.Format(contents.Size), time.Since(start).Round(10*time.Millisecond)), nil
}

// busModules lists the modules of the drivers above a network interface's
// device in sysfs (for virtio_net: virtio_pci, which drives the PCI
// function virtio<N> hangs off), nearest first.
func busModules(sysfs, ifname string) []string {
	dev, err := filepath.EvalSymlinks(filepath.Join(sysfs, "class/net", ifname, "device"))
	if err != nil {
		return nil
	}
	var mods []string
	for d := filepath.Dir(dev); d != "/" && d != "." && strings.HasPrefix(d, sysfs); d = filepath.Dir(d) {
		if p, err := filepath.EvalSymlinks(filepath.Join(d, "driver", "module")); err == nil {
			mods = append(mods, filepath.Base(p))
		}
	}
	return mods
}
