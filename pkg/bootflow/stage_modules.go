package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/kmod"
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
	unneeded := 0
	for _, r := range res {
		switch {
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
	if len(failed) > 0 {
		s += fmt.Sprintf(", %d failed (%s)", len(failed), strings.Join(failed, ", "))
	}
	return s, nil
}
