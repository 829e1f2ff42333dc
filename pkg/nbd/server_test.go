package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"testing"
	"time"
)

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func TestServeWriteRead(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	c, _ := startServe(t, t.Context(), dev, Options{})
	tests := []struct {
		off uint64
		n   int
	}{
		{0, 512},
		{4096, 128 << 10},
		{1<<20 - 512, 512},
		{1000, 37}, // unaligned: the device contract allows partial blocks
		{0, 0},
	}
	for i, tt := range tests {
		data := pattern(tt.n, byte(i))
		if r := c.do(t, Request{Type: CmdWrite, Offset: tt.off, Length: uint32(tt.n)}, data); r.err != nil || r.errno != 0 {
			t.Fatalf("WRITE off=%d len=%d = %v, %v, want success", tt.off, tt.n, r.errno, r.err)
		}
		r := c.do(t, Request{Type: CmdRead, Offset: tt.off, Length: uint32(tt.n)}, nil)
		if r.err != nil || r.errno != 0 {
			t.Fatalf("READ off=%d len=%d = %v, %v, want success", tt.off, tt.n, r.errno, r.err)
		}
		if !bytes.Equal(r.data, data) {
			t.Errorf("READ off=%d len=%d returned different bytes than written", tt.off, tt.n)
		}
	}
	data, _ := dev.snapshot()
	if !bytes.Equal(data[4096:4096+128<<10], pattern(128<<10, 1)) {
		t.Errorf("device memory at 4096 does not hold the written bytes")
	}
}

// TestServeOutOfOrder holds one READ inside the device and checks that a
// later READ is answered first: requests run concurrently and replies go
// out in completion order.
func TestServeOutOfOrder(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	release := make(chan struct{})
	entered := make(chan struct{})
	dev.gate = func(op string, off int64) {
		if op == "read" && off == 0 {
			close(entered)
			<-release
		}
	}
	c, _ := startServe(t, t.Context(), dev, Options{Workers: 4})
	slow := c.send(Request{Type: CmdRead, Offset: 0, Length: 4096}, nil)
	<-entered
	fast := c.do(t, Request{Type: CmdRead, Offset: 8192, Length: 4096}, nil)
	if fast.err != nil || fast.errno != 0 {
		t.Fatalf("second READ = %v, %v while the first is held, want an answer", fast.errno, fast.err)
	}
	select {
	case r := <-slow:
		t.Fatalf("held READ answered early: %+v", r)
	default:
	}
	close(release)
	if r := wait(t, slow); r.err != nil || r.errno != 0 {
		t.Fatalf("held READ = %v, %v after release, want success", r.errno, r.err)
	}
}

// TestServeWorkersBound sends more requests than workers and checks the
// device never sees more at once.
func TestServeWorkersBound(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		n, length int
		wantPeak  int64
	}{
		{"workers", Options{Workers: 3}, 10, 4096, 3},
		{"bytes", Options{Workers: 16, MaxRequestBytes: 64 << 10, MaxInFlightBytes: 128 << 10}, 10, 64 << 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newMemDevice(1<<20, 512)
			release := make(chan struct{})
			dev.gate = func(string, int64) { <-release }
			c, _ := startServe(t, t.Context(), dev, tt.opts)
			// The pipe is unbuffered: once the server stops reading
			// (all slots taken) sends block, so they run aside.
			sent := make(chan []<-chan result)
			go func() {
				var chs []<-chan result
				for i := range tt.n {
					chs = append(chs, c.send(Request{Type: CmdRead, Offset: uint64(i) * 4096, Length: uint32(tt.length)}, nil))
				}
				sent <- chs
			}()
			// Wait (bounded) until the server has filled its slots.
			deadline := time.Now().Add(5 * time.Second)
			for dev.active.Load() < tt.wantPeak && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			close(release)
			for _, ch := range <-sent {
				if r := wait(t, ch); r.err != nil || r.errno != 0 {
					t.Fatalf("READ = %v, %v, want success", r.errno, r.err)
				}
			}
			if got := dev.peak.Load(); got != tt.wantPeak {
				t.Errorf("peak concurrent device calls = %d, want %d", got, tt.wantPeak)
			}
		})
	}
}

