package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/lunboot/lunboot/pkg/nbd"
)

func init() {
	register(&command{
		name:    "detach",
		summary: "disconnect an NBD device (/dev/nbdN) served by any process",
		run:     runDetach,
	})
}

func runDetach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("detach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	noSync := fs.Bool("no-sync", false, "do not flush the kernel's cached writes before disconnecting")
	fs.Usage = usageFunc(fs, "detach [options] /dev/nbdN...",
		"Flushes the kernel's cached writes for each device (fsync), then asks the kernel\n"+
			"to disconnect it (generic netlink NBD_CMD_DISCONNECT), whichever process serves it;\n"+
			"the server finishes the requests in flight and exits its connections. Devices may\n"+
			"be given as /dev/nbdN, nbdN or N. Needs root.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: detach takes at least one device", errUsage)
	}
	if *timeout <= 0 {
		return fmt.Errorf("%w: --timeout %v: must be positive", errUsage, *timeout)
	}
	indexes := make([]int, len(pos))
	for i, p := range pos {
		if indexes[i], err = nbd.ParseDevice(p); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for _, idx := range indexes {
		path := nbd.DevicePath(idx)
		st, err := nbd.Status(ctx, idx)
		if err != nil {
			return fmt.Errorf("detach %s: %w", path, err)
		}
		if !st.Connected {
			fmt.Fprintf(stdout, "%s is not connected\n", path)
			continue
		}
		if !*noSync {
			if err := nbd.Sync(ctx, path); err != nil {
				if ctx.Err() != nil {
					// The kernel's flush waits on: this process
					// ends when it does, or when the device is
					// disconnected from elsewhere — hence "another
					// shell" below.
					return fmt.Errorf("detach %s: cached writes not flushed within --timeout %v: is the process serving it stuck, or its disk not answering? `lunboot detach --no-sync %s`, from another shell, disconnects without them (they are lost); this command exits once the flush ends or the device is disconnected: %w", path, *timeout, path, err)
				}
				return fmt.Errorf("detach %s: flush cached writes (--no-sync skips this): %w", path, err)
			}
		}
		if err := nbd.Disconnect(ctx, idx); err != nil {
			return fmt.Errorf("detach %s: %w", path, err)
		}
		fmt.Fprintf(stdout, "%s disconnected\n", path)
	}
	return nil
}
