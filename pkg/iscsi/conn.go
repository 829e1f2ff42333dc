package iscsi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// conn is one TCP connection of a session in full feature phase: a reader
// goroutine that demultiplexes target PDUs by ITT, a writer goroutine that
// coalesces queued PDUs into as few writes as possible, and a keepalive.
//
// One file per concern: read.go (the reader and its dispatch), write.go
// (the write coalescer), command.go (SCSI Command and Data-Out PDUs),
// window.go (the command window), keepalive.go and logout.go.
type conn struct {
	s       *Session
	nc      net.Conn
	r       *wire.Reader
	hd, dd  bool
	maxSend int    // the target's MaxRecvDataSegmentLength
	p       Params // negotiated
	portal  string
	w       writer
	sock    *wire.Socket // nc's descriptor for readv/writev; nil if it has none

	expStatSN atomic.Uint32
	lastRecv  atomic.Int64 // unix nanoseconds
	// inBatch is set while the reader works through PDUs it has received;
	// commands queued meanwhile are written before it reads again.
	inBatch      atomic.Bool
	flushPending atomic.Bool

	// Guarded by Session.mu.
	draining   bool // no new commands (logout pending)
	stopping   bool // we sent a Logout: the end of the stream is expected
	pingActive bool
	pingITT    uint32
	pingSent   time.Time
	logoutITT  uint32
	logoutCh   chan wire.LogoutResponse
	wait       time.Duration // Time2Wait before reconnecting

	scratch  []byte // reader's buffer for non-Data-In segments
	received bool   // reader: a socket read happened since lastRecv was set
	failOnce sync.Once
	failed   chan struct{}
	err      error
	wg       sync.WaitGroup
}

func newConn(s *Session, nc net.Conn, res *loginResult, portal string) *conn {
	c := &conn{
		s: s, nc: nc, hd: res.hd, dd: res.dd, maxSend: res.targetMRDSL, p: res.params, portal: portal,
		failed: make(chan struct{}),
		wait:   time.Duration(res.params.DefaultTime2Wait) * time.Second,
	}
	c.r = res.rd
	c.r.HeaderDigest, c.r.DataDigest, c.r.MaxData = res.hd, res.dd, res.params.MaxRecvDataSegmentLength
	c.expStatSN.Store(res.expStatSN)
	c.lastRecv.Store(time.Now().UnixNano())
	c.w.init(nc)
	c.sock = c.r.Socket() // res.rd reads nc
	// Before the reader waits for input, it sends what is queued.
	c.r.BeforeRead = c.beforeRead
	return c
}

func (c *conn) start() {
	c.wg.Add(3)
	go c.readLoop()
	go c.writeLoop()
	go c.keepalive()
}

// fail tears the connection down once; the session then recovers (or
// closes). It never blocks.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.err = err
		close(c.failed)
		c.nc.Close()
		c.w.close()
		c.s.wg.Add(1)
		go func() {
			defer c.s.wg.Done()
			c.s.connFailed(c, err)
		}()
	})
}

// connErr describes an I/O failure on the connection.
func (c *conn) connErr(op string, err error) error {
	if errors.Is(err, wire.ErrHeaderDigest) || errors.Is(err, wire.ErrDataDigest) || errors.Is(err, wire.ErrDataTooLong) {
		return fmt.Errorf("%w: %s %s: %w", ErrProtocol, op, c.portal, err)
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("target closed the connection")
	}
	return fmt.Errorf("iscsi: %s %s: %w", op, c.portal, err)
}
