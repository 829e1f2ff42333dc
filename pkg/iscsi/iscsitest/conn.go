package iscsitest

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
)

// Conn is one initiator connection to the target. Hooks use it to inject
// raw PDUs or to drop the connection.
type Conn struct {
	t  *Target
	nc net.Conn
	r  wire.Reader

	wmu sync.Mutex // serialises writes and StatSN assignment
	hdr []byte

	mu        sync.Mutex
	hd, dd    bool // digests in use (from the end of login)
	negHD     bool // negotiated digests
	negDD     bool
	statSN    uint32
	expCmdSN  uint32
	maxCmdSN  uint32
	window    int
	paused    bool
	inflight  int
	cmds      map[uint32]*tcmd
	ttts      map[uint32]*r2t
	nextTTT   uint32
	pings     map[uint32][]byte
	initiator string
	isid      [6]byte
	discovery bool
	sess      *session

	// Negotiated values.
	initMRDSL            int
	burst, first, maxR2T int
	initialR2T           bool
	immediate            bool

	ffp       atomic.Bool
	frozen    atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

func newConn(t *Target, nc net.Conn) *Conn {
	return &Conn{
		t: t, nc: nc, done: make(chan struct{}),
		r:    wire.Reader{R: bufio.NewReaderSize(nc, 64<<10), MaxData: 8192},
		cmds: map[uint32]*tcmd{}, ttts: map[uint32]*r2t{}, pings: map[uint32][]byte{},
		initMRDSL: 8192, nextTTT: 0x1000,
	}
}

// Close drops the connection.
func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// Seq returns the next StatSN and the current ExpCmdSN and MaxCmdSN, for
// crafting PDUs.
func (c *Conn) Seq() (statSN, expCmdSN, maxCmdSN uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statSN, c.expCmdSN, c.maxCmdSN
}

// WriteRaw writes bytes as they are: a hostile PDU built by the test.
func (c *Conn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// statMode says what a PDU does with StatSN.
type statMode uint8

const (
	statNone    statMode = iota // field not valid (Data-In without S)
	statPeek                    // carries the next StatSN without using it
	statAdvance                 // uses a StatSN
)

type corruption uint8

const (
	corruptNone corruption = iota
	corruptHeader
	corruptData
)

// send frames and writes a target PDU, filling StatSN, ExpCmdSN and
// MaxCmdSN (bytes 24–35, common to every target PDU) at the moment of
// sending so that StatSN follows the order on the wire.
func (c *Conn) send(h *wire.BHS, data []byte, mode statMode, bad corruption) error {
	if c.frozen.Load() {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	stat := c.statSN
	if mode == statAdvance {
		c.statSN++
	}
	exp, max := c.expCmdSN, c.maxCmdSN
	hd, dd := c.hd, c.dd
	c.mu.Unlock()
	if mode != statNone {
		binary.BigEndian.PutUint32(h[24:], stat)
	}
	binary.BigEndian.PutUint32(h[28:], exp)
	binary.BigEndian.PutUint32(h[32:], max)
	h.SetDataLen(len(data))
	b := append(c.hdr[:0], h[:]...)
	var d [4]byte
	if hd {
		wire.PutDigest(d[:], wire.HeaderDigest(h, nil))
		if bad == corruptHeader {
			d[0] ^= 0xff
		}
		b = append(b, d[:]...)
	}
	c.hdr = b
	bufs := net.Buffers{b}
	if len(data) > 0 {
		bufs = append(bufs, data)
		var tr []byte
		tr = append(tr, make([]byte, wire.Pad(len(data)))...)
		if dd {
			wire.PutDigest(d[:], wire.DataDigest(data))
			if bad == corruptData {
				d[0] ^= 0xff
			}
			tr = append(tr, d[:]...)
		}
		if len(tr) > 0 {
			bufs = append(bufs, tr)
		}
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// serve runs one connection: the login phase (login.go, with CHAP in
// chap.go), then the full feature phase's command engine (ffp.go) or a
// discovery session (discovery.go).
func (c *Conn) serve() {
	defer c.Close()
	if err := c.login(); err != nil {
		c.t.log.Debug("iscsitest: login ended", "err", err)
		return
	}
	if c.discovery {
		c.serveDiscovery()
		return
	}
	c.serveFFP()
}
