package bootflow

import (
	"context"
	"strings"
	"time"
)

// shutdown is stage 11: everything lunboot set up is undone in reverse so
// that the OS finds the target without a stale session (RFC 7143 §11.14
// logout, reason "close the session") and the NIC unconfigured.
func (b *boot) shutdown(ctx context.Context) (string, error) {
	var done []string
	if err := b.found.Close(); err != nil {
		b.o.Console.Info("warning: %v", err)
	}
	b.found = nil
	done = append(done, "unmounted")
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.nbd.Detach(dctx); err != nil {
		b.o.Console.Info("warning: %v", err) // it names the device
	} else {
		done = append(done, b.nbd.Path()+" detached")
	}
	b.nbd = nil
	b.disk.Close()
	b.disk = nil
	if err := b.session.Logout(dctx); err != nil {
		b.o.Console.Info("warning: iSCSI logout: %v (the target drops the session when the OS logs in with the same initiator)", err)
		b.session.Close()
	} else {
		done = append(done, "logged out")
	}
	b.session = nil
	if err := b.net.Down(); err != nil {
		b.o.Console.Info("warning: taking %s down: %v", b.net.Link.Name, err)
	} else {
		done = append(done, b.net.Link.Name+" down")
	}
	return strings.Join(done, ", "), nil
}
