package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// fastRecovery is a Config tweak for tests: reconnect without Time2Wait.
func fastRecovery(c *Config) {
	p := DefaultParams()
	p.DefaultTime2Wait = 0
	c.Params = &p
}

// concurrentIO writes n random 64 KiB blocks concurrently, reads them back
// concurrently and compares.
func concurrentIO(t *testing.T, s *Session, n int) {
	t.Helper()
	ctx := tctx(t)
	data := make([][]byte, n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		data[i] = randBytes(64 << 10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Execute(ctx, &scsi.Command{CDB: write10(uint32(i*128), 128), DataOut: data[i]})
			if err != nil || res.Status != 0 {
				errs <- fmt.Errorf("write %d: %+v, %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			back := make([]byte, 64<<10)
			res, err := s.Execute(ctx, &scsi.Command{CDB: read10(uint32(i*128), 128), DataIn: back})
			if err != nil || res.Status != 0 {
				errs <- fmt.Errorf("read %d: %+v, %v", i, res, err)
			} else if !bytes.Equal(back, data[i]) {
				errs <- fmt.Errorf("read %d: data differs", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRecoveryFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   iscsitest.Fault
		digests bool
	}{
		{"drop before answering", iscsitest.FaultDrop, false},
		{"drop in the middle of Data-In", iscsitest.FaultDropMidData, false},
		{"header digest error", iscsitest.FaultHeaderDigest, true},
		{"data digest error", iscsitest.FaultDataDigest, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var faults, writes, reads atomic.Int32
			tg := startTarget(t, iscsitest.Options{LUNs: []iscsitest.LUNOptions{{Size: 32 << 20}}, Hooks: iscsitest.Hooks{
				Command: func(c *iscsitest.Command) iscsitest.Fault {
					// Break the connection once in the concurrent writes
					// and once in the reads (data faults need a read):
					// every command is lost at most once, and a command
					// is re-issued once (TestReissueOnce).
					readOnly := tt.fault == iscsitest.FaultDataDigest || tt.fault == iscsitest.FaultDropMidData
					if (c.CDB[0] == 0x2a && writes.Add(1) == 4 && !readOnly) || (c.CDB[0] == 0x28 && reads.Add(1) == 4) {
						faults.Add(1)
						return tt.fault
					}
					return iscsitest.FaultNone
				}}})
			cfg := config(t, tg)
			fastRecovery(&cfg)
			if tt.digests {
				cfg.HeaderDigest, cfg.DataDigest = DigestRequire, DigestRequire
			}
			log, logs := newLog(t)
			cfg.Logger = log
			s := mustLogin(t, cfg)
			isid := s.Info().ISID
			concurrentIO(t, s, 24)
			info := s.Info()
			if info.Reconnects < 1 || faults.Load() < 1 {
				t.Errorf("reconnects = %d after %d faults, want at least 1", info.Reconnects, faults.Load())
			}
			if info.ISID != isid {
				t.Errorf("ISID changed across reconnects: %v → %v", isid, info.ISID)
			}
			if st := tg.Stats(); st.Reinstatements < 1 {
				t.Errorf("target saw %d session reinstatements, want at least 1 (same ISID, TSIH 0)", st.Reinstatements)
			}
			if tt.digests && !strings.Contains(logs.String(), "digest") {
				t.Errorf("logs do not mention the digest error")
			}
			noViolations(t, tg)
		})
	}
}

// TestRecoveryDisabled runs in a synctest bubble: the drop comes 50ms into
// a command the target answers after 200ms.
func TestRecoveryDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := pipeTarget(t, iscsitest.Options{CommandDelay: 200 * time.Millisecond})
		cfg := pipeConfig(t, tg)
		cfg.RecoveryTimeout = -1
		s := mustLogin(t, cfg)
		go func() {
			time.Sleep(50 * time.Millisecond)
			tg.DropConnections()
		}()
		_, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
		if !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("Execute across a drop with recovery disabled = %v, want ErrSessionClosed", err)
		}
		if _, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}}); !errors.Is(err, ErrSessionClosed) {
			t.Errorf("Execute afterwards = %v, want ErrSessionClosed", err)
		}
	})
}

