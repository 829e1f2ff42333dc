package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

// Defaults for Options.
const (
	// DefaultWorkers is the number of requests one connection serves at
	// once. The kernel queues up to 128 per connection (nbd_dev_add
	// queue_depth); 16 keeps an iSCSI session's command window busy
	// without hoarding memory.
	DefaultWorkers = 16
	// DefaultMaxRequestBytes is the largest READ or WRITE accepted: the
	// kernel's max_hw_sectors, 65536 sectors (nbd_dev_add).
	DefaultMaxRequestBytes = 32 << 20
	// DefaultMaxInFlightBytes bounds the payload memory one connection
	// holds at once.
	DefaultMaxInFlightBytes = 32 << 20
)

// Errors Serve returns.
var (
	// ErrClosed means the client closed the connection without sending
	// NBD_CMD_DISC first (the kernel does this when it gives up on a
	// connection: a timeout, or a dead socket).
	ErrClosed = errors.New("nbd: connection closed by the client without NBD_CMD_DISC")
	// ErrProtocol marks a request that cannot be answered without losing
	// the stream's framing; Serve closes the connection after logging it.
	ErrProtocol = errors.New("nbd: protocol violation")
)

// Options configures Serve. The zero value is ready to use.
type Options struct {
	// Workers bounds the requests served at once on the connection
	// (DefaultWorkers when <= 0). Replies go out in completion order.
	Workers int
	// MaxRequestBytes is the largest READ or WRITE payload accepted
	// (DefaultMaxRequestBytes when <= 0). A larger READ gets EINVAL; a
	// larger WRITE closes the connection, since skipping its payload
	// would mean reading an unbounded amount from a misbehaving peer.
	MaxRequestBytes int
	// MaxInFlightBytes bounds the payload bytes held by requests in
	// flight (DefaultMaxInFlightBytes when <= 0, and never below
	// MaxRequestBytes).
	MaxInFlightBytes int
	// Logger receives per-request failures (Warn), protocol violations
	// (Error) and connection events (Debug). Nil discards.
	Logger *slog.Logger
	// Counters, when set, is updated as requests are answered.
	Counters *Counters
}

// Counters counts what a Serve call did. It is safe to read while Serve runs.
type Counters struct {
	requests     atomic.Uint64
	errors       atomic.Uint64
	bytesRead    atomic.Uint64
	bytesWritten atomic.Uint64
	flushes      atomic.Uint64
	peak         atomic.Int64
}

// Stats is a snapshot of Counters.
type Stats struct {
	Requests     uint64 // requests answered (DISC excluded)
	Errors       uint64 // requests answered with a non-zero error
	BytesRead    uint64 // payload bytes sent for READs
	BytesWritten uint64 // payload bytes written for WRITEs
	Flushes      uint64 // FLUSH requests answered
	// PeakInFlight is the largest number of requests in flight at once.
	PeakInFlight int
}

// Snapshot returns the current counts.
func (c *Counters) Snapshot() Stats {
	return Stats{
		Requests:     c.requests.Load(),
		Errors:       c.errors.Load(),
		BytesRead:    c.bytesRead.Load(),
		BytesWritten: c.bytesWritten.Load(),
		Flushes:      c.flushes.Load(),
		PeakInFlight: int(c.peak.Load()),
	}
}

func (c *Counters) notePeak(n int) {
	for {
		p := c.peak.Load()
		if int64(n) <= p || c.peak.CompareAndSwap(p, int64(n)) {
			return
		}
	}
}

