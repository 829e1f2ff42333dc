package bootflow

import (
	"context"
	"sync"
	"time"

	"github.com/lunboot/lunboot/pkg/netconf"
)

// watchLink watches the boot NIC's carrier from the network stage to the
// teardown and says on the console when it goes and when it is back. The
// iSCSI session needs no help to survive a short outage (TCP retransmits;
// past the keepalive's bound, the session's own recovery), but a boot
// that stalls for seconds without a word looks hung: the two lines say
// why it waited and when it could go on.
func (b *boot) watchLink(l netconf.Link) {
	b.stopLinkWatch()
	if b.m.WatchLink == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var lost time.Time
		err := b.m.WatchLink(ctx, l, func(up bool) {
			at := time.Since(b.start).Seconds()
			if !up {
				lost = time.Now()
				b.o.Console.Info("warning: link %s: carrier lost at +%.2fs; iSCSI I/O waits for it (the session recovers when it is back)", l.Name, at)
				return
			}
			down := ""
			if !lost.IsZero() {
				down = " after " + time.Since(lost).Round(10*time.Millisecond).String()
			}
			b.o.Console.Info("link %s: carrier back at +%.2fs%s; iSCSI I/O resumes as the connection recovers", l.Name, at, down)
		})
		if err != nil {
			b.log.Debug("not watching the link", "err", err)
		}
	}()
	b.stopWatch = func() { cancel(); wg.Wait() }
}

// stopLinkWatch ends watchLink's goroutine, if any.
func (b *boot) stopLinkWatch() {
	if b.stopWatch != nil {
		b.stopWatch()
		b.stopWatch = nil
	}
}