func TestRecoveryTimeout(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{})
	cfg := config(t, tg)
	fastRecovery(&cfg)
	cfg.RecoveryTimeout = 700 * time.Millisecond
	s := mustLogin(t, cfg)
	tg.Close() // no target any more: every reconnect fails
	start := time.Now()
	_, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
	if !errors.Is(err, ErrRecoveryTimeout) {
		t.Fatalf("Execute with the target gone = %v, want ErrRecoveryTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Execute took %v to fail with a 700ms RecoveryTimeout", d)
	}
	if !strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "closed") {
		t.Errorf("error %q does not say what broke", err)
	}
}

func TestWindowClosure(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{Window: 4})
	cfg := config(t, tg)
	cfg.RecoveryTimeout = 10 * time.Second
	s := mustLogin(t, cfg)
	tg.SetWindow(0)
	// Let the window close: commands complete but MaxCmdSN stays.
	for range 4 {
		if _, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
			done <- err
		}()
	}
	select {
	case err := <-done:
		t.Fatalf("a command completed through a closed window (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	before := tg.Stats().Commands
	tg.SetWindow(4)
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("command after the window reopened: %v", err)
		}
	}
	if got := tg.Stats().Commands - before; got != 8 {
		t.Errorf("target ran %d commands after reopening, want 8", got)
	}
	noViolations(t, tg)

	// Closed for longer than RecoveryTimeout: the waiting command fails.
	cfg2 := config(t, tg)
	cfg2.RecoveryTimeout = 300 * time.Millisecond
	s2 := mustLogin(t, cfg2)
	tg.SetWindow(0)
	for range 4 {
		s2.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
	}
	_, err := s2.Execute(tctx(t), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
	if !errors.Is(err, ErrRecoveryTimeout) || !strings.Contains(err.Error(), "window") {
		t.Errorf("Execute through a window closed too long = %v, want ErrRecoveryTimeout naming the window", err)
	}
	tg.SetWindow(4)
}

func TestAsyncEvents(t *testing.T) {
	tests := []struct {
		name       string
		event      uint8
		wantLogout bool
	}{
		{"target requests logout", wire.AsyncLogoutRequest, true},
		{"target drops the connection", wire.AsyncDropConnection, false},
		{"target drops all connections", wire.AsyncDropAll, false},
		{"renegotiate", wire.AsyncRenegotiate, true},
		{"SCSI event", wire.AsyncSCSIEvent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := startTarget(t, iscsitest.Options{CommandDelay: 20 * time.Millisecond})
			cfg := config(t, tg)
			fastRecovery(&cfg)
			s := mustLogin(t, cfg)
			writeRead(t, s, 0, 0, randBytes(4096))
			tg.SendAsync(tt.event, 0, 0, 2)
			concurrentIO(t, s, 8)
			st := tg.Stats()
			if got := st.Logouts == 1; got != tt.wantLogout {
				t.Errorf("logouts = %d, want logout %v", st.Logouts, tt.wantLogout)
			}
			wantReconnect := tt.event != wire.AsyncSCSIEvent
			if got := s.Info().Reconnects > 0; got != wantReconnect {
				t.Errorf("reconnects = %d, want reconnect %v", s.Info().Reconnects, wantReconnect)
			}
			noViolations(t, tg)
		})
	}
}