// Serve answers NBD transmission-phase requests from conn with calls to
// dev until the client sends NBD_CMD_DISC, the connection fails, or ctx is
// done. It owns conn and closes it before returning; conn must allow Close
// concurrently with Read and Write, as net.Conn does.
//
// Up to opts.Workers requests run at once and each gets its own reply, in
// completion order; the header and payload of a reply go out in one write
// under a lock, so replies never interleave. Request semantics:
//
//   - READ, WRITE: bounds-checked against dev.Size(); a read past the end is
//     EINVAL, a write past the end ENOSPC, a write to a read-only device
//     (blockdev.ReadOnly) EPERM.
//   - WRITE with FUA: blockdev.FUAWriter when dev has it, else WriteAt
//     followed by Flush.
//   - FLUSH: dev.Flush(). Every write whose reply was sent before the FLUSH
//     arrived has returned from WriteAt by then, which is all proto.md asks
//     ("all write requests for which a reply has already been sent").
//     dev.Flush covers the whole device, so this holds across connections
//     too (what FlagCanMultiConn promises).
//   - TRIM: blockdev.Trimmer when dev has it and CanTrim, else EINVAL.
//   - WRITE_ZEROES: zeroes written through WriteAt, in bounded chunks.
//   - DISC: no more requests are read; those in flight finish; Serve
//     returns nil.
//   - Unknown commands or flags: EINVAL.
//
// A bad magic, or a WRITE larger than opts.MaxRequestBytes, loses the
// stream's framing: Serve logs the reason and returns an error wrapping
// ErrProtocol. Serve returns only after every request it started has
// finished.
func Serve(ctx context.Context, conn io.ReadWriteCloser, dev blockdev.Device, opts Options) error {
	s := newServer(conn, dev, opts)
	stop := context.AfterFunc(ctx, s.abort)
	err := s.readLoop(ctx)
	s.wg.Wait()
	stop()
	s.closeConn()
	if errors.Is(err, errDisc) {
		s.log.Debug("nbd: client disconnected (NBD_CMD_DISC)")
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.wmu.Lock()
	werr := s.werr
	s.wmu.Unlock()
	if werr != nil {
		return werr
	}
	return err
}

// errDisc ends the read loop after NBD_CMD_DISC.
var errDisc = errors.New("NBD_CMD_DISC")

type server struct {
	conn     io.ReadWriteCloser
	dev      blockdev.Device
	size     uint64
	readOnly bool
	trimmer  blockdev.Trimmer // nil unless the device can trim
	fua      blockdev.FUAWriter
	maxReq   int
	log      *slog.Logger
	stats    *Counters
	lim      limiter
	wg       sync.WaitGroup

	debug bool // per-request Debug logs wanted

	wmu  sync.Mutex
	werr error // first reply write failure; guarded by wmu
	disc atomic.Bool

	closeOnce sync.Once
}

func newServer(conn io.ReadWriteCloser, dev blockdev.Device, o Options) *server {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	o.MaxInFlightBytes = max(o.MaxInFlightBytes, o.MaxRequestBytes)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Counters == nil {
		o.Counters = new(Counters)
	}
	s := &server{
		conn:   conn,
		dev:    dev,
		size:   uint64(max(dev.Size(), 0)),
		maxReq: o.MaxRequestBytes,
		log:    o.Logger,
		stats:  o.Counters,
		debug:  o.Logger.Enabled(context.Background(), slog.LevelDebug),
	}
	s.lim.init(o.Workers, o.MaxInFlightBytes)
	if ro, ok := dev.(blockdev.ReadOnly); ok && ro.ReadOnly() {
		s.readOnly = true
	}
	if t, ok := dev.(blockdev.Trimmer); ok && t.CanTrim() {
		s.trimmer = t
	}
	if f, ok := dev.(blockdev.FUAWriter); ok {
		s.fua = f
	}
	return s
}

func (s *server) closeConn() {
	s.closeOnce.Do(func() { s.conn.Close() })
}

// abort unblocks the read loop and any wait for a worker slot.
func (s *server) abort() {
	s.closeConn()
	s.lim.stop()
}

func (s *server) readLoop(ctx context.Context) error {
	var hdr [RequestSize]byte
	for {
		if _, err := io.ReadFull(s.conn, hdr[:]); err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, io.EOF):
				s.log.Debug("nbd: client closed the connection without NBD_CMD_DISC")
				return ErrClosed
			default:
				return fmt.Errorf("nbd: read request header: %w", err)
			}
		}
		var req Request
		if err := req.UnmarshalBinary(hdr[:]); err != nil {
			s.log.Error("nbd: closing connection: request stream out of step", "err", err)
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if s.debug {
			s.log.Debug("nbd: request", "req", req)
		}
		budget := 0
		switch req.Type {
		case CmdDisc:
			s.disc.Store(true)
			return errDisc
		case CmdWrite:
			if int64(req.Length) > int64(s.maxReq) {
				err := fmt.Errorf("%w: %v: payload exceeds the %d-byte request limit; cannot skip it safely", ErrProtocol, req, s.maxReq)
				s.log.Error("nbd: closing connection", "err", err)
				return err
			}
			budget = int(req.Length)
		case CmdRead:
			if int64(req.Length) <= int64(s.maxReq) {
				budget = int(req.Length)
			}
		}
		inFlight, ok := s.lim.acquire(budget)
		if !ok {
			return ctx.Err()
		}
		s.stats.notePeak(inFlight)
		var payload []byte
		if req.Type == CmdWrite {
			payload = getBuf(int(req.Length))
			if _, err := io.ReadFull(s.conn, payload); err != nil {
				putBuf(payload)
				s.lim.release(budget)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("nbd: read payload of %v: %w", req, err)
			}
		}
		s.wg.Add(1)
		go s.handle(req, payload, budget)
	}
}

