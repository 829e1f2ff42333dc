// Command demo shows lunboot doing its job: a diskless QEMU machine powers
// on with the lunboot image, gets the root-path by DHCP, logs in to the
// lab's iSCSI target, finds the OS on the LUN and kexecs it; the OS (the
// probe OS on the fixture disk) then proves it can log in again with what
// lunboot handed it.
//
// Usage:
//
//	demo [-out out] [-fixture gpt-bls|mbr|grub-ext4] [-append ARGS] [-ipxe] [-quiet]
//
// It needs root (network namespaces), the Debian packages `make deps`
// installs, the image `make image` builds (out/vmlinuz, out/lunboot.cpio.xz)
// and the fixtures, which it builds itself if needed. Everything runs in a
// private network namespace that is removed on exit, also on ^C. With -ipxe
// the same MBR disk is then booted by iPXE's sanboot for comparison.
// `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/probe"
)

// initiator is the IQN DHCP hands out (option 203).
const initiator = "iqn.2026-11.org.lunboot:demo"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "out", "build output folder (image, fixtures, lab logs)")
	fixture := fs.String("fixture", fixtures.GPTBLS, "disk to boot: "+strings.Join([]string{fixtures.GPTBLS, fixtures.MBR, fixtures.GRUBExt4}, ", "))
	appendArgs := fs.String("append", "", "extra kernel arguments for the lunboot image")
	ipxe := fs.Bool("ipxe", false, "also boot the MBR disk with iPXE sanboot and compare the times")
	quiet := fs.Bool("quiet", false, "do not stream the guests' consoles")
	if err := fs.Parse(args); err != nil {
		return err
	}
	kernel, image := filepath.Join(*out, "vmlinuz"), filepath.Join(*out, "lunboot.cpio.xz")
	for _, f := range []string{kernel, image} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w (run `make image`)", err)
		}
	}
	if *ipxe {
		*fixture = fixtures.MBR // iPXE needs a BIOS-bootable disk
	}
	fmt.Fprintf(stdout, "== fixtures\n")
	set, err := fixtures.Build(ctx, fixtures.Options{Out: filepath.Join(*out, "fixtures")})
	if err != nil {
		return err
	}
	disk, err := set.Disk(*fixture)
	if err != nil {
		return err
	}

	l, err := lab.New(ctx, lab.Options{Name: "demo",
		LogDir: filepath.Join(*out, "lab-logs", "demo-"+time.Now().Format("20060102-150405"))})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(stdout, "== lab %s: server %s, logs in %s\n", l.NetNS(), l.ServerIP(), l.LogDir())
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		return err
	}
	exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.demo:" + disk.Name, Images: []string{disk.Path}})
	if err != nil {
		return err
	}
	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: exp.RootPath(), InitiatorName: initiator}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "== target %s, DHCP option 17 %q, option 203 %q\n", disk.Path, exp.RootPath(), initiator)

	console := func(prefix string) func(string) {
		if *quiet {
			return nil
		}
		return func(line string) { fmt.Fprintf(stdout, "%s │ %s\n", prefix, line) }
	}
	lb, err := boot(ctx, l, stdout, "lunboot", lab.VMConfig{Name: "lunboot", Kernel: kernel, Initrd: image,
		Cmdline: strings.TrimSpace("console=ttyS0 " + *appendArgs), OnConsole: console("lunboot")})
	if err != nil {
		return err
	}
	ok := lb.res.OK() && lb.res.Fixture == disk.Name
	if *ipxe {
		ip, err := boot(ctx, l, stdout, "iPXE", lab.VMConfig{Name: "ipxe", NetBoot: true, OnConsole: console("ipxe")})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\n== time from power-on     %12s %12s\n", "lunboot", "iPXE")
		fmt.Fprintf(stdout, "   OS kernel running      %12s %12s\n", round(lb.started), round(ip.started))
		fmt.Fprintf(stdout, "   OS logged in again     %12s %12s\n", round(lb.done), round(ip.done))
		ok = ok && ip.res.OK()
	}
	if !ok {
		return errors.New("the booted OS could not prove its hand-off; see the lab logs in " + l.LogDir())
	}
	fmt.Fprintf(stdout, "\n== done: the OS on %s booted from iSCSI and logged in again with what it was handed\n", disk.Name)
	return nil
}

type outcome struct {
	res           *probe.Result
	started, done time.Duration
}

// boot runs one guest until the probe OS reports, and prints what it found.
func boot(ctx context.Context, l *lab.Lab, stdout io.Writer, what string, cfg lab.VMConfig) (*outcome, error) {
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
			h.Source, h.Portal, h.Target, orDash(h.LUN), orDash(h.Initiator), h.CHAPMode())
	}
	if res.IBFT != nil {
		fmt.Fprintf(stdout, "   iBFT %s (%s/%s): initiator %s\n", res.IBFT.Signature, res.IBFT.OEMID,
			strings.TrimSpace(res.IBFT.OEMTableID), res.IBFT.Initiator["initiator-name"])
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = vm.Wait(wctx) // the probe powers off after its result
	return &outcome{res: res, started: start.At, done: done.At}, nil
}

func round(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
