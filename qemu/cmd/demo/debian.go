package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
)

// Bounds for the Debian boot under TCG on a loaded two-core machine: they
// guard against hangs (lunboot reaches kexec in under a minute; Debian's
// boot after it takes 35–115 s).
const (
	jumpTimeout = 5 * time.Minute
	osTimeout   = 10 * time.Minute
)

// runDebian boots the Debian 12 disk (initramfs-tools + open-iscsi; with
// -os dracut its dracut twin; with -os noiscsi its copy without iSCSI in the
// initrd, which lunboot boots by carry-in) through lunboot with nothing but
// DHCP option 17, or over scenario s's lab network, waits for the OS's proof
// and its login prompt, and prints the summary.
func runDebian(ctx context.Context, o options, kernel, image string, s *scenario) error {
	return bootDebian(ctx, o, handoff.Config{Kernel: kernel, Image: image}, s)
}

// bootDebian boots the Debian disk (the UEFI-layout one under UEFI) with
// o's firmware and cfg's lunboot deliverable (Kernel and Image, Kernel
// alone, or EFI), over scenario s's lab network when s is not nil.
func bootDebian(ctx context.Context, o options, cfg handoff.Config, s *scenario) error {
	runs := max(o.runs, 1)
	if runs == 1 {
		_, _, err := bootDebianOnce(ctx, o, cfg, s, true)
		return err
	}
	// Several runs (make bench): each boot prints its summary, and one
	// timeline at the end gives each mark's median and range.
	var tls [][]time.Duration
	var feet []string
	for r := range runs {
		fmt.Fprintf(o.stdout, "\n== run %d of %d\n", r+1, runs)
		tl, foot, err := bootDebianOnce(ctx, o, cfg, s, false)
		if err != nil {
			return fmt.Errorf("run %d of %d: %w", r+1, runs, err)
		}
		tls = append(tls, tl)
		if foot != "" {
			feet = append(feet, fmt.Sprintf("lunboot footprint, run %d: %s", r+1, foot))
		}
	}
	writeTimelines(o.stdout, []string{"lunboot"}, lunbootMarks(debianMarks...), [][][]time.Duration{tls}, feet, debianFairness(o))
	return nil
}

// debianFairness is the timeline's note on how the boot was measured.
func debianFairness(o options) string {
	if o.target == "lio" {
		return strings.Replace(fairness, "same tgtd", "same LIO target VM", 1)
	}
	return fairness
}

