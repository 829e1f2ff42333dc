package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/pxe"
)

// runPXE boots the PXE chain docs/deploy.md describes, from the files in
// docs/dhcp: the guest's iPXE ROM gets lunboot.ipxe by TFTP from a dnsmasq
// configured with dnsmasq.conf (its example addresses, interface and TFTP
// folder replaced by the lab's), the script loads lunboot, and lunboot alone
// gets the root-path of the example machine node7, whose MAC the guest has.
func runPXE(ctx context.Context, o options, kernel, image string) error {
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(repo, "docs", "dhcp", "dnsmasq.conf")); err != nil {
		return fmt.Errorf("-pxe reads the recipe from docs/dhcp: run the demo from the repository's top folder (%w)", err)
	}
	l, tg, exp, disk, err := diskLab(ctx, o, func(*fixtures.Disk) string { return pxe.NodeTarget })
	if err != nil {
		return err
	}
	defer l.Close()
	// The recipe's root-path names LUN 1a (26).
	if err := pxe.MoveLUN(tg.Server, exp.TID, 1, pxe.NodeLUN, exp.LUNs[0]); err != nil {
		return err
	}
	r, err := pxe.Prepare(l, pxe.Options{Repo: repo, Kernel: kernel, Initrd: image,
		KernelArgs: strings.TrimSpace(probeArgs + " " + o.appendArgs)})
	if err != nil {
		return err
	}
	d, err := l.StartDHCP(ctx, lab.DHCPConfig{ConfFile: r.ConfFile})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "== dnsmasq from docs/dhcp/dnsmasq.conf (%s), TFTP %s, target %s LUN 1a = %s\n",
		r.ConfFile, r.TFTPRoot, pxe.NodeTarget, disk.Path)
	fmt.Fprintf(o.stdout, "== %s as served:\n%s", pxe.Script, r.Script)

	out, err := bootProbe(ctx, l, o.stdout, "PXE", lab.VMConfig{Name: "pxe", NetBoot: true,
		NICs: []lab.NIC{{Tap: 0, MAC: pxe.NodeHardwareAddr()}}, OnConsole: o.console("pxe")}, nil)
	if err != nil {
		return fmt.Errorf("%w\nlogs in %s", err, l.LogDir())
	}
	var errs []error
	if !out.res.OK() || out.res.Fixture != disk.Name {
		errs = append(errs, errors.New("the booted OS could not prove its hand-off"))
	}
	xs, err := pxe.CheckChain(d.LogFile(), r.ScriptURL, true)
	if err != nil {
		errs = append(errs, err)
	}
	fmt.Fprintf(o.stdout, "\n== DHCP, as dnsmasq answered:\n")
	for _, x := range xs {
		who := "other"
		switch {
		case x.VendorClass == "lunboot":
			who = "lunboot"
		case x.UserClass == "iPXE":
			who = "iPXE"
		}
		fmt.Fprintf(o.stdout, "   %-8s boot file %-14s root-path %s\n", who, cmp.Or(x.BootFile, "-"), cmp.Or(x.Options[17], "-"))
	}
	con, err := os.ReadFile(l.LogPath("console-pxe.log"))
	if err != nil {
		errs = append(errs, err)
	} else if fw, _, ok := strings.Cut(string(con), bootlog.StartLine); !ok || strings.Contains(fw, "SAN device") {
		errs = append(errs, errors.New("iPXE tried the SAN before lunboot ran (or lunboot never started)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\nlogs in %s", err, l.LogDir())
	}
	fmt.Fprintf(o.stdout, "\n== done: iPXE → %s over TFTP → lunboot → the OS on %s, which logged in again (at +%s)\n",
		pxe.Script, disk.Name, round(out.done))
	return nil
}
