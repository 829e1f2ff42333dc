package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/probe"
)

func init() {
	scenarios = append(scenarios, scenario{
		name:  "multipath",
		about: "two tgtd on two addresses of the target host, one disk; the first is killed at lunboot's nbd stage and the boot goes on through the second",
		// The Debian disks' demo (qemu/handoff) starts its own single
		// target; the failover is shown with the probe OS, which
		// reports the path it was handed.
		oses:    []string{"probe"},
		refused: map[string]string{"debian": multipathRefused, "dracut": multipathRefused},
		run:     runMultipath,
	})
}

// multipathRefused is why -scenario multipath boots only the probe OS.
const multipathRefused = "the Debian disks' demo starts its own single target; the failover is shown with the probe OS, which reports the path it was handed"

// runMultipath is -scenario multipath: the issue 14 lab. Two tgtd
// instances on two addresses of the target host export the same backing
// file with the same SCSI identifiers (tgtadm scsi_id, scsi_sn); DHCP
// names the first, lunboot.portal= the second. The first tgtd is killed
// at lunboot's nbd stage line and not restarted; the OS must boot through
// the second.
func runMultipath(ctx context.Context, o options, kernel, image string) error {
	fmt.Fprintf(o.stdout, "== fixtures\n")
	set, err := fixtures.Build(ctx, fixtures.Options{Out: filepath.Join(o.out, "fixtures")})
	if err != nil {
		return err
	}
	disk, err := set.Disk(o.fixture)
	if err != nil {
		return err
	}
	l, err := newLab(ctx, o)
	if err != nil {
		return err
	}
	defer l.Close()
	fail := func(err error) error { return fmt.Errorf("%w\nlogs in %s", err, l.LogDir()) }
	addr, err := l.AddServerAddr(ctx)
	if err != nil {
		return fail(err)
	}
	first, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		return fail(err)
	}
	second, err := l.StartTarget(ctx, lab.TargetOptions{Addr: addr})
	if err != nil {
		return fail(err)
	}
	const ids = "scsi_id=lunboot-demo-mp,scsi_sn=LBDEMO01"
	e1, err := first.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.demo:multipath", Images: []string{disk.Path}, LUNParams: ids})
	if err != nil {
		return fail(err)
	}
	e2, err := second.Export(lab.ExportSpec{IQN: e1.IQN, Images: e1.LUNs, Direct: true, LUNParams: ids})
	if err != nil {
		return fail(err)
	}
	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: e1.RootPath(), InitiatorName: probeInitiator}); err != nil {
		return fail(err)
	}
	fmt.Fprintf(o.stdout, "== target %s on %s and %s (one backing file, %s); DHCP option 17 %q\n",
		e1.IQN, e1.Portal, e2.Portal, ids, e1.RootPath())

	cmdline := strings.TrimSpace("console=ttyS0 " + probeArgs + " lunboot.portal=" + e2.Portal.String() + " " + o.appendArgs)
	fmt.Fprintf(o.stdout, "\n== lunboot: powering on, command line %q\n", cmdline)
	vm, err := l.StartVM(ctx, lab.VMConfig{Name: "lunboot", Kernel: kernel, Initrd: image, Cmdline: cmdline, OnConsole: o.console("lunboot")})
	if err != nil {
		return fail(err)
	}
	defer vm.Kill()
	nbd, err := vm.ExpectWithin(ctx, 10*time.Minute, regexp.MustCompile(`\] nbd +/dev/nbd0[^\n]*\n`))
	if err != nil {
		return fail(err)
	}
	first.Kill()
	fmt.Fprintf(o.stdout, "== killed tgtd on %s at +%s (the nbd stage line); it stays down\n", e1.Portal, round(nbd.At))
	warn, err := vm.ExpectWithin(ctx, 5*time.Minute, regexp.MustCompile(`warning: path [^\n]*continuing through [^\n]*\n`))
	if err != nil {
		return fail(err)
	}
	if _, err := vm.ExpectWithin(ctx, 10*time.Minute, probe.StartPattern); err != nil {
		return fail(fmt.Errorf("the OS never started: %w", err))
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, _, err := vm.ProbeResult(rctx)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(o.stdout, "\n== lunboot said at +%s: %s\n", round(warn.At), strings.TrimSpace(warn.Groups[0]))
	fmt.Fprintf(o.stdout, "== the OS: %s\n", res.Summary())
	for _, h := range res.Handoffs {
		fmt.Fprintf(o.stdout, "   hand-off %-16s portal %s target %s LUN %s\n", h.Source, h.Portal, h.Target, h.LUN)
	}
	if !res.OK() || res.Fixture != disk.Name {
		return fail(errors.New("the booted OS could not prove its hand-off"))
	}
	for _, h := range res.Handoffs {
		if h.Portal != "" && h.Portal != e2.Portal.String() {
			return fail(fmt.Errorf("hand-off %s names portal %s, want the path in use %s", h.Source, h.Portal, e2.Portal))
		}
	}
	fmt.Fprintf(o.stdout, "\n== done: the first controller died mid-boot; the OS on %s booted through %s and logged in there\n", disk.Name, e2.Portal)
	return nil
}
