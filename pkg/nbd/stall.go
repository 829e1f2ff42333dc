package nbd

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrStalled means the kernel stopped reading one connection's replies: a
// reply sat unread in its socket while nothing else happened on that
// connection. Attach reconnects when it sees this; it returns an error
// wrapping ErrStalled only when every attempt stalled.
//
// The cause seen so far is the kernel's, not the server's. Linux 6.1 reads
// each socket in its own work item (recv_work, drivers/block/nbd.c), all
// queued at once on the device's WQ_MEM_RECLAIM workqueue when the device
// is connected. If the worker pool is slow to start a thread for them (more
// than about 10 ms, MAYDAY_INITIAL_TIMEOUT in kernel/workqueue.c: a busy or
// emulated machine), the workqueue's rescuer thread takes every pending item
// and runs them one after another (rescuer_thread). The first never returns
// while its socket is open, so the sockets behind it are never read: the
// requests the kernel sends on them wait for its 30-second timeout, which
// then declares the connection dead. Upstream commit e5a30c303b07
// ("workqueue: Process rescuer work items one-by-one using a cursor") makes
// the rescuer take one item at a time; kernels without it need the
// reconnect.
var ErrStalled = errors.New("nbd: the kernel is not reading a connection's replies")

// Defaults of the stall watch.
const (
	// stallAfter is how long a reply may sit unread, with nothing else
	// moving on its connection, before the connection counts as stalled.
	// The kernel's receive thread runs at high priority and reads a reply
	// within microseconds; seconds leave room for a host that starves an
	// emulated CPU.
	stallAfter = 2 * time.Second
	// stallSample is how often the connections are sampled.
	stallSample = 50 * time.Millisecond
)

// stallError reports the first stalled connection.
type stallError struct {
	conn   int           // index of the connection (socket) in the attach
	unread int           // reply bytes left unread (SIOCOUTQ)
	after  time.Duration // how long nothing moved
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%v: connection %d has %d reply bytes unread after %v (the kernel's receive work for that socket is not running)",
		ErrStalled, e.conn, e.unread, e.after)
}

func (e *stallError) Unwrap() error { return ErrStalled }

// stallWatch detects a connection whose replies the kernel does not read.
// A connection stalls when, for the whole of after, its socket holds reply
// bytes the peer has not read, that amount does not change and no new reply
// is written: a reader that is merely slow, or busy with a stream of
// replies, changes one of them.
type stallWatch struct {
	conns int
	// unread returns the reply bytes connection i holds unread, or false
	// when that cannot be known (not a socket, or closed).
	unread func(i int) (int, bool)
	// answered returns the replies connection i has written so far.
	answered func(i int) uint64
	after    time.Duration
	every    time.Duration
}

// run samples the connections until one stalls (a *stallError) or ctx is
// done (nil).
func (w stallWatch) run(ctx context.Context) error {
	type state struct {
		unread   int
		answered uint64
		since    time.Time // zero: not stuck
	}
	st := make([]state, w.conns)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		for i := range st {
			n, ok := w.unread(i)
			a := w.answered(i)
			s := &st[i]
			if !ok || n == 0 || n != s.unread || a != s.answered {
				*s = state{unread: n, answered: a}
				if ok && n > 0 {
					s.since = now
				}
				continue
			}
			if now.Sub(s.since) >= w.after {
				return &stallError{conn: i, unread: n, after: now.Sub(s.since)}
			}
		}
	}
}