// bootDebianOnce is one boot of bootDebian: it returns the boot's timeline
// (one entry per lunbootMarks(debianMarks...)) and lunboot's footprint
// line, and prints the timeline itself when printTimeline is set.
func bootDebianOnce(ctx context.Context, o options, cfg handoff.Config, s *scenario, printTimeline bool) ([]time.Duration, string, error) {
	carry := o.osName == "noiscsi"
	start := time.Now()
	set, err := distro.Build(ctx, distro.Options{NoBuild: true})
	if err != nil {
		if errors.Is(err, distro.ErrStale) {
			return nil, "", fmt.Errorf("%w: run `make distro`", err)
		}
		return nil, "", err
	}
	sys := set.Debian
	switch o.osName {
	case "noiscsi":
		sys = set.NoISCSI
	case "dracut":
		sys = set.Dracut
	}
	if o.firmware == qemuvm.UEFI {
		// A UEFI machine's Debian: ESP with grub-install's stub.
		if sys = set.DebianUEFI; sys == nil {
			return nil, "", errors.New("no debian-uefi disk: run `make distro`")
		}
	}
	cfg.System = sys
	cfg.Firmware = o.firmware
	cfg.OnConsole = o.console("guest")
	fmt.Fprintf(o.stdout, "== firmware %s\n", o.firmware)
	fmt.Fprintf(o.stdout, "== disk %s: %s initrd, kernel %s, entry %s\n", sys.Disk, sys.Generator, sys.KernelRelease, sys.Entry)
	var nw handoff.Network
	var adjust func(*lab.Options)
	if s != nil {
		fmt.Fprintf(o.stdout, "== scenario %s: %s\n", s.name, s.about)
		nw, adjust = s.network, s.lab
	}
	if cfg.EFI == "" { // an EFI executable carries its own command line
		cfg.Args = o.appendArgs
		if s != nil {
			cfg.Args = strings.TrimSpace(s.args + " " + cfg.Args)
		}
	}
	cfg.Network = nw
	l, err := newLab(ctx, o, adjust)
	if err != nil {
		return nil, "", err
	}
	defer l.Close()
	fail := func(err error) error { return fmt.Errorf("%w\nlogs in %s", err, l.LogDir()) }
	lio := o.target == "lio"
	if lio {
		fmt.Fprintf(o.stdout, "== starting the LIO target VM (a second guest; about a minute under TCG)\n")
	}
	cfg.LIO = lio
	m, err := handoff.Start(ctx, l, cfg)
	if err != nil {
		return nil, "", fail(err)
	}
	defer m.Kill()
	how := fmt.Sprintf("DHCP option 17 %q and nothing else", m.RootPath)
	switch {
	case nw.IPv6Only:
		how = fmt.Sprintf("DHCPv6 option 59 %q and nothing else", m.RootPath)
	case nw.Static:
		how = "no DHCP server; the static address and netroot= on lunboot's command line"
	case nw.TargetHost != "":
		how = fmt.Sprintf("DHCP option 17 %q, its host name resolved by the lab's DNS", m.RootPath)
	}
	deliverable := fmt.Sprintf("command line %q", m.Cmdline)
	switch {
	case cfg.EFI != "":
		deliverable = cfg.EFI + " as \\EFI\\BOOT\\BOOTX64.EFI on a local ESP, its built-in command line"
	case cfg.Image == "":
		deliverable = cfg.Kernel + " alone (no initrd), " + deliverable
	}
	fmt.Fprintf(o.stdout, "== target %s (%s) on %s, LUN %d = %s; %s\n== powering on (%v): lunboot, %s\n",
		m.Export.IQN, o.target, m.Export.Portal, m.Export.LUNBase, sys.Disk, how, cfg.Firmware, deliverable)

	if err := m.WaitJump(ctx, jumpTimeout); err != nil {
		fmt.Fprintln(o.stdout)
		handoff.WriteSummary(o.stdout, m.Stages(), nil)
		return nil, "", fail(err)
	}
	res, err := m.WaitOS(ctx, osTimeout, true)
	m.Kill()
	stages := m.Stages()
	fmt.Fprintf(o.stdout, "\n== summary\n")
	handoff.WriteSummary(o.stdout, stages, res)
	marks := lunbootMarks(debianMarks...)
	tl := timeline(m.VM.Events, marks)
	foot := footprint(m.Console())
	if printTimeline {
		var feet []string
		if foot != "" {
			feet = append(feet, "lunboot footprint: "+foot)
		}
		writeTimelines(o.stdout, []string{"lunboot"}, marks, [][][]time.Duration{{tl}}, feet, debianFairness(o))
	}
	if err != nil {
		return nil, "", fail(fmt.Errorf("the OS did not report in: %w", err))
	}
	if carry {
		if err := m.VerifyCarry(res.Proof); err != nil {
			return nil, "", fail(fmt.Errorf("the OS booted, but: %w", err))
		}
		fmt.Fprintf(o.stdout, "\n== done in %s: Debian without iSCSI in its initrd booted by carry-in from %s LUN 1 (root %s, served by lunboot's carried initiator)\n",
			round(time.Since(start)), m.Export.IQN, res.Proof.Root.Source)
		return tl, foot, nil
	}
	if err := handoff.Verify(res.Proof, m.Want(nil)); err != nil {
		return nil, "", fail(fmt.Errorf("the OS booted, but its root is not what lunboot handed over: %w", err))
	}
	fmt.Fprintf(o.stdout, "\n== done in %s: Debian booted through lunboot from %s (%s) LUN %d and logged in again on its own\n",
		round(time.Since(start)), m.Export.IQN, o.target, res.Proof.Root.LUN)
	return tl, foot, nil
}
