package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/handoff"
)

// Bounds for the Debian boot under TCG on a loaded two-core machine: they
// guard against hangs (lunboot reaches kexec in under a minute; Debian's
// boot after it takes 35–115 s).
const (
	jumpTimeout = 5 * time.Minute
	osTimeout   = 10 * time.Minute
)

// runDebian boots the Debian 12 disk (initramfs-tools + open-iscsi)
// through lunboot with nothing but DHCP option 17, waits for the OS's proof
// and its login prompt, and prints the summary.
func runDebian(ctx context.Context, o options, kernel, image string) error {
	return bootDebian(ctx, o, handoff.Config{Kernel: kernel, Image: image, Args: o.appendArgs})
}

// bootDebian boots the Debian disk (the UEFI-layout one under UEFI) with
// o's firmware and cfg's lunboot deliverable.
func bootDebian(ctx context.Context, o options, cfg handoff.Config) error {
	start := time.Now()
	set, err := distro.Build(ctx, distro.Options{NoBuild: true})
	if err != nil {
		if errors.Is(err, distro.ErrStale) {
			return fmt.Errorf("%w: run `make distro`", err)
		}
		return err
	}
	sys := set.Debian
	if o.firmware == qemuvm.UEFI {
		// A UEFI machine's Debian: ESP with grub-install's stub.
		if sys = set.DebianUEFI; sys == nil {
			return errors.New("no debian-uefi disk: run `make distro`")
		}
	}
	cfg.System = sys
	cfg.Firmware = o.firmware
	cfg.OnConsole = o.console("guest")
	fmt.Fprintf(o.stdout, "== firmware %s\n", o.firmware)
	fmt.Fprintf(o.stdout, "== disk %s: %s initrd, kernel %s, entry %s\n", sys.Disk, sys.Generator, sys.KernelRelease, sys.Entry)
	l, err := newLab(ctx, o)
	if err != nil {
		return err
	}
	defer l.Close()
	fail := func(err error) error { return fmt.Errorf("%w\nlogs in %s", err, l.LogDir()) }
	m, err := handoff.Start(ctx, l, cfg)
	if err != nil {
		return fail(err)
	}
	defer m.Kill()
	how := fmt.Sprintf("command line %q", m.Cmdline)
	switch {
	case cfg.EFI != "":
		how = cfg.EFI + " as \\EFI\\BOOT\\BOOTX64.EFI on a local ESP, its built-in command line"
	case cfg.Image == "":
		how = cfg.Kernel + " alone (no initrd), " + how
	}
	fmt.Fprintf(o.stdout, "== target %s on %s, LUN 1 = %s; DHCP option 17 %q and nothing else\n== powering on (%v): lunboot, %s\n",
		m.Export.IQN, m.Export.Portal, sys.Disk, m.Export.RootPath(), cfg.Firmware, how)

	if err := m.WaitJump(ctx, jumpTimeout); err != nil {
		fmt.Fprintln(o.stdout)
		handoff.WriteSummary(o.stdout, m.Stages(), nil)
		return fail(err)
	}
	res, err := m.WaitOS(ctx, osTimeout, true)
	m.Kill()
	stages := m.Stages()
	fmt.Fprintf(o.stdout, "\n== summary\n")
	handoff.WriteSummary(o.stdout, stages, res)
	if err != nil {
		return fail(fmt.Errorf("the OS did not report in: %w", err))
	}
	if err := res.Proof.Verify(m.Want(nil)); err != nil {
		return fail(fmt.Errorf("the OS booted, but its root is not what lunboot handed over: %w", err))
	}
	fmt.Fprintf(o.stdout, "\n== done in %s: Debian booted through lunboot from %s LUN 1 and logged in again on its own\n",
		round(time.Since(start)), m.Export.IQN)
	return nil
}