func (s *server) handle(req Request, payload []byte, budget int) {
	defer s.wg.Done()
	defer s.lim.release(budget)
	errno, data := s.do(req, payload)
	s.reply(req, errno, data)
	putBuf(data)
	if req.Type == CmdWrite {
		putBuf(payload)
	}
}

// do runs one request and returns the reply error and, for a successful
// READ, the payload (a pooled buffer the caller returns).
func (s *server) do(req Request, payload []byte) (Errno, []byte) {
	switch req.Type {
	case CmdRead:
		return s.read(req)
	case CmdWrite:
		if e := s.checkWrite(req, CmdFlagFUA); e != 0 {
			return e, nil
		}
		return s.write(req, payload), nil
	case CmdFlush:
		if req.Flags != 0 {
			return s.reject(req, "flags not valid for FLUSH")
		}
		s.stats.flushes.Add(1)
		if err := s.dev.Flush(); err != nil {
			return s.fail(req, "flush", err), nil
		}
		return 0, nil
	case CmdTrim:
		if e := s.checkWrite(req, CmdFlagFUA); e != 0 {
			return e, nil
		}
		if s.trimmer == nil {
			return s.reject(req, "TRIM not advertised: the device cannot trim")
		}
		if req.Length == 0 {
			return 0, nil
		}
		if err := s.trimmer.Trim(int64(req.Offset), int64(req.Length)); err != nil {
			return s.fail(req, "trim", err), nil
		}
		return s.fuaFlush(req), nil
	case CmdWriteZeroes:
		if e := s.checkWrite(req, CmdFlagFUA|CmdFlagNoHole); e != 0 {
			return e, nil
		}
		return s.writeZeroes(req), nil
	default:
		return s.reject(req, "unknown command")
	}
}

func (s *server) reject(req Request, why string) (Errno, []byte) {
	s.log.Warn("nbd: rejecting request", "req", req, "reason", why)
	return EINVAL, nil
}

func (s *server) fail(req Request, op string, err error) Errno {
	e := ErrnoOf(err)
	s.log.Warn("nbd: device "+op+" failed", "req", req, "errno", e, "err", err)
	return e
}

// inRange reports whether [off, off+n) lies inside the device, without
// overflowing on hostile offsets.
func (s *server) inRange(off uint64, n uint32) bool {
	return off <= s.size && uint64(n) <= s.size-off
}

func (s *server) read(req Request) (Errno, []byte) {
	if req.Flags != 0 {
		return s.reject(req, "flags not valid for READ")
	}
	if int64(req.Length) > int64(s.maxReq) {
		return s.reject(req, fmt.Sprintf("length exceeds the %d-byte request limit", s.maxReq))
	}
	if !s.inRange(req.Offset, req.Length) {
		return s.reject(req, fmt.Sprintf("range beyond the %d-byte export", s.size))
	}
	buf := getBuf(int(req.Length))
	n, err := s.dev.ReadAt(buf, int64(req.Offset))
	if n == len(buf) && errors.Is(err, io.EOF) {
		err = nil // io.ReaderAt may report EOF with a full read at the end
	}
	if err == nil && n < len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		putBuf(buf)
		return s.fail(req, "read", err), nil
	}
	return 0, buf
}

