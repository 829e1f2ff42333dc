// Command mkfixtures builds the lab's disk fixtures and probe OS (see package
// qemu/fixtures), reusing whatever is up to date.
//
// Usage:
//
//	mkfixtures [-out out/fixtures] [-kernel .cache/kernel/current] [-v]
//
// It prints one line per fixture with its path and whether it was rebuilt.
// `make fixtures` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"time"

	"github.com/lunboot/lunboot/qemu/fixtures"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkfixtures:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkfixtures", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "out/fixtures", "output folder")
	kernel := fs.String("kernel", "", "unpacked Debian kernel package (default $LUNBOOT_CACHE/kernel/current or /var/cache/lunboot/kernel/current)")
	verbose := fs.Bool("v", false, "log each step")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	start := time.Now()
	set, err := fixtures.Build(ctx, fixtures.Options{Out: *out, KernelDir: *kernel, Logger: log})
	if err != nil {
		return err
	}
	rebuilt := map[string]bool{}
	for _, r := range set.Rebuilt {
		rebuilt[r] = true
	}
	state := func(name string) string {
		if rebuilt[name] {
			return "built"
		}
		return "cached"
	}
	fmt.Fprintf(stdout, "probe OS   %-6s kernel %s\n           initrd %s (modules %v)\n", state("probe"), set.Kernel, set.Initrd, set.Modules)
	names := make([]string, 0, len(set.Disks))
	for n := range set.Disks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := set.Disks[n]
		fmt.Fprintf(stdout, "%-10s %-6s %s (%d MiB, %s, %d entries)\n", n, state(n), d.Path, d.Size>>20, d.Label, len(d.Entries))
	}
	fmt.Fprintf(stdout, "fixtures in %s (%s)\n", set.Dir, time.Since(start).Round(time.Millisecond))
	return nil
}
