// Command lunboot is a firmware-style iSCSI boot initiator.
//
// Synopsis:
//
//	lunboot <command> [options] [arguments]
//
// Description:
//
// In the boot image, `lunboot boot` runs as u-root's uinit: it does what a NIC
// iSCSI boot ROM does (DHCP, RFC 4173 root-path, iSCSI login, the LUN as
// /dev/nbd0, the OS kernel found on it) and kexecs the OS. On any Linux host
// the other commands use the same library: `discover`, `luns`, `inquiry`,
// `read`, `bench`, `attach`, `detach`. Run `lunboot help` for the list,
// `lunboot help <command>` (or `lunboot <command> --help`) for a command's
// options and `lunboot version` (or `lunboot --version`) for the version and
// commit this binary was built from.
//
// Exit status: 0 on success, 2 for a usage error (an unknown command or
// option, a missing or malformed argument or option value), 1 when the
// command was called right and failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Each lives in its own file and registers itself
// from init, so the dispatcher knows nothing of their options.
type command struct {
	name    string
	summary string
	// run executes the command. args excludes the command name. stdout is
	// for results (tables, JSON, data); stderr for progress and messages.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("lunboot: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks errors caused by how the command was called; main then
// exits with status 2 instead of 1. errUsage itself, unwrapped, means the
// usage has been printed and there is nothing to add.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lunboot <command> [options] [arguments]")
	fmt.Fprintln(w, "       lunboot help <command>")
	fmt.Fprintln(w, "       lunboot version")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return nil
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	case "help":
		return runHelp(ctx, args[1:], stdout)
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

// runHelp is `lunboot help [command]`: the command list, or one command's
// usage (what `lunboot <command> --help` prints), on stdout.
func runHelp(ctx context.Context, args []string, stdout io.Writer) error {
	switch len(args) {
	case 0:
		usage(stdout)
		return nil
	case 1:
	default:
		return fmt.Errorf("%w: help takes one command, got %d arguments", errUsage, len(args))
	}
	c, ok := commands[args[0]]
	if !ok {
		return fmt.Errorf("%w: help: unknown command %q (`lunboot help` lists them)", errUsage, args[0])
	}
	err := c.run(ctx, []string{"--help"}, stdout, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("lunboot %s --help ran the command instead of printing its usage", c.name)
	}
	return err
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	args := os.Args[1:]
	// The carry-in daemon runs as "@lunboot lunboot carry daemon …"
	// (ROOT_STORAGE_DAEMONS); u-root's busybox drops argv[0] itself, a
	// plain build sees "lunboot" as its first argument.
	if strings.HasPrefix(os.Args[0], "@") && len(args) > 0 && args[0] == "lunboot" {
		args = args[1:]
	}
	err := run(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(os.Stderr, err))
}

// report prints what main prints for err and returns the exit status: 0
// for success and for --help, 2 for a usage error, 1 for a failure.
func report(stderr io.Writer, err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case err == errUsage:
		// The usage was printed; "lunboot: usage" would say nothing more.
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "lunboot:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "lunboot:", err)
		return 1
	}
}
