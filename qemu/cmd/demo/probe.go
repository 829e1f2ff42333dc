package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/probe"
)

// probeInitiator is the IQN DHCP hands out (option 203) in the probe demo.
const probeInitiator = "iqn.2026-11.org.lunboot:demo"

// probeArgs start lunboot's command line for the probe OS: its initrd is of
// no known generator, so the hand-off check refuses it without
// lunboot.force=1 (lunboot then speaks dracut's dialect, which the probe
// reads).
const probeArgs = "lunboot.force=1"

// runProbe boots a fixture disk carrying the probe OS, and with -ipxe the
// MBR disk with iPXE's sanboot too.
func runProbe(ctx context.Context, o options, kernel, image string) error {
	if o.ipxe {
		o.fixture = fixtures.MBR // iPXE needs a BIOS-bootable disk
	}
	l, _, exp, disk, err := diskLab(ctx, o, func(d *fixtures.Disk) string { return "iqn.2026-11.org.lunboot.demo:" + d.Name })
	if err != nil {
		return err
	}
	defer l.Close()
	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: exp.RootPath(), InitiatorName: probeInitiator}); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "== target %s, DHCP option 17 %q, option 203 %q\n", disk.Path, exp.RootPath(), probeInitiator)

	fw := lab.VMConfig{Firmware: o.firmware}
	args := probeArgs
	if o.lockdown {
		fw.SecureBoot = true
		fw.Kernel = filepath.Join(l.LogDir(), "vmlinuz.snakeoil")
		if err := fixtures.SignSnakeoil(ctx, kernel, fw.Kernel); err != nil {
			return err
		}
		kernel = fw.Kernel
		args += " lockdown=integrity lunboot.append=lockdown=integrity"
		fmt.Fprintf(o.stdout, "== Secure Boot (OVMF, snakeoil keys), lunboot's kernel %s, lockdown=integrity for lunboot and the OS\n", kernel)
	}

	ok := true
	var lbRuns, ipRuns [][]time.Duration
	var feet []string
	for r := range max(o.runs, 1) {
		if o.runs > 1 {
			fmt.Fprintf(o.stdout, "\n== run %d of %d\n", r+1, o.runs)
		}
		lb, err := bootProbe(ctx, l, o.stdout, "lunboot", lab.VMConfig{Name: "lunboot", Firmware: fw.Firmware, SecureBoot: fw.SecureBoot, Kernel: kernel, Initrd: image,
			Cmdline: strings.TrimSpace("console=ttyS0 " + args + " " + o.appendArgs), OnConsole: o.console("lunboot")},
			lunbootMarks(probeMarks...))
		if err != nil {
			return fmt.Errorf("%w\nlogs in %s", err, l.LogDir())
		}
		ok = ok && lb.res.OK() && lb.res.Fixture == disk.Name
		if o.lockdown {
			fmt.Fprintf(o.stdout, "== lockdown: the OS reports %q, iBFT found: %v\n", lb.res.Lockdown, lb.res.IBFT != nil)
			ok = ok && lb.res.Lockdown == "integrity" && lb.res.IBFT == nil
		}
		lbRuns = append(lbRuns, lb.timeline)
		if f := footprint(lb.console); f != "" {
			feet = append(feet, fmt.Sprintf("lunboot footprint, run %d: %s", r+1, f))
		}
		if o.ipxe {
			ip, err := bootProbe(ctx, l, o.stdout, "iPXE", lab.VMConfig{Name: "ipxe", NetBoot: true, OnConsole: o.console("ipxe")},
				ipxeMarks(probeMarks...))
			if err != nil {
				return fmt.Errorf("%w\nlogs in %s", err, l.LogDir())
			}
			fmt.Fprintf(o.stdout, "\n== time from power-on     %12s %12s\n", "lunboot", "iPXE")
			fmt.Fprintf(o.stdout, "   OS kernel running      %12s %12s\n", round(lb.started), round(ip.started))
			fmt.Fprintf(o.stdout, "   OS logged in again     %12s %12s\n", round(lb.done), round(ip.done))
			ok = ok && ip.res.OK()
			ipRuns = append(ipRuns, ip.timeline)
		}
	}
	names, cols := []string{"lunboot"}, [][][]time.Duration{lbRuns}
	if o.ipxe {
		names, cols = append(names, "iPXE"), append(cols, ipRuns)
	}
	writeTimelines(o.stdout, names, lunbootMarks(probeMarks...), cols, feet, fairness)
	if !ok {
		return errors.New("the booted OS could not prove its hand-off; see the lab logs in " + l.LogDir())
	}
	fmt.Fprintf(o.stdout, "\n== done: the OS on %s booted from iSCSI and logged in again with what it was handed\n", disk.Name)
	return nil
}

type outcome struct {
	res           *probe.Result
	started, done time.Duration
	timeline      []time.Duration // one per mark given to bootProbe
	console       string
}

// fairness says how the columns of a boot timeline compare.
const fairness = "same lab, same tgtd and dnsmasq for every column (--no-ping: no 3 s ping check of a new address; --dhcp-rapid-commit, which only lunboot asks for; IPv6 router adverts on, without which iPXE waits ~16 s)"

// bootProbe runs one guest until the probe OS reports, and prints what it
// found.
func bootProbe(ctx context.Context, l *lab.Lab, stdout io.Writer, what string, cfg lab.VMConfig, marks []mark) (*outcome, error) {
	fmt.Fprintf(stdout, "\n== %s: powering on\n", what)
	vm, err := l.StartVM(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer vm.Kill()
	start, err := vm.ExpectWithin(ctx, 10*time.Minute, probe.StartPattern)
	if err != nil {
		return nil, fmt.Errorf("%s: the OS never started: %w", what, err)
	}
	res, done, err := func() (*probe.Result, *lab.Match, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		return vm.ProbeResult(ctx)
	}()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintf(stdout, "== %s: %s\n", what, res.Summary())
	for _, h := range res.Handoffs {
		fmt.Fprintf(stdout, "   hand-off %-16s portal %s target %s LUN %s initiator %s CHAP %s\n",
			h.Source, h.Portal, h.Target, cmp.Or(h.LUN, "-"), cmp.Or(h.Initiator, "-"), h.CHAPMode())
	}
	if res.IBFT != nil {
		fmt.Fprintf(stdout, "   iBFT %s (%s/%s): initiator %s\n", res.IBFT.Signature, res.IBFT.OEMID,
			strings.TrimSpace(res.IBFT.OEMTableID), res.IBFT.Initiator["initiator-name"])
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = vm.Wait(wctx) // the probe powers off after its result
	return &outcome{res: res, started: start.At, done: done.At, timeline: timeline(vm.Events, marks), console: vm.Console()}, nil
}