func TestServeErrors(t *testing.T) {
	const size = 1 << 20
	errBoom := errors.New("medium error")
	tests := []struct {
		name  string
		setup func(*memDevice)
		req   Request
		data  []byte
		want  Errno
	}{
		{"read device error", func(m *memDevice) {
			m.readErr = func(int64, int) error { return errBoom }
		}, Request{Type: CmdRead, Length: 512}, nil, EIO},
		{"read errno from device", func(m *memDevice) {
			m.readErr = func(int64, int) error { return fmt.Errorf("lba: %w", EINVAL) }
		}, Request{Type: CmdRead, Length: 512}, nil, EINVAL},
		{"write ENOSPC from device", func(m *memDevice) {
			m.writeErr = func(int64, int) error { return fmt.Errorf("scsi: %w", ENOSPC) }
		}, Request{Type: CmdWrite, Length: 512}, make([]byte, 512), ENOSPC},
		{"write protected", func(m *memDevice) {
			m.writeErr = func(int64, int) error { return fmt.Errorf("scsi: data protect: %w", fs.ErrPermission) }
		}, Request{Type: CmdWrite, Length: 512}, make([]byte, 512), EPERM},
		{"write Errno from device", func(m *memDevice) {
			m.writeErr = func(int64, int) error { return fmt.Errorf("wrapped: %w", ENOMEM) }
		}, Request{Type: CmdWrite, Length: 512}, make([]byte, 512), ENOMEM},
		{"read-only write", func(m *memDevice) { m.readOnly = true },
			Request{Type: CmdWrite, Length: 512}, make([]byte, 512), EPERM},
		{"read-only trim", func(m *memDevice) { m.readOnly = true; m.canTrim = true },
			Request{Type: CmdTrim, Length: 512}, nil, EPERM},
		{"read past end", nil, Request{Type: CmdRead, Offset: size - 512, Length: 1024}, nil, EINVAL},
		{"read offset past end", nil, Request{Type: CmdRead, Offset: size + 512, Length: 0}, nil, EINVAL},
		{"read offset overflow", nil, Request{Type: CmdRead, Offset: math.MaxUint64 - 100, Length: 512}, nil, EINVAL},
		{"write past end", nil, Request{Type: CmdWrite, Offset: size, Length: 512}, make([]byte, 512), ENOSPC},
		{"trim past end", func(m *memDevice) { m.canTrim = true },
			Request{Type: CmdTrim, Offset: size - 512, Length: 1024}, nil, ENOSPC},
		{"trim unsupported", nil, Request{Type: CmdTrim, Length: 512}, nil, EINVAL},
		{"read too large", nil, Request{Type: CmdRead, Length: DefaultMaxRequestBytes + 1}, nil, EINVAL},
		{"unknown command", nil, Request{Type: 42, Length: 0}, nil, EINVAL},
		{"cache", nil, Request{Type: CmdCache, Length: 512}, nil, EINVAL},
		{"block status", nil, Request{Type: CmdBlockStatus, Length: 512}, nil, EINVAL},
		{"FUA on read", nil, Request{Type: CmdRead, Flags: CmdFlagFUA, Length: 512}, nil, EINVAL},
		{"unknown write flag", nil, Request{Type: CmdWrite, Flags: 1 << 9, Length: 512}, make([]byte, 512), EINVAL},
		{"NO_HOLE on write", nil, Request{Type: CmdWrite, Flags: CmdFlagNoHole, Length: 512}, make([]byte, 512), EINVAL},
		{"flags on flush", nil, Request{Type: CmdFlush, Flags: CmdFlagFUA}, nil, EINVAL},
		{"flush error", func(m *memDevice) { m.flushErr = errBoom }, Request{Type: CmdFlush}, nil, EIO},
		{"FUA write, flush fails", func(m *memDevice) { m.flushErr = errBoom },
			Request{Type: CmdWrite, Flags: CmdFlagFUA, Length: 512}, make([]byte, 512), EIO},
		{"write zeroes past end", nil, Request{Type: CmdWriteZeroes, Offset: size, Length: 1}, nil, ENOSPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newMemDevice(size, 512)
			if tt.setup != nil {
				tt.setup(dev)
			}
			c, _ := startServe(t, t.Context(), dev, Options{})
			r := c.do(t, tt.req, tt.data)
			if r.err != nil || r.errno != tt.want {
				t.Fatalf("%v = %v, %v, want %v", tt.req, r.errno, r.err, tt.want)
			}
			if r.data != nil {
				t.Errorf("%v: error reply carried %d payload bytes, want none", tt.req, len(r.data))
			}
			// Each error belongs to its request: the connection still
			// answers the next one.
			if r := c.do(t, Request{Type: CmdFlush}, nil); r.err != nil {
				t.Fatalf("FLUSH after %v: %v, want the connection alive", tt.req, r.err)
			}
		})
	}
}

