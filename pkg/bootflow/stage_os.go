package bootflow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/osfind"
	"github.com/u-root/u-root/pkg/boot/kexec"
)

// findOS is stage 8: the LUN's partitions mounted read-only, their boot
// entries read, one chosen (lunboot.entry=, or the menu, or the default).
func (b *boot) findOS(ctx context.Context) (string, error) {
	f, err := osfind.Scan(ctx, b.log, b.nbd.Path())
	if err != nil {
		return "", err
	}
	b.found = f
	if len(f.Entries) == 0 {
		return "", permanent(withCheck(fmt.Errorf("%w on %s:\n%s", osfind.ErrNoEntries, b.nbd.Path(), f.Summary()),
			"the LUN needs a boot partition with BLS entries (loader/entries/*.conf), a GRUB grub.cfg or a syslinux.cfg naming a Linux kernel"))
	}
	sel := b.cfg.Entry
	if b.cfg.MenuTimeout > 0 && b.o.Menu != nil && sel == "" {
		sel = b.menu(ctx, f)
	}
	e, err := f.Choose(sel)
	if err != nil {
		return "", permanent(withCheck(err, "fix lunboot.entry= (a title, a unique part of one, or a number from the list)"))
	}
	b.entry = e
	return fmt.Sprintf("%s entry %q on %s (%s found)", e.Format, e.Label, e.Device, plural(len(f.Entries), "entry", "entries")), nil
}

// menu shows the entries and waits lunboot.menu_timeout= for a choice on
// the console; no answer boots the default.
func (b *boot) menu(ctx context.Context, f *osfind.Found) string {
	b.o.Console.Info("boot menu (default 0, %s to choose):\n%s", b.cfg.MenuTimeout, f.List())
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(b.o.Menu).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(b.cfg.MenuTimeout):
		return ""
	case <-ctx.Done():
		return ""
	}
}

// load is the first half of stage 9: the entry's kernel and initrd copied
// from the LUN into memory (tmpfs), with progress, because kexec_file_load
// takes files and the LUN goes away before the jump.
func (b *boot) load(ctx context.Context) (string, error) {
	e := b.entry
	var total int64
	start := time.Now()
	b.kernel = b.tempPath("lunboot-kernel")
	n, err := b.copyOut(ctx, "kernel", e.Kernel, b.kernel)
	if err != nil {
		return "", err
	}
	total += n
	if e.Initrd != nil {
		b.initrd = b.tempPath("lunboot-os-initrd")
		m, err := b.copyOut(ctx, "initrd", e.Initrd, b.initrd)
		if err != nil {
			return "", err
		}
		total += m
	}
	d := time.Since(start)
	return fmt.Sprintf("kernel %s, initrd %s: %s in %s (%.1f MB/s)", bytesize.Format(n), bytesize.Format(total-n),
		bytesize.Format(total), d.Round(10*time.Millisecond), float64(total)/1e6/max(d.Seconds(), 1e-3)), nil
}

// copyOut copies r to the file dst, reporting progress every two seconds.
func (b *boot) copyOut(ctx context.Context, what string, r io.ReaderAt, dst string) (int64, error) {
	f, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("creating %s copy: %w", what, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var off int64
	start, last := time.Now(), time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, rerr := r.ReadAt(buf, off)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return off, fmt.Errorf("writing %s copy: %w", what, err)
			}
			off += int64(n)
		}
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			b.o.Console.Info("  %s: %s so far (%.1f MB/s)", what, bytesize.Format(off), float64(off)/1e6/time.Since(start).Seconds())
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return off, fmt.Errorf("reading the %s from the LUN: %w", what, rerr)
		}
	}
	if off == 0 {
		return 0, fmt.Errorf("the entry's %s is empty", what)
	}
	return off, f.Close()
}

