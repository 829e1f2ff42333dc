package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"

	"github.com/lunboot/lunboot/internal/version"
)

func init() {
	register(&command{
		name:    "version",
		summary: "print the version and commit this binary was built from",
		run:     runVersion,
	})
}

// runVersion is `lunboot version` (and `lunboot --version`): one line with
// the version, the full commit, whether the tree had uncommitted changes,
// and the Go toolchain, as the build stamped them (package version).
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageFunc(fs, "version",
		"Prints the version and commit this binary was built from (stamped by make build\n"+
			"and the image build), and the Go toolchain that built it. The boot's first\n"+
			"console line names the same version.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: version takes no arguments, got %q", errUsage, pos)
	}
	fmt.Fprintln(stdout, versionLine(version.Get()))
	return nil
}

// versionLine is what `lunboot version` prints: "lunboot v0.0.0-…
// (commit 8b8cfae97891376eb7d04a4226260e8bf48ad21f, modified) go1.26.8
// linux/amd64".
func versionLine(i version.Info) string {
	mod := ""
	if i.Modified {
		mod = ", modified"
	}
	return fmt.Sprintf("lunboot %s (commit %s%s) %s %s/%s", i.Version, i.Commit, mod, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// startLine is the boot's first console line: it names the version and
// commit, so that a console log (or a machine with firmware in flash) says
// which lunboot it ran. qemu/bootlog.StartLine is its prefix.
func startLine(i version.Info) string {
	return "lunboot: iSCSI boot starting, version " + i.String()
}