// TestPings runs in a synctest bubble: 300ms of idle are virtual.
func TestPings(t *testing.T) {
	t.Run("target pings", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			tg := pipeTarget(t, iscsitest.Options{NOPInterval: 20 * time.Millisecond})
			s := mustLogin(t, pipeConfig(t, tg))
			time.Sleep(300 * time.Millisecond)
			writeRead(t, s, 0, 0, randBytes(4096))
			st := tg.Stats()
			if st.PingsAnswered < 3 || st.PingsAnswered+1 < st.PingsSent-1 {
				t.Errorf("target pings sent/answered = %d/%d, want most answered", st.PingsSent, st.PingsAnswered)
			}
			if s.Info().Reconnects != 0 {
				t.Errorf("reconnected %d times on a healthy connection", s.Info().Reconnects)
			}
			noViolations(t, tg)
		})
	})
	t.Run("keepalive", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			tg := pipeTarget(t, iscsitest.Options{})
			cfg := pipeConfig(t, tg)
			cfg.KeepAlive = 30 * time.Millisecond
			s := mustLogin(t, cfg)
			time.Sleep(300 * time.Millisecond)
			if st := tg.Stats(); st.InitiatorPings < 2 {
				t.Errorf("initiator sent %d keepalive pings in 300ms idle at a 30ms interval, want several", st.InitiatorPings)
			}
			writeRead(t, s, 0, 0, randBytes(4096))
			if s.Info().Reconnects != 0 {
				t.Errorf("reconnected %d times on a healthy connection", s.Info().Reconnects)
			}
			noViolations(t, tg)
		})
	})
}

// TestKeepAliveDeadConnection runs in a synctest bubble over net.Pipe: the
// target freezes (a pulled cable), the unanswered ping declares the
// connection dead after 3×KeepAlive, and the session reconnects.
func TestKeepAliveDeadConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := iscsitest.NewTarget(iscsitest.Options{})
		defer tg.Close()
		log, logs := newLog(t)
		cfg := Config{Portal: "192.0.2.1", TargetName: tg.Name(), InitiatorName: "iqn.2026-11.org.lunboot:t", Dial: tg.Dial, Logger: log}
		fastRecovery(&cfg)
		s, err := Login(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		tg.Freeze()
		start := time.Now()
		res, err := s.Execute(context.Background(), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
		if err != nil || res.Status != 0 {
			t.Fatalf("TEST UNIT READY across a frozen target = %+v, %v", res, err)
		}
		took := time.Since(start)
		if took < 3*DefaultKeepAlive || took > 5*DefaultKeepAlive {
			t.Errorf("command completed after %v, want about 3×KeepAlive (%v) + a ping interval", took, 3*DefaultKeepAlive)
		}
		if s.Info().Reconnects != 1 || !strings.Contains(logs.String(), "no answer to a NOP-Out ping") {
			t.Errorf("reconnects = %d; logs lack the dead-connection reason", s.Info().Reconnects)
		}
	})
}

func TestReject(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{Hooks: iscsitest.Hooks{Command: func(c *iscsitest.Command) iscsitest.Fault {
		if c.CDB[0] == 0x35 {
			return iscsitest.FaultReject
		}
		return iscsitest.FaultNone
	}}})
	s := mustLogin(t, config(t, tg))
	_, err := s.Execute(tctx(t), &scsi.Command{CDB: []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("rejected command = %v, want ErrProtocol saying command not supported", err)
	}
	writeRead(t, s, 0, 0, randBytes(4096))
	if s.Info().Reconnects != 0 {
		t.Errorf("a rejected command caused a reconnect")
	}
}

// TestCancel: a caller giving up gets its buffers back at once; the late
// data does not land in them. It runs in a synctest bubble, so the target's
// 300ms delay and the wait for its late answer are virtual.
func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tg := pipeTarget(t, iscsitest.Options{CommandDelay: 300 * time.Millisecond})
		s := mustLogin(t, pipeConfig(t, tg))
		for _, write := range []bool{false, true} {
			buf := bytes.Repeat([]byte{0xee}, 64<<10)
			cmd := &scsi.Command{CDB: read10(0, 128), DataIn: buf}
			if write {
				cmd = &scsi.Command{CDB: write10(0, 128), DataOut: buf}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_, err := s.Execute(ctx, cmd)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Execute with a 50ms deadline on a 300ms target = %v, want DeadlineExceeded", err)
			}
			// The buffer is ours again: scribble on it while the target
			// finishes (the race detector watches).
			for i := range buf {
				buf[i] = 0x11
			}
			time.Sleep(400 * time.Millisecond)
			if !write && !bytes.Equal(buf, bytes.Repeat([]byte{0x11}, len(buf))) {
				t.Errorf("Data-In landed in the buffer after Execute returned")
			}
		}
		writeRead(t, s, 0, 0, randBytes(4096))
	})
}