// TestServeErrorIsolation mixes failing and succeeding reads in flight at
// once: each gets its own answer.
func TestServeErrorIsolation(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	copy(dev.data, pattern(1<<20, 3))
	dev.readErr = func(off int64, _ int) error {
		if off/4096%2 == 1 {
			return errors.New("bad sector")
		}
		return nil
	}
	c, _ := startServe(t, t.Context(), dev, Options{Workers: 8})
	var chs []<-chan result
	for i := range 32 {
		chs = append(chs, c.send(Request{Type: CmdRead, Offset: uint64(i) * 4096, Length: 4096}, nil))
	}
	for i, ch := range chs {
		r := wait(t, ch)
		if i%2 == 1 {
			if r.errno != EIO {
				t.Errorf("READ block %d = %v, want EIO", i, r.errno)
			}
			continue
		}
		if r.errno != 0 || !bytes.Equal(r.data, dev.data[i*4096:(i+1)*4096]) {
			t.Errorf("READ block %d = %v with %d bytes, want the block's data", i, r.errno, len(r.data))
		}
	}
}

// TestServeFlushCoversCompletedWrites checks the NBD flush guarantee: a
// FLUSH makes durable every write whose reply the client already has.
func TestServeFlushCoversCompletedWrites(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	c, _ := startServe(t, t.Context(), dev, Options{Workers: 8})
	var chs []<-chan result
	for i := range 16 {
		chs = append(chs, c.send(Request{Type: CmdWrite, Offset: uint64(i) * 8192, Length: 8192}, pattern(8192, byte(i))))
	}
	for _, ch := range chs {
		if r := wait(t, ch); r.errno != 0 || r.err != nil {
			t.Fatalf("WRITE = %v, %v", r.errno, r.err)
		}
	}
	if _, durable := dev.snapshot(); bytes.Equal(durable[:8192], pattern(8192, 0)) {
		t.Fatalf("write durable before any FLUSH: the fake does not model a cache")
	}
	if r := c.do(t, Request{Type: CmdFlush}, nil); r.errno != 0 || r.err != nil {
		t.Fatalf("FLUSH = %v, %v", r.errno, r.err)
	}
	_, durable := dev.snapshot()
	for i := range 16 {
		if !bytes.Equal(durable[i*8192:(i+1)*8192], pattern(8192, byte(i))) {
			t.Errorf("write %d completed before FLUSH but is not durable after it", i)
		}
	}
}

func TestServeFUA(t *testing.T) {
	tests := []struct {
		name        string
		fua         bool
		wantFUA     int64
		wantFlushes int64
	}{
		{"FUAWriter", true, 1, 0},
		{"write then flush", false, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newMemDevice(1<<20, 512)
			var c *client
			if tt.fua {
				c, _ = startServe(t, t.Context(), fuaDevice{mem}, Options{})
			} else {
				c, _ = startServe(t, t.Context(), mem, Options{})
			}
			data := pattern(4096, 9)
			if r := c.do(t, Request{Type: CmdWrite, Flags: CmdFlagFUA, Offset: 4096, Length: 4096}, data); r.errno != 0 || r.err != nil {
				t.Fatalf("WRITE|FUA = %v, %v", r.errno, r.err)
			}
			if got := mem.fuaWrites.Load(); got != tt.wantFUA {
				t.Errorf("FUA writes = %d, want %d", got, tt.wantFUA)
			}
			if got := mem.flushes.Load(); got != tt.wantFlushes {
				t.Errorf("flushes = %d, want %d", got, tt.wantFlushes)
			}
			if _, durable := mem.snapshot(); !bytes.Equal(durable[4096:8192], data) {
				t.Errorf("WRITE|FUA answered but its data is not durable")
			}
			// A plain write stays volatile.
			if r := c.do(t, Request{Type: CmdWrite, Offset: 0, Length: 512}, pattern(512, 1)); r.errno != 0 {
				t.Fatalf("WRITE = %v", r.errno)
			}
			if _, durable := mem.snapshot(); bytes.Equal(durable[:512], pattern(512, 1)) {
				t.Errorf("plain WRITE became durable without FLUSH or FUA")
			}
		})
	}
}

