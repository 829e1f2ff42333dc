package main

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	start := time.Now()
	set, err := distro.Build(ctx, distro.Options{NoBuild: true})
	if err != nil {
		if errors.Is(err, distro.ErrStale) {
			return fmt.Errorf("%w: run `make distro`", err)
		}
		return err
	}
	sys := set.Debian
	fmt.Fprintf(o.stdout, "== disk %s: %s initrd, kernel %s, entry %s\n", sys.Disk, sys.Generator, sys.KernelRelease, sys.Entry)
	l, err := newLab(ctx, o)
	if err != nil {
		return err
	}
	defer l.Close()
	fail := func(err error) error { return fmt.Errorf("%w\nlogs in %s", err, l.LogDir()) }
	lio := o.target == "lio"
	if lio {
		fmt.Fprintf(o.stdout, "== starting the LIO target VM (a second guest; about a minute under TCG)\n")
	}
	m, err := handoff.Start(ctx, l, handoff.Config{Kernel: kernel, Image: image, System: sys, Args: o.appendArgs, OnConsole: o.console("guest"), LIO: lio})
	if err != nil {
		return fail(err)
	}
	defer m.Kill()
	fmt.Fprintf(o.stdout, "== target %s (%s) on %s, LUN %d = %s; DHCP option 17 %q and nothing else\n== powering on: lunboot, command line %q\n",
		m.Export.IQN, o.target, m.Export.Portal, m.Export.LUNBase, sys.Disk, m.Export.RootPath(), m.Cmdline)

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
	fmt.Fprintf(o.stdout, "\n== done in %s: Debian booted through lunboot from %s (%s) LUN %d and logged in again on its own\n",
		round(time.Since(start)), m.Export.IQN, o.target, res.Proof.Root.LUN)
	return nil
}
