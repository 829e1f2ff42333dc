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
// `read`, `bench`, `attach`, `detach`. Run `lunboot help` for the list and
// `lunboot <command> -h` for a command's options.
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
// exits with status 2 instead of 1.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lunboot <command> [options] [arguments]")
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
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "lunboot:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "lunboot:", err)
		os.Exit(1)
	}
}