func TestServeTrim(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	dev.canTrim = true
	copy(dev.data, pattern(1<<20, 5))
	c, _ := startServe(t, t.Context(), dev, Options{})
	if r := c.do(t, Request{Type: CmdTrim, Offset: 4096, Length: 8192}, nil); r.errno != 0 || r.err != nil {
		t.Fatalf("TRIM = %v, %v", r.errno, r.err)
	}
	if r := c.do(t, Request{Type: CmdTrim, Flags: CmdFlagFUA, Offset: 0, Length: 512}, nil); r.errno != 0 || r.err != nil {
		t.Fatalf("TRIM|FUA = %v, %v", r.errno, r.err)
	}
	want := [][2]int64{{4096, 8192}, {0, 512}}
	if fmt.Sprint(dev.trimmed) != fmt.Sprint(want) {
		t.Errorf("trimmed ranges = %v, want %v", dev.trimmed, want)
	}
	if got := dev.flushes.Load(); got != 1 {
		t.Errorf("flushes after TRIM and TRIM|FUA = %d, want 1", got)
	}
}

func TestServeWriteZeroes(t *testing.T) {
	dev := newMemDevice(4<<20, 512)
	copy(dev.data, bytes.Repeat([]byte{0xff}, 4<<20))
	c, _ := startServe(t, t.Context(), dev, Options{})
	// 2.5 MiB: more than one zero chunk, and more than MaxRequestBytes
	// allows for a WRITE (WRITE_ZEROES carries no payload).
	req := Request{Type: CmdWriteZeroes, Flags: CmdFlagNoHole | CmdFlagFUA, Offset: 512, Length: 5 << 19}
	if r := c.do(t, req, nil); r.errno != 0 || r.err != nil {
		t.Fatalf("%v = %v, %v", req, r.errno, r.err)
	}
	data, durable := dev.snapshot()
	if !bytes.Equal(data[512:512+5<<19], make([]byte, 5<<19)) {
		t.Errorf("WRITE_ZEROES left non-zero bytes in its range")
	}
	if data[511] != 0xff || data[512+5<<19] != 0xff {
		t.Errorf("WRITE_ZEROES touched bytes outside its range")
	}
	if !bytes.Equal(durable[512:512+5<<19], make([]byte, 5<<19)) {
		t.Errorf("WRITE_ZEROES|FUA answered but the zeroes are not durable")
	}
}

// TestServeDiscWaitsForInFlight sends DISC while a READ is held in the
// device: the READ is still answered and only then does Serve return nil.
func TestServeDiscWaitsForInFlight(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	release := make(chan struct{})
	entered := make(chan struct{})
	dev.gate = func(op string, off int64) {
		if off == 0 {
			close(entered)
			<-release
		}
	}
	c, wait := startServe(t, t.Context(), dev, Options{})
	held := c.send(Request{Type: CmdRead, Offset: 0, Length: 512}, nil)
	<-entered
	c.send(Request{Type: CmdDisc}, nil)
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request still in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := waitResult(t, held)
	if r.err != nil || r.errno != 0 {
		t.Errorf("held READ after DISC = %v, %v, want its answer", r.errno, r.err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after DISC = %v, want nil", err)
	}
}

func waitResult(t *testing.T, ch <-chan result) result { t.Helper(); return wait(t, ch) }

func TestServeHostile(t *testing.T) {
	hdr := func(r Request) []byte { b, _ := r.MarshalBinary(); return b }
	badMagic := hdr(Request{Type: CmdRead, Length: 512})
	badMagic[0] ^= 0xff
	tests := []struct {
		name    string
		stream  []byte
		wantErr error
	}{
		{"bad magic", badMagic, ErrProtocol},
		{"huge write", hdr(Request{Type: CmdWrite, Length: math.MaxUint32}), ErrProtocol},
		{"write just over the limit", hdr(Request{Type: CmdWrite, Length: DefaultMaxRequestBytes + 1}), ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := newMemDevice(1<<20, 512)
			c, wait := startServe(t, t.Context(), dev, Options{})
			if err := c.writeRaw(tt.stream); err != nil {
				t.Fatalf("write request: %v", err)
			}
			if err := wait(); !errors.Is(err, tt.wantErr) {
				t.Errorf("Serve = %v, want %v", err, tt.wantErr)
			}
			if dev.writes.Load() != 0 || dev.reads.Load() != 0 {
				t.Errorf("hostile request reached the device")
			}
		})
	}
}

