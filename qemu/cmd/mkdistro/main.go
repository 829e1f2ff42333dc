// Command mkdistro builds the real Debian 12 systems the end-to-end tests
// hand over to (package qemu/distro): Debian with initramfs-tools, the same
// root with a dracut initrd, and one whose initrd lacks iSCSI. It reuses
// whatever is up to date and prints one line per system with its disk,
// sizes and build time.
//
// Usage:
//
//	mkdistro [-cache $LUNBOOT_CACHE/distro] [-mirror URI] [-force] [-drop-roots] [-check] [-json] [-v] [-targetcli]
//
// -check only reports whether the disks are up to date (exit 1 if not).
// Building needs root and network access to the Debian mirror the machine's
// apt uses; a cold build takes several minutes.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/distro/derive"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkdistro:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkdistro", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "cache folder (default $LUNBOOT_CACHE/distro, else /var/cache/lunboot/distro)")
	mirror := fs.String("mirror", "", "Debian mirror (default: the one in the machine's apt sources)")
	force := fs.Bool("force", false, "rebuild everything")
	dropRoots := fs.Bool("drop-roots", false, "delete the unpacked root trees afterwards (saves ~3 GB; the next change rebuilds from debootstrap)")
	check := fs.Bool("check", false, "only report whether the disks are up to date")
	asJSON := fs.Bool("json", false, "print the set as JSON")
	timeout := fs.Duration("timeout", 45*time.Minute, "give up after this long")
	verbose := fs.Bool("v", false, "log each step and command")
	targetcli := fs.Bool("targetcli", false, "also build (or check) the root tree with targetcli-fb that the LIO target VM runs docs/targets.md's commands in")
	only := fs.String("only", "", "comma-separated systems to build or check (default all: debian, dracut, noiscsi, debian-uefi)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	keep := !*dropRoots
	start := time.Now()
	set, err := distro.Build(ctx, distro.Options{Cache: *cache, Mirror: *mirror, Log: log, Force: *force, NoBuild: *check, KeepRoots: &keep, Only: splitList(*only)})
	if errors.Is(err, distro.ErrStale) && *check {
		fmt.Fprintln(stdout, err)
		return errors.New("out of date")
	}
	if err != nil {
		return err
	}
	if *targetcli {
		tstart := time.Now()
		root, err := distro.TargetcliRoot(ctx, distro.Options{Cache: *cache, Mirror: *mirror, Log: log, Force: *force, NoBuild: *check})
		if err != nil {
			if errors.Is(err, distro.ErrStale) && *check {
				fmt.Fprintln(stdout, err)
				return errors.New("out of date")
			}
			return err
		}
		fmt.Fprintf(stdout, "targetcli root %s (%s)\n", root, time.Since(tstart).Round(time.Millisecond))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(set)
	}
	rebuilt := map[string]bool{}
	for _, n := range set.Rebuilt {
		rebuilt[n] = true
	}
	for _, st := range set.Stages {
		fmt.Fprintf(stdout, "root stage %-8s built in %s\n", st.Name, st.Took.Round(time.Second))
	}
	for _, s := range set.Systems() {
		if s == nil {
			continue // left out by -only
		}
		state := "up to date"
		if rebuilt[s.Name] {
			state = "built in " + s.BuildTime.Round(time.Second).String()
		}
		initrd, _ := os.Stat(s.Initrd)
		var initrdSize int64
		if initrd != nil {
			initrdSize = initrd.Size()
		}
		fmt.Fprintf(stdout, "%-8s %s: disk %s (%d MiB, %d MiB allocated, root tree %d MiB), kernel %s, %s initrd %d MiB, root=UUID=%s\n",
			s.Name, state, s.Disk, s.Size>>20, s.Allocated>>20, s.RootUsed>>20, s.KernelRelease, s.Generator, initrdSize>>20, s.RootUUID)
	}
	// The variant disks of the carry-in tests, derived from noiscsi
	// (package derive; cached by its key, so an unchanged base costs
	// nothing).
	if set.NoISCSI != nil && !*check {
		for _, v := range []derive.Variant{derive.XZModules, derive.NoNBD, derive.NoModuleTree} {
			d, err := derive.Build(ctx, set.NoISCSI, v, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%-8s derived from %s: disk %s (built %s in %s)\n", d.Name, set.NoISCSI.Name, d.Disk, d.Built.Format(time.RFC3339), d.BuildTime.Round(time.Second))
		}
	}
	// The dracut disk without iSCSI (TestCarryDracut), from dracut.
	if set.Dracut != nil && !*check {
		d, err := derive.Build(ctx, set.Dracut, derive.DracutNoISCSI, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-8s derived from %s: disk %s (built %s in %s)\n", d.Name, set.Dracut.Name, d.Disk, d.Built.Format(time.RFC3339), d.BuildTime.Round(time.Second))
	}
	fmt.Fprintf(stdout, "distro: %s %s from %s (Release %s) in %s, %s\n", set.Suite, "amd64", set.Mirror, cmp.Or(set.ReleaseDate, "date unknown"), set.Dir, time.Since(start).Round(time.Millisecond))
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
