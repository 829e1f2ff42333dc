package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/nbd"
)

func init() {
	register(&command{
		name:    "attach",
		summary: "expose a LUN as /dev/nbdN on this host until interrupted",
		run:     runAttach,
	})
}

func runAttach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	index := nbdIndex(nbd.AnyIndex)
	fs.Var(&index, "nbd", "use `/dev/nbdN` (also nbdN or N; default: the first free one)")
	readOnly := fs.Bool("read-only", false, "export the LUN read-only")
	conns := fs.Int("connections", 0, "NBD connections (default: the CPU count, at most 8)")
	fs.Usage = usageFunc(fs, "attach [options] <target>",
		"Logs in to the target and exposes the LUN as a local block device through the\n"+
			"kernel's NBD driver (modprobe nbd), served by this process, until SIGINT or\n"+
			"SIGTERM — or `lunboot detach /dev/nbdN` — ends it: then the kernel's cache is\n"+
			"flushed, the device disconnected and the session logged out. The session\n"+
			"survives target restarts and connection drops (it logs in again and reissues\n"+
			"what was in flight).", true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: attach takes one target", errUsage)
	}
	if *conns < 0 {
		return fmt.Errorf("%w: --connections %d: must not be negative (0: the CPU count, at most %d)", errUsage, *conns, nbd.MaxDefaultConnections)
	}
	// Parsed first, for tf.shown: the target as typed may hold CHAP
	// secrets, which no message shows.
	cfg, lun, err := tf.config(pos[0])
	if err != nil {
		return err
	}
	// Before the login: what the host lacks is said at once, not after it.
	if err := nbdPreflight(ctx, int(index)); err != nil {
		return fmt.Errorf("attach %s: %w", tf.shown, err)
	}
	s, err := tf.loginTo(ctx, cfg)
	if err != nil {
		return err
	}
	defer tf.logout(s)
	disk, err := tf.openDisk(ctx, "attach", s, lun, *readOnly)
	if err != nil {
		return err
	}
	defer disk.Close()
	dev, err := nbd.Attach(ctx, disk, nbd.AttachOptions{
		Index: int(index), Connections: *conns, ReadOnly: *readOnly,
		Backend: "lunboot:" + tf.shown, Logger: tf.logger(),
	})
	if err != nil {
		return fmt.Errorf("attach %s: %w", tf.shown, err)
	}
	parts := ""
	if p := dev.Partitions(); len(p) > 0 {
		parts = " (" + strings.Join(p, ", ") + ")"
	}
	fmt.Fprintf(stdout, "%s: LUN %s of %s, %d bytes%s\n", dev.Path(), lun, tf.shown, disk.Size(), parts)
	fmt.Fprintf(stderr, "lunboot: serving %s; ^C or `lunboot detach %s` detaches\n", dev.Path(), dev.Path())

	select {
	case <-ctx.Done():
	case <-dev.Done():
		// Detached from outside (lunboot detach, nbd-client -d) or dropped.
		if err := dev.Err(); err != nil {
			return fmt.Errorf("%s dropped by the kernel: %w", dev.Path(), err)
		}
		fmt.Fprintf(stderr, "lunboot: %s was detached\n", dev.Path())
		return nil
	}
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+tf.timeout)
	defer cancel()
	if err := dev.Detach(dctx); err != nil && !errors.Is(err, context.Canceled) {
		return err // "nbd: detach /dev/nbdN: …"
	}
	fmt.Fprintf(stderr, "lunboot: %s detached, logging out\n", dev.Path())
	return nil
}

// nbdIndex is the --nbd option: a device as detach takes it (/dev/nbdN,
// nbdN or N), so that a negative or malformed one is refused while the
// options are parsed.
type nbdIndex int

func (n *nbdIndex) String() string {
	if n == nil || int(*n) == nbd.AnyIndex {
		return ""
	}
	return nbd.DevicePath(int(*n))
}

func (n *nbdIndex) Set(s string) error {
	i, err := nbd.ParseDevice(s)
	if err != nil {
		return err
	}
	*n = nbdIndex(i)
	return nil
}

// nbdPreflight reports what would make the attach fail after the login: no
// NBD driver, or the device asked for already in use. Other errors are left
// to nbd.Attach, which says more.
func nbdPreflight(ctx context.Context, index int) error {
	if index == nbd.AnyIndex {
		_, err := nbd.List(ctx)
		if errors.Is(err, nbd.ErrModuleNotLoaded) || errors.Is(err, nbd.ErrNotSupported) {
			return err
		}
		return nil
	}
	st, err := nbd.Status(ctx, index)
	switch {
	case errors.Is(err, nbd.ErrModuleNotLoaded) || errors.Is(err, nbd.ErrNotSupported):
		return err
	case err == nil && st.Connected:
		path := nbd.DevicePath(index)
		return fmt.Errorf("%w: %s is connected or held open: `lunboot detach %s` if a stale attach holds it, or leave out --nbd to take a free device", nbd.ErrBusy, path, path)
	}
	return nil
}
