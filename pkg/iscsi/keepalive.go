package iscsi

import (
	"fmt"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// keepalive pings an idle connection with NOP-Out (RFC 7143 §11.18) and
// declares it dead when a ping stays unanswered for three intervals.
func (c *conn) keepalive() {
	defer c.wg.Done()
	ka := c.s.cfg.KeepAlive
	if ka <= 0 {
		return
	}
	tk := time.NewTicker(ka / 2)
	defer tk.Stop()
	s := c.s
	for {
		select {
		case <-c.failed:
			return
		case <-tk.C:
		}
		now := time.Now()
		s.mu.Lock()
		if c.pingActive {
			if now.Sub(c.pingSent) >= 3*ka {
				s.mu.Unlock()
				c.fail(fmt.Errorf("iscsi: connection to %s dead: no answer to a NOP-Out ping for %v", c.portal, 3*ka))
				return
			}
			s.mu.Unlock()
			continue
		}
		if now.Sub(time.Unix(0, c.lastRecv.Load())) < ka || c.stopping {
			s.mu.Unlock()
			continue
		}
		itt := s.allocITT()
		c.pingActive, c.pingITT, c.pingSent = true, itt, now
		o := wire.NOPOut{Immediate: true, ITT: itt, TTT: wire.ReservedTag, CmdSN: s.cmdSN, ExpStatSN: c.expStatSN.Load()}
		s.mu.Unlock()
		var h wire.BHS
		o.Encode(&h)
		c.w.add(c.newPDU(&h, nil, nil))
		// Never write here: a stalled socket must not stop the
		// dead-connection check.
		c.w.wake()
	}
}
