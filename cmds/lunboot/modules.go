package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/lunboot/lunboot/pkg/kmod"
)

func init() {
	register(&command{
		name:    "modules",
		summary: "load the image's kernel modules in dependency order and print the result",
		run:     runModules,
	})
}

// runModules is `lunboot modules [-n] [-j N] [--root DIR] [--release R]`.
// It is stage 1 of the boot on its own, for the rescue shell and tests.
func runModules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dryRun := fs.Bool("n", false, "print the load order and what is already present; load nothing")
	parallel := fs.Int("j", 1, "insert up to `N` independent modules at once")
	root := fs.String("root", "/", "file system root holding lib/modules/<release>/"+kmod.OrderFile)
	release := fs.String("release", "", "kernel release whose modules to load (default: the running kernel's)")
	verbose := fs.Bool("v", false, "log each module to stderr as it is done")
	all := fs.Bool("all", false, "load every module of the image, not only the drivers of the devices present ("+kmod.AliasFile+" against /sys)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lunboot modules [options]\n\n"+
			"Loads the kernel modules the boot image carries, in the order the image\n"+
			"builder resolved (lib/modules/<release>/%s), with <module>.<param>=\n"+
			"values from the kernel command line, and prints one line per module.\n\n", kmod.OrderFile)
		printDefaults(fs)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("%w: modules takes no arguments, got %q", errUsage, pos)
	}
	if *parallel < 1 {
		return fmt.Errorf("%w: -j %d: at least 1 module at a time", errUsage, *parallel)
	}
	opts := kmod.Options{Root: *root, Release: *release, Parallel: *parallel, MatchHardware: !*all}

	if *dryRun {
		entries, dir, err := kmod.Order(opts)
		if err != nil && !errors.Is(err, kmod.ErrWrongKernel) {
			return err
		}
		fmt.Fprintf(stdout, "# %s/%s\n", dir, kmod.OrderFile)
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "MODULE\tFILE\tAFTER")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%v\n", e.Name, e.Path, e.Depends)
		}
		tw.Flush()
		return err
	}

	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, kmod.LoadTimeout)
	defer cancel()
	start := time.Now()
	results, err := kmod.LoadAll(ctx, logger, opts)
	elapsed := time.Since(start)
	if len(results) > 0 {
		printModules(stdout, results)
	}
	sum := kmod.Summarize(results)
	fmt.Fprintf(stdout, "modules: %s in %s\n", sum, elapsed.Round(time.Millisecond))
	if err != nil {
		return err
	}
	if n := sum[kmod.Failed] + sum[kmod.Skipped]; n > 0 {
		return fmt.Errorf("%d of %d modules not loaded", n, len(results))
	}
	return nil
}

// printModules prints the result table: one row per module, load order.
func printModules(w io.Writer, results []kmod.Result) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tRESULT\tTIME\tDETAIL")
	for _, r := range results {
		t := "-"
		if r.Elapsed > 0 {
			t = r.Elapsed.Round(100 * time.Microsecond).String()
		}
		detail := r.Detail()
		if r.Params != "" {
			detail = fmt.Sprintf("[%s] %s", r.Params, detail)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Status, t, detail)
	}
	tw.Flush()
}
