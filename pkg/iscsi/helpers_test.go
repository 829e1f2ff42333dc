package iscsi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// logBuffer collects log output, for tests that check what was (not)
// logged, and forwards it to t.Log while the test runs.
type logBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	t    *testing.T
	done bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLog(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	t.Cleanup(func() { lb.mu.Lock(); lb.done = true; lb.mu.Unlock() })
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func testLogger(t *testing.T) *slog.Logger {
	l, _ := newLog(t)
	return l
}

// startTarget starts an iscsitest target on loopback.
func startTarget(t *testing.T, o iscsitest.Options) *iscsitest.Target {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t).With("side", "target")
	}
	tg := iscsitest.NewTarget(o)
	if _, err := tg.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// pipeTarget is startTarget for a synctest bubble: the target is reached
// over net.Pipe (pipeConfig dials it), since a goroutine blocked on a
// loopback socket is not durably blocked and would stop the bubble's clock.
func pipeTarget(t *testing.T, o iscsitest.Options) *iscsitest.Target {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t).With("side", "target")
	}
	tg := iscsitest.NewTarget(o)
	t.Cleanup(func() { tg.Close() })
	return tg
}

// pipeConfig is config for a pipeTarget.
func pipeConfig(t *testing.T, tg *iscsitest.Target) Config {
	cfg := config(t, tg)
	cfg.Portal, cfg.Dial = "192.0.2.1", tg.Dial
	return cfg
}

// config is a Config for the test target.
func config(t *testing.T, tg *iscsitest.Target) Config {
	return Config{
		Portal: tg.Addr(), TargetName: tg.Name(), InitiatorName: "iqn.2026-11.org.lunboot:test-initiator",
		Logger: testLogger(t).With("side", "initiator"), LoginTimeout: 5 * time.Second,
	}
}

// login logs in and closes the session at the end of the test.
func mustLogin(t *testing.T, cfg Config) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Login(ctx, cfg)
	if err != nil {
		t.Fatalf("Login(%s) = %v", cfg.Portal, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func noViolations(t *testing.T, tg *iscsitest.Target) {
	t.Helper()
	if v := tg.Stats().Violations; len(v) > 0 {
		t.Errorf("target saw initiator protocol violations:\n%s", strings.Join(v, "\n"))
	}
}

func read10(lba uint32, blocks uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}

func write10(lba uint32, blocks uint16) []byte {
	cdb := read10(lba, blocks)
	cdb[0] = 0x2a
	return cdb
}

func readCapacity10() []byte { return []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0} }

func lunN(n int) scsi.LUN { return scsi.LUN{0, byte(n)} }

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeRead writes data at lba of lun and reads it back through s.
func writeRead(t *testing.T, s *Session, lun int, lba uint32, data []byte) {
	t.Helper()
	ctx := tctx(t)
	blocks := uint16(len(data) / 512)
	res, err := s.Execute(ctx, &scsi.Command{LUN: lunN(lun), CDB: write10(lba, blocks), DataOut: data})
	if err != nil || res.Status != 0 {
		t.Fatalf("WRITE(10) lba %d × %d = %+v, %v", lba, blocks, res, err)
	}
	back := make([]byte, len(data))
	res, err = s.Execute(ctx, &scsi.Command{LUN: lunN(lun), CDB: read10(lba, blocks), DataIn: back})
	if err != nil || res.Status != 0 || res.N != len(back) {
		t.Fatalf("READ(10) lba %d × %d = %+v, %v", lba, blocks, res, err)
	}
	if !bytes.Equal(back, data) {
		t.Fatalf("READ(10) lba %d returned different data than written", lba)
	}
}

func ioReadFull(c net.Conn, b []byte) (int, error) { return io.ReadFull(c, b) }
