package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/kmod"
	"github.com/lunboot/lunboot/pkg/osfind"
)

// noModules is the modules stage's summary when the image carries none.
const noModules = "none: the image carries no modules (the kernel's drivers are built in)"

// moduleParallel is how many independent modules stage 1 inserts at once.
const moduleParallel = 1

// modules is stage 1: load the drivers the image carries, with the
// <module>.<param>= values of the command line. A module that fails is
// reported by name and the boot goes on; the stages that need it fail later
// with their own message. The stage is bounded by kmod.LoadTimeout: a
// module whose init never returns ends the boot naming it.
func (b *boot) modules(ctx context.Context) (string, error) {
	mctx, cancel := context.WithTimeout(ctx, kmod.LoadTimeout)
	defer cancel()
	// Only the drivers of the devices present (kmod.Options.MatchHardware):
	// the image carries ~45 modules for NICs this machine mostly lacks,
	// and each takes tens of milliseconds to insert under QEMU TCG.
	// One at a time: under TCG with two vCPUs parallel inserts measured
	// 7x slower (each insert's text patching synchronises all CPUs; see
	// initramfs/boot_test.go), and real hardware gains little.
	res, err := kmod.LoadAll(mctx, b.log, kmod.Options{
		Params:        kmod.ParamsFromCmdline(b.o.Cmdline),
		Parallel:      moduleParallel,
		MatchHardware: !bootcfg.ModulesFromCmdline(b.o.Cmdline),
		Modaliases:    func() ([]string, error) { return kmod.Modaliases(b.o.Sysfs) },
		OnDemand:      onDemandModules(),
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// No load order at all: an image without modules inside a
			// kernel with its drivers built in (make linuxboot's
			// bzImage). The NIC and NBD stages say so if a driver is
			// missing after all.
			return noModules, nil
		}
		if errors.Is(err, kmod.ErrWrongKernel) {
			b.o.Console.Info("warning: %v", err)
			return "none loaded: the image's modules are for another kernel", nil
		}
		if mctx.Err() != nil && ctx.Err() == nil {
			var stuck []string
			for _, r := range res {
				if r.Status == kmod.Skipped && errors.Is(r.Err, context.DeadlineExceeded) {
					stuck = append(stuck, r.Name)
				}
			}
			return "", withCheck(fmt.Errorf("%w (not finished within %s: %s)", err, kmod.LoadTimeout, strings.Join(stuck, ", ")),
				"the first module named waits for hardware or firmware that does not answer; `lunboot modules -v` in the rescue shell shows it, and <module>.<param>= on the command line can configure it")
		}
		return "", err
	}
	var loaded, present, failed []string
	unneeded, later := 0, 0
	for _, r := range res {
		switch {
		case r.Status == kmod.Deferred:
			later++
		case r.Status == kmod.Unneeded:
			unneeded++
		case r.Status == kmod.Loaded:
			loaded = append(loaded, r.Name)
		case r.Status.OK():
			present = append(present, r.Name)
		case r.Status == kmod.Failed || r.Status == kmod.Skipped:
			failed = append(failed, r.Name)
			b.o.Console.Info("module %s %s: %s", r.Name, r.Status, r.Detail())
		}
	}
	s := fmt.Sprintf("%d loaded, %d already present", len(loaded), len(present))
	if unneeded > 0 {
		s += fmt.Sprintf(", %d not needed (no matching device; lunboot.modules=all loads them)", unneeded)
	}
	if later > 0 {
		s += fmt.Sprintf(", %d on demand (file systems when a partition has them, 8021q for a VLAN)", later)
	}
	if len(failed) > 0 {
		s += fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(failed, ", "))
	}
	return s, nil
}

// Modules loaded only when the boot finds it needs them (kmod.OnDemand):
// a file system's when a partition of that type is on the LUN, 8021q when
// a VLAN is configured. Under QEMU TCG, an image without 8021q (with garp,
// mrp, stp and llc), xfs (with libcrc32c) and iscsi_ibft took stage 1 from
// 1.25 to 0.6 s in a trial (iscsi_ibft stays: only it reads an iBFT that
// is not an ACPI table); see docs/boot-speed.md.
var (
	// fsModules maps osfind.DetectFS's names to the image's modules
	// (initramfs/modules.txt). FAT mounts want the code page and
	// character set of their defaults (codepage=437, Debian's utf8 or
	// iso8859-1 iocharset) at mount time, and the kernel cannot load
	// them itself: the image has no modprobe.
	fsModules = map[string][]string{
		"ext4": {"ext4"},
		"xfs":  {"xfs"},
		"vfat": {"vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii", "nls_utf8"},
	}
	vlanModules = []string{"8021q"}
)