// checkWrite applies the rules shared by the commands that modify data.
func (s *server) checkWrite(req Request, allowed CommandFlags) Errno {
	if req.Flags&^allowed != 0 {
		e, _ := s.reject(req, "flags not valid for "+req.Type.String())
		return e
	}
	if s.readOnly {
		s.log.Warn("nbd: rejecting request: export is read-only", "req", req)
		return EPERM
	}
	if !s.inRange(req.Offset, req.Length) {
		s.log.Warn("nbd: rejecting request: range beyond the export", "req", req, "size", s.size)
		return ENOSPC
	}
	return 0
}

func (s *server) write(req Request, p []byte) Errno {
	var n int
	var err error
	if req.Flags&CmdFlagFUA != 0 && s.fua != nil {
		n, err = s.fua.WriteAtFUA(p, int64(req.Offset))
	} else {
		n, err = s.dev.WriteAt(p, int64(req.Offset))
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return s.fail(req, "write", err)
	}
	s.stats.bytesWritten.Add(uint64(n))
	if s.fua != nil {
		return 0
	}
	return s.fuaFlush(req)
}

// fuaFlush makes a FUA request durable on a device without a FUA write.
func (s *server) fuaFlush(req Request) Errno {
	if req.Flags&CmdFlagFUA == 0 {
		return 0
	}
	if err := s.dev.Flush(); err != nil {
		return s.fail(req, "flush for FUA", err)
	}
	return 0
}

// zeroes is shared by every WRITE_ZEROES; io.WriterAt must not modify it.
var zeroes = make([]byte, 1<<20)

func (s *server) writeZeroes(req Request) Errno {
	off, left := int64(req.Offset), int64(req.Length)
	for left > 0 {
		chunk := zeroes[:min(left, int64(len(zeroes)))]
		n, err := s.dev.WriteAt(chunk, off)
		if err == nil && n < len(chunk) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return s.fail(req, "write zeroes", err)
		}
		off += int64(n)
		left -= int64(n)
	}
	return s.fuaFlush(req)
}

// reply sends one reply. Replies are written whole under wmu; after the
// first write failure the connection is closed and later replies dropped.
func (s *server) reply(req Request, e Errno, data []byte) {
	var hdr [ReplySize]byte
	putReply(hdr[:], Reply{Error: e, Handle: req.Handle})
	bufs := net.Buffers{hdr[:]}
	if e == 0 && len(data) > 0 {
		bufs = append(bufs, data)
	}
	s.stats.requests.Add(1)
	if e != 0 {
		s.stats.errors.Add(1)
	} else if req.Type == CmdRead {
		s.stats.bytesRead.Add(uint64(len(data)))
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		return
	}
	if s.debug {
		s.log.Debug("nbd: replying", "req", req, "errno", e)
	}
	if _, err := bufs.WriteTo(s.conn); err != nil {
		s.werr = fmt.Errorf("nbd: write reply to %v: %w", req, err)
		if s.disc.Load() {
			// After DISC the kernel shuts its end down at once
			// (nbd_disconnect_and_put); a late reply has nowhere to go.
			s.log.Debug("nbd: reply after disconnect dropped", "req", req, "err", err)
			s.werr = nil
		} else {
			s.log.Warn("nbd: closing connection: cannot send reply", "req", req, "err", err)
		}
		s.closeConn()
		return
	}
	if s.debug {
		s.log.Debug("nbd: replied", "req", req)
	}
}

// limiter bounds the requests in flight and the payload bytes they hold.
type limiter struct {
	mu       sync.Mutex
	cond     sync.Cond
	maxReqs  int
	maxBytes int
	reqs     int
	bytes    int
	stopped  bool
}

func (l *limiter) init(maxReqs, maxBytes int) {
	l.cond.L = &l.mu
	l.maxReqs, l.maxBytes = maxReqs, maxBytes
}

// acquire takes one request slot and n bytes (n <= maxBytes), waiting for
// them, and returns the number of requests now in flight; it reports false
// once stop was called.
func (l *limiter) acquire(n int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.stopped && (l.reqs >= l.maxReqs || l.bytes+n > l.maxBytes) {
		l.cond.Wait()
	}
	if l.stopped {
		return 0, false
	}
	l.reqs++
	l.bytes += n
	return l.reqs, true
}

func (l *limiter) release(n int) {
	l.mu.Lock()
	l.reqs--
	l.bytes -= n
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *limiter) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.cond.Broadcast()
}
