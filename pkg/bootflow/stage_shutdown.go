package bootflow

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// shutdown is stage 11: everything lunboot set up is undone in reverse so
// that the OS finds the target without a stale session (RFC 7143 §11.14
// logout, reason "close the session") and the NIC unconfigured.
//
// The line ends with the boot's footprint: lunboot's peak RSS and the
// tmpfs the OS kernel and initrd copies take (see footprint).
func (b *boot) shutdown(ctx context.Context) (string, error) {
	s := strings.Join(b.teardown(ctx, true), ", ")
	if f := b.footprint(); f != "" {
		s += "; " + f
	}
	return s, nil
}

// teardown releases what the stages set up, newest first: the LUN's
// partitions, the NBD device, the disk, the iSCSI session. It is both the
// undo after a failure (beforeJump false) and stage 11 before the jump
// (beforeJump true), so the two cannot drift apart. They differ in what
// comes after: after a failure the copies of the OS kernel and initrd are
// removed and the interface stays up, for the rescue shell and a second
// `lunboot boot`; before the jump the interface goes down, so that the OS
// configures it afresh, and failures are console warnings, since the boot
// goes on. It returns what was done, for the stage line; parts already
// released are skipped, so it can run twice.
func (b *boot) teardown(ctx context.Context, beforeJump bool) (done []string) {
	warn := func(format string, args ...any) {
		if beforeJump {
			b.o.Console.Info("warning: "+format, args...)
		} else {
			b.log.Warn("undoing the boot: " + fmt.Sprintf(format, args...))
		}
	}
	// A bound of its own: after a failure the boot's context may be over,
	// and before the jump a target that stopped answering must not hold
	// the boot forever.
	if !beforeJump {
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b.stopLinkWatch()
	if b.found != nil {
		if err := b.found.Close(); err != nil {
			warn("%v", err)
		}
		b.found = nil
		done = append(done, "unmounted")
	}
	if b.nbd != nil {
		if err := b.nbd.Detach(ctx); err != nil {
			warn("%v", err) // it names the device
		} else {
			done = append(done, b.nbd.Path()+" detached")
		}
		b.nbd = nil
	}
	if b.disk != nil {
		b.disk.Close()
		b.disk = nil
	}
	if b.session != nil {
		if err := b.session.Logout(ctx); err != nil {
			warn("iSCSI logout: %v (the target drops the session when the OS logs in with the same initiator)", err)
			b.session.Close()
		} else {
			done = append(done, "logged out")
		}
		b.session = nil
	}
	if !beforeJump {
		for _, f := range []string{b.kernel, b.initrd} {
			if f != "" {
				os.Remove(f)
			}
		}
		return done // the network stays up: the rescue shell may need it
	}
	if b.net != nil {
		if err := b.net.Down(); err != nil {
			warn("taking %s down: %v", b.net.Link.Name, err)
		} else {
			done = append(done, b.net.Link.Name+" down")
		}
	}
	return done
}