// onDemandModules lists every module of fsModules and vlanModules.
func onDemandModules() []string {
	names := slices.Clone(vlanModules)
	for _, m := range fsModules {
		names = append(names, m...)
	}
	slices.Sort(names)
	return names
}

// loadNamed loads modules of the image with kmod.LoadNamed and the module
// parameters of cmdline ("" for /proc/cmdline), bounded by
// kmod.LoadTimeout. It returns those it inserted and a line for each
// problem. An image without modules, or with modules for another kernel
// (stage 1 has said so), is no problem: there is nothing to load.
func loadNamed(ctx context.Context, log *slog.Logger, cmdline string, names ...string) (loaded, problems []string) {
	ctx, cancel := context.WithTimeout(ctx, kmod.LoadTimeout)
	defer cancel()
	var params map[string]string // nil: kmod reads /proc/cmdline
	if cmdline != "" {
		params = kmod.ParamsFromCmdline(cmdline)
	}
	res, err := kmod.LoadNamed(ctx, log, kmod.Options{Params: params}, names...)
	for _, r := range res {
		switch {
		case r.Status == kmod.Loaded:
			loaded = append(loaded, r.Name)
		case !r.Status.OK():
			problems = append(problems, fmt.Sprintf("module %s %s: %s", r.Name, r.Status, r.Detail()))
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, kmod.ErrWrongKernel), errors.Is(err, fs.ErrNotExist) && len(res) == 0:
		log.Debug("on-demand modules", "modules", names, "err", err)
	default:
		problems = append(problems, err.Error())
	}
	return loaded, problems
}

// loadOnDemand loads modules stage 1 left for later, for why (shown on the
// console with what was loaded). Nothing happens when stage 1 did not run
// (Options.SkipModules). A module that fails is reported; the step that
// needs it then fails with its own error.
func (b *boot) loadOnDemand(ctx context.Context, why string, names ...string) {
	if b.o.SkipModules || len(names) == 0 {
		return
	}
	start := time.Now()
	loaded, problems := loadNamed(ctx, b.log, b.o.Cmdline, names...)
	for _, p := range problems {
		b.o.Console.Info("warning: for %s: %s", why, p)
	}
	if len(loaded) > 0 {
		b.o.Console.Info("  modules for %s: %s (%s)", why, strings.Join(loaded, ", "), time.Since(start).Round(10*time.Millisecond))
	}
}

// loadFileSystems loads the modules of the file systems on the LUN's
// partitions before the os stage mounts them. A partition whose
// superblock cannot be read gets every file system's modules, as stage 1
// loads every module when it cannot list the devices.
func (b *boot) loadFileSystems(ctx context.Context, disk string) {
	if b.o.SkipModules {
		return
	}
	fss, err := osfind.FileSystems(disk)
	var names, found []string
	for _, dev := range slices.Sorted(maps.Keys(fss)) {
		if typ := fss[dev]; typ != "" {
			names = append(names, fsModules[typ]...)
			found = append(found, fmt.Sprintf("%s on %s", typ, dev))
		}
	}
	if err != nil {
		b.o.Console.Info("warning: %v; loading every file system's modules", err)
		names = names[:0]
		for _, typ := range slices.Sorted(maps.Keys(fsModules)) {
			names = append(names, fsModules[typ]...)
		}
		found = append(found, "partitions not recognised")
	}
	slices.Sort(names)
	b.loadOnDemand(ctx, strings.Join(found, ", "), slices.Compact(names)...)
}

// RescueModules loads what stage 1 left for later (kmod.OnDemand: the
// file systems, 8021q) for a rescue shell, where the operator may mount
// the LUN's partitions or make a VLAN by hand. It returns the modules it
// inserted and a line for each problem; an image without modules loads
// nothing.
func RescueModules(ctx context.Context, log *slog.Logger, cmdline string) (loaded, problems []string) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return loadNamed(ctx, log, cmdline, onDemandModules()...)
}