func TestServeEndings(t *testing.T) {
	t.Run("EOF between requests", func(t *testing.T) {
		c, wait := startServe(t, t.Context(), newMemDevice(4096, 512), Options{})
		c.conn.Close()
		if err := wait(); !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after close = %v, want ErrClosed", err)
		}
	})
	t.Run("EOF inside a header", func(t *testing.T) {
		c, wait := startServe(t, t.Context(), newMemDevice(4096, 512), Options{})
		c.writeRaw([]byte{0x25, 0x60})
		c.conn.Close()
		if err := wait(); err == nil || errors.Is(err, ErrClosed) {
			t.Errorf("Serve after a torn header = %v, want a read error", err)
		}
	})
	t.Run("EOF inside a payload", func(t *testing.T) {
		dev := newMemDevice(4096, 512)
		c, wait := startServe(t, t.Context(), dev, Options{})
		b, _ := Request{Type: CmdWrite, Length: 512}.MarshalBinary()
		c.writeRaw(append(b, 1, 2, 3))
		c.conn.Close()
		if err := wait(); err == nil {
			t.Errorf("Serve after a torn payload = nil, want an error")
		}
		if dev.writes.Load() != 0 {
			t.Errorf("torn WRITE reached the device")
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		_, wait := startServe(t, ctx, newMemDevice(4096, 512), Options{})
		cancel()
		if err := wait(); !errors.Is(err, context.Canceled) {
			t.Errorf("Serve after cancel = %v, want context.Canceled", err)
		}
	})
	t.Run("context canceled with request in flight", func(t *testing.T) {
		dev := newMemDevice(4096, 512)
		release := make(chan struct{})
		entered := make(chan struct{})
		dev.gate = func(string, int64) { close(entered); <-release }
		ctx, cancel := context.WithCancel(t.Context())
		c, wait := startServe(t, ctx, dev, Options{})
		c.send(Request{Type: CmdRead, Length: 512}, nil)
		<-entered
		cancel()
		done := make(chan error, 1)
		go func() { done <- wait() }()
		select {
		case err := <-done:
			t.Fatalf("Serve returned %v while a device call was running", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	})
	t.Run("client gone before reply", func(t *testing.T) {
		dev := newMemDevice(4096, 512)
		release := make(chan struct{})
		entered := make(chan struct{})
		dev.gate = func(string, int64) { close(entered); <-release }
		c, wait := startServe(t, t.Context(), dev, Options{})
		c.send(Request{Type: CmdRead, Length: 512}, nil)
		<-entered
		c.conn.Close()
		close(release)
		if err := wait(); err == nil {
			t.Errorf("Serve with the client gone = nil, want an error")
		}
	})
}

func TestServeCounters(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	var ctr Counters
	c, _ := startServe(t, t.Context(), dev, Options{Counters: &ctr})
	c.do(t, Request{Type: CmdWrite, Length: 1024}, make([]byte, 1024))
	c.do(t, Request{Type: CmdRead, Length: 2048}, nil)
	c.do(t, Request{Type: CmdFlush}, nil)
	c.do(t, Request{Type: CmdRead, Offset: 1 << 30, Length: 512}, nil)
	got := ctr.Snapshot()
	// A worker releases its slot just after its reply, so the next
	// request may overlap it by a moment: the peak is 1 or 2.
	if got.PeakInFlight < 1 || got.PeakInFlight > 2 {
		t.Errorf("Snapshot().PeakInFlight = %d, want 1 or 2 for one request at a time", got.PeakInFlight)
	}
	got.PeakInFlight = 0
	want := Stats{Requests: 4, Errors: 1, BytesRead: 2048, BytesWritten: 1024, Flushes: 1}
	if got != want {
		t.Errorf("Snapshot() = %+v, want %+v", got, want)
	}
}