// handoff is the second half of stage 9: the OS initrd inspected (can it
// log in again?), the command line in its dialect, and the iBFT prepended.
func (b *boot) handoff(ctx context.Context) (string, error) {
	info, err := b.handoffInfo()
	if err != nil {
		return "", err
	}
	mode := handoff.ModeAuto
	if b.cfg.Origin(bootcfg.FieldHandoff).Kind != bootcfg.Default {
		if mode, err = handoff.ParseMode(b.cfg.Handoff.String()); err != nil {
			return "", permanent(err)
		}
	}
	req := handoff.Request{
		Entry:   strings.TrimSpace(b.entry.Cmdline + " " + b.cfg.Append),
		Info:    info,
		Mode:    mode,
		NoCheck: b.cfg.Force,
	}
	req.KernelVersion = kernelVersion(b.kernel)
	if req.KernelVersion != "" {
		req.Kernel, req.ExtraBuiltin = b.osKernelFacts(req.KernelVersion)
	}
	if sb, err := handoff.SecureBoot(b.o.Sysfs); err == nil {
		req.SecureBoot = sb
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
		ird, err := handoff.Inspect(osInitrd, size)
		if err != nil {
			if !b.cfg.Force {
				return "", permanent(withCheck(fmt.Errorf("inspecting the OS initrd: %w", err), "boot with lunboot.force=1 to kexec without the check"))
			}
			b.o.Console.Info("warning: OS initrd not inspected (%v); lunboot.force=1 goes on", err)
		} else {
			req.Initrd = ird
			if ird.Generator == handoff.GeneratorUnknown && b.cfg.Force {
				// lunboot.force=1 on an initrd of unknown make: speak
				// dracut's dialect, the one most initrds understand.
				b.o.Console.Info("warning: OS initrd of unknown make; lunboot.force=1 hands off in dracut's dialect")
				req.Dialect = handoff.Dialect{Generator: handoff.GeneratorDracut}
			}
		}
	}
	if req.Initrd == nil {
		if !b.cfg.Force {
			return "", permanent(withCheck(errors.New("the boot entry has no initrd, so the OS cannot log in to its iSCSI root"),
				"give the entry an initrd built with iSCSI support, or boot with lunboot.force=1"))
		}
		req.Dialect = handoff.Dialect{Generator: handoff.GeneratorDracut}
	}
	plan, err := handoff.Prepare(req)
	if plan != nil {
		for _, n := range plan.Notes {
			b.o.Console.Info("  %s", n)
		}
	}
	if err != nil {
		if plan != nil && plan.Capability != nil {
			b.o.Console.Info("%s", plan.Capability.Report())
		}
		return "", permanent(withCheck(err, "rebuild the OS initrd with iSCSI support (see above), or boot with lunboot.force=1 to kexec anyway"))
	}
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

// osKernelFacts reads what the OS kernel's build says about taking a table
// from the initrd (config-<version> beside it on the boot partition), and
// the modules it has built in (modules.builtin on its root partition).
func (b *boot) osKernelFacts(kver string) (handoff.KernelSupport, []string) {
	var ks handoff.KernelSupport
	var builtin []string
	for _, p := range b.found.Partitions {
		if p.Mounted == "" {
			continue
		}
		for _, dir := range []string{"", "boot"} {
			if f, err := os.Open(filepath.Join(p.Mounted, dir, "config-"+kver)); err == nil {
				if k, err := handoff.ParseKernelConfig(f); err == nil {
					ks = k
				}
				f.Close()
			}
		}
		for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
			raw, err := os.ReadFile(filepath.Join(p.Mounted, dir, kver, "modules.builtin"))
			if err != nil {
				continue
			}
			for _, line := range strings.Fields(string(raw)) {
				builtin = append(builtin, strings.TrimSuffix(filepath.Base(line), ".ko"))
			}
		}
	}
	return ks, builtin
}

// kernelVersion reads the version string of an x86 bzImage: the setup
// header's kernel_version field (offset 0x20E) points, relative to 0x200,
// at "6.1.0-56-amd64 (debian-kernel@…) #1 SMP …" (Documentation/arch/x86/boot.rst).
func kernelVersion(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := f.ReadAt(hdr, 0); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return ""
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	s := make([]byte, 128)
	n, _ := f.ReadAt(s, off)
	s = s[:n]
	if i := bytes.IndexAny(s, " \x00"); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// kexecLoad is the last half of stage 9: kexec_file_load(2) of the copies.
// The kernel verifies and stages them now, so that a failure still leaves
// the session, the disk and the rescue shell usable.
func (b *boot) kexecLoad(ctx context.Context) (string, error) {
	k, err := os.Open(b.kernel)
	if err != nil {
		return "", err
	}
	defer k.Close()
	var ird *os.File
	if b.initrd != "" {
		if ird, err = os.Open(b.initrd); err != nil {
			return "", err
		}
		defer ird.Close()
	}
	if err := kexec.FileLoad(k, ird, b.osCmdline); err != nil {
		return "", withCheck(fmt.Errorf("kexec_file_load: %w", err),
			"the firmware kernel needs CONFIG_KEXEC_FILE; under Secure Boot lockdown the OS kernel must be signed")
	}
	return fmt.Sprintf("%s loaded", b.entry.Label), nil
}

// shutdown is stage 10: everything lunboot set up is undone in reverse so
// that the OS finds the target without a stale session (RFC 7143 §11.14
// logout, reason "close the session") and the NIC unconfigured.
func (b *boot) shutdown(ctx context.Context) (string, error) {
	var done []string
	if err := b.found.Close(); err != nil {
		b.o.Console.Info("warning: %v", err)
	}
	b.found = nil
	done = append(done, "unmounted")
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.nbd.Detach(dctx); err != nil {
		b.o.Console.Info("warning: %v", err) // it names the device
	} else {
		done = append(done, b.nbd.Path()+" detached")
	}
	b.nbd = nil
	b.disk.Close()
	b.disk = nil
	if err := b.session.Logout(dctx); err != nil {
		b.o.Console.Info("warning: iSCSI logout: %v (the target drops the session when the OS logs in with the same initiator)", err)
		b.session.Close()
	} else {
		done = append(done, "logged out")
	}
	b.session = nil
	if err := b.net.Down(); err != nil {
		b.o.Console.Info("warning: taking %s down: %v", b.net.Link.Name, err)
	} else {
		done = append(done, b.net.Link.Name+" down")
	}
	return strings.Join(done, ", "), nil
}

// kexecReboot is kexec.Reboot; tests replace it.
var kexecReboot = kexec.Reboot

// exec jumps into the loaded kernel. It returns only on failure.
func (b *boot) exec() error {
	if f, ok := b.o.Console.(Flusher); ok {
		f.Flush()
	}
	err := kexecReboot()
	return &StageError{Stage: "kexec", Err: err, Check: "the kernel refused the jump; the loaded image is lost, run `lunboot boot` again"}
}
