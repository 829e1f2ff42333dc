package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// addr parses host:port into a TargetAddress with tag tpgt.
func addrOf(t *testing.T, hostport string, tpgt uint16) TargetAddress {
	t.Helper()
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return TargetAddress{Host: h, Port: uint16(n), TPGT: tpgt}
}

// identityCheck is what lunboot's boot flow does: remember the LU's VPD
// 0x83 identity at login and compare on every new portal.
func identityCheck(t *testing.T, s **Session, lun scsi.LUN) (func(context.Context, scsi.Executor) error, func()) {
	// mu: remember runs on the test's goroutine, verify on the session's,
	// and only the network orders them (which the race detector cannot see).
	var (
		mu   sync.Mutex
		want scsi.Identity
	)
	verify := func(ctx context.Context, ex scsi.Executor) error {
		got, err := scsi.LogicalUnitIdentity(ctx, ex, lun)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if !got.Same(want) {
			return fmt.Errorf("LUN %s is %s there, not %s", lun, got, want)
		}
		return nil
	}
	remember := func() {
		id, err := scsi.LogicalUnitIdentity(tctx(t), *s, lun)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		want = id
		mu.Unlock()
	}
	return verify, remember
}

type events struct {
	mu sync.Mutex
	ev []PathEvent
}

func (e *events) add(ev PathEvent) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

// wait returns the events once there are at least n, or after 5 s: the
// session reports a move after it re-sent the queued commands, so they
// can complete before OnPath is called.
func (e *events) wait(n int) []PathEvent {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := e.all()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}
func (e *events) all() []PathEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]PathEvent(nil), e.ev...)
}

// inFlight starts n concurrent writes of distinct data whose answers the
// target delays, so they are outstanding when the path fails; it returns
// a function that waits for them and reads everything back.
func inFlight(t *testing.T, s *Session, n int) func() {
	t.Helper()
	ctx := tctx(t)
	data := make([][]byte, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		data[i] = randBytes(8 << 10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Execute(ctx, &scsi.Command{CDB: write10(uint32(1000+i*16), 16), DataOut: data[i]})
			if err != nil || res.Status != 0 {
				errs <- fmt.Errorf("write %d across the failover: %+v, %v", i, res, err)
			}
		}()
	}
	return func() {
		t.Helper()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i := range n {
			back := make([]byte, 8<<10)
			res, err := s.Execute(ctx, &scsi.Command{CDB: read10(uint32(1000+i*16), 16), DataIn: back})
			if err != nil || res.Status != 0 || string(back) != string(data[i]) {
				t.Errorf("read back %d after the failover: %+v, %v, same data %v", i, res, err, string(back) == string(data[i]))
			}
		}
	}
}

// TestFailoverSamePortalGroup: one target with two portals in portal
// group 1; the first portal dies with commands in flight. The session
// logs in through the second with the same ISID and TSIH 0, which the
// target takes as a reinstatement of the same session (RFC 7143 §6.3.5),
// and the commands complete.
func TestFailoverSamePortalGroup(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{TPGT: 1, CommandDelay: 100 * time.Millisecond})
	second, err := tg.Listen()
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	var s *Session
	verify, remember := identityCheck(t, &s, scsi.LUN{})
	cfg := config(t, tg)
	fastRecovery(&cfg)
	cfg.Failover = []TargetAddress{addrOf(t, second, 0)}
	cfg.VerifyPath, cfg.OnPath = verify, ev.add
	s = mustLogin(t, cfg)
	remember()
	isid := s.Info().ISID
	wait := inFlight(t, s, 6)
	time.Sleep(30 * time.Millisecond) // the writes reach the target
	if err := tg.ClosePortal(cfg.Portal); err != nil {
		t.Fatal(err)
	}
	wait()
	info := s.Info()
	if info.Portal != second || info.ISID != isid {
		t.Errorf("after failover: portal %s ISID %v, want %s and the same ISID %v", info.Portal, info.ISID, second, isid)
	}
	if st := tg.Stats(); st.Reinstatements < 1 {
		t.Errorf("target saw %d reinstatements, want the session reinstated through the second portal", st.Reinstatements)
	}
	if n := tg.Sessions(); n != 1 {
		t.Errorf("target has %d sessions, want 1", n)
	}
	got := ev.wait(1)
	if len(got) != 1 || got[0].Kind != PathMoved || !got[0].SameGroup || got[0].From.Portal() != cfg.Portal || got[0].To.Portal() != second || got[0].To.TPGT != 1 {
		t.Errorf("path events = %+v, want one move %s → %s in portal group 1", got, cfg.Portal, second)
	}
	noViolations(t, tg)
}

// TestFailoverOtherPortalGroup: two target controllers (portal groups 1
// and 2) in front of the same logical unit. When the first dies the
// session continues as a new session through group 2, after checking the
// LU identity there, and commands in flight are re-issued.
func TestFailoverOtherPortalGroup(t *testing.T) {
	a := startTarget(t, iscsitest.Options{TPGT: 1, CommandDelay: 100 * time.Millisecond})
	b := startTarget(t, iscsitest.Options{TPGT: 2, LUNsFrom: a})
	var ev events
	var s *Session
	verify, remember := identityCheck(t, &s, scsi.LUN{})
	cfg := config(t, a)
	fastRecovery(&cfg)
	cfg.Failover = []TargetAddress{addrOf(t, b.Addr(), 2)}
	cfg.VerifyPath, cfg.OnPath = verify, ev.add
	s = mustLogin(t, cfg)
	remember()
	wait := inFlight(t, s, 6)
	time.Sleep(30 * time.Millisecond)
	a.Close()
	wait()
	if p := s.Info().Portal; p != b.Addr() {
		t.Errorf("portal after failover = %s, want %s", p, b.Addr())
	}
	if st := b.Stats(); st.Reinstatements != 0 || b.Sessions() != 1 {
		t.Errorf("second controller: %d reinstatements, %d sessions; want a new session", st.Reinstatements, b.Sessions())
	}
	got := ev.wait(1)
	if len(got) != 1 || got[0].Kind != PathMoved || got[0].SameGroup || got[0].From.TPGT != 1 || got[0].To.TPGT != 2 {
		t.Errorf("path events = %+v, want one move from group 1 to group 2", got)
	}
	noViolations(t, b)
}

// TestFailoverRefusesOtherLU: the second portal serves a logical unit
// with another identity. The session refuses it, says why, never sends it
// a queued command, and the commands fail after the recovery timeout with
// that reason instead of writing to the wrong disk.
func TestFailoverRefusesOtherLU(t *testing.T) {
	a := startTarget(t, iscsitest.Options{TPGT: 1})
	var mu sync.Mutex
	var opcodes []byte
	b := startTarget(t, iscsitest.Options{TPGT: 2, LUNs: []iscsitest.LUNOptions{{NAA: []byte{0x60, 0x01, 0x40, 0x5f, 0xff, 0xff, 0, 9}}},
		Hooks: iscsitest.Hooks{Command: func(c *iscsitest.Command) iscsitest.Fault {
			mu.Lock()
			opcodes = append(opcodes, c.CDB[0])
			mu.Unlock()
			return iscsitest.FaultNone
		}}})
	var ev events
	var s *Session
	verify, remember := identityCheck(t, &s, scsi.LUN{})
	cfg := config(t, a)
	fastRecovery(&cfg)
	cfg.RecoveryTimeout = 3 * time.Second
	cfg.Failover = []TargetAddress{addrOf(t, b.Addr(), 0)}
	cfg.VerifyPath, cfg.OnPath = verify, ev.add
	s = mustLogin(t, cfg)
	remember()
	a.Close()
	data := randBytes(4096)
	_, err := s.Execute(tctx(t), &scsi.Command{CDB: write10(0, 8), DataOut: data})
	if !errors.Is(err, ErrRecoveryTimeout) || !strings.Contains(err.Error(), "another logical unit") || !strings.Contains(err.Error(), "naa.6001405fffff0009") {
		t.Errorf("write with only a wrong LU left = %v, want ErrRecoveryTimeout naming the other LU", err)
	}
	got := ev.wait(1)
	if len(got) < 1 || got[0].Kind != PathRefused || got[0].To.Portal() != b.Addr() || got[0].Err == nil {
		t.Errorf("path events = %+v, want a refusal of %s with its reason", got, b.Addr())
	}
	for _, e := range got {
		if e.Kind == PathMoved {
			t.Errorf("the session moved to %s, a portal of another LU", e.To)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(opcodes) == 0 || bytes.Contains(opcodes, []byte{0x2a}) {
		t.Errorf("the refused portal received commands %x, want its INQUIRY and no WRITE(10) (0x2a)", opcodes)
	}
}

// TestReissueOnce: a command in flight when its path fails is re-issued
// once, not on every reconnect. Here one WRITE takes down every
// connection it reaches (the target drops the connection when it arrives):
// the first time through the first portal, which then stops listening; the
// session continues through the second portal of the same group and
// re-issues the write, which drops that connection too. The write then
// fails with ErrReissueFailed naming the command and both portals — well
// before the recovery timeout, after exactly two deliveries — and the
// session itself recovers and serves the next command.
func TestReissueOnce(t *testing.T) {
	const poisonLBA = 4242
	var (
		seen  atomic.Int32
		first string
		tg    *iscsitest.Target
	)
	tg = startTarget(t, iscsitest.Options{TPGT: 1, Hooks: iscsitest.Hooks{Command: func(c *iscsitest.Command) iscsitest.Fault {
		if c.CDB[0] != 0x2a || binary.BigEndian.Uint32(c.CDB[2:6]) != poisonLBA {
			return iscsitest.FaultNone
		}
		if seen.Add(1) == 1 {
			tg.ClosePortal(first)
		}
		return iscsitest.FaultDrop
	}}})
	first = tg.Addr()
	second, err := tg.Listen()
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	var s *Session
	verify, remember := identityCheck(t, &s, scsi.LUN{})
	cfg := config(t, tg)
	fastRecovery(&cfg)
	cfg.RecoveryTimeout = 10 * time.Second
	cfg.MaxReissues = 1 // the firmware boot path's setting (issue 14)
	cfg.Failover = []TargetAddress{addrOf(t, second, 0)}
	cfg.VerifyPath, cfg.OnPath = verify, ev.add
	s = mustLogin(t, cfg)
	remember()

	start := time.Now()
	_, err = s.Execute(tctx(t), &scsi.Command{CDB: write10(poisonLBA, 8), DataOut: randBytes(4096)})
	took := time.Since(start)
	if !errors.Is(err, ErrReissueFailed) {
		t.Fatalf("write that breaks every connection = %v, want ErrReissueFailed", err)
	}
	for _, want := range []string{"command 0x2a", "lost on " + first, "re-issued through " + second} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took >= cfg.RecoveryTimeout {
		t.Errorf("the write failed after %v, want before the recovery timeout (%v)", took, cfg.RecoveryTimeout)
	}
	time.Sleep(200 * time.Millisecond) // a third delivery would come now
	if n := seen.Load(); n != 2 {
		t.Errorf("the target received the write %d times, want 2 (the command and its one re-issue)", n)
	}

	// The session is still good: the next command goes through.
	data := randBytes(4096)
	if res, err := s.Execute(tctx(t), &scsi.Command{CDB: write10(100, 8), DataOut: data}); err != nil || res.Status != 0 {
		t.Fatalf("write after the failed re-issue: %+v, %v", res, err)
	}
	back := make([]byte, 4096)
	if res, err := s.Execute(tctx(t), &scsi.Command{CDB: read10(100, 8), DataIn: back}); err != nil || res.Status != 0 || !bytes.Equal(back, data) {
		t.Errorf("read back after the failed re-issue: %+v, %v, same data %v", res, err, bytes.Equal(back, data))
	}
	if p := s.Info().Portal; p != second {
		t.Errorf("portal in use = %s, want %s", p, second)
	}
	if got := ev.wait(1); len(got) != 1 || got[0].Kind != PathMoved || got[0].Reissued != 1 {
		t.Errorf("path events = %+v, want one move to %s with one command re-issued", got, second)
	}
	noViolations(t, tg)
}

// TestReissueUnlimited: with MaxReissues 0 (the carried daemon's setting)
// a command survives two drops of its connection to the one portal in a
// row and completes at its third delivery, within the recovery timeout.
func TestReissueUnlimited(t *testing.T) {
	const flapLBA = 4243
	var seen atomic.Int32
	tg := startTarget(t, iscsitest.Options{TPGT: 1, Hooks: iscsitest.Hooks{Command: func(c *iscsitest.Command) iscsitest.Fault {
		if c.CDB[0] != 0x2a || binary.BigEndian.Uint32(c.CDB[2:6]) != flapLBA {
			return iscsitest.FaultNone
		}
		if seen.Add(1) <= 2 {
			return iscsitest.FaultDrop
		}
		return iscsitest.FaultNone
	}}})
	cfg := config(t, tg)
	fastRecovery(&cfg)
	cfg.RecoveryTimeout = 10 * time.Second
	s := mustLogin(t, cfg)

	data := randBytes(4096)
	res, err := s.Execute(tctx(t), &scsi.Command{CDB: write10(flapLBA, 8), DataOut: data})
	if err != nil || res.Status != 0 {
		t.Fatalf("write across two connection drops: %+v, %v (want it re-issued until it completes)", res, err)
	}
	if n := seen.Load(); n != 3 {
		t.Errorf("the target received the write %d times, want 3 (the command and two re-issues)", n)
	}
	back := make([]byte, 4096)
	if res, err := s.Execute(tctx(t), &scsi.Command{CDB: read10(flapLBA, 8), DataIn: back}); err != nil || res.Status != 0 || !bytes.Equal(back, data) {
		t.Errorf("read back after the re-issues: %+v, %v, same data %v", res, err, bytes.Equal(back, data))
	}
	if n := s.Info().Reconnects; n != 2 {
		t.Errorf("reconnects = %d, want 2", n)
	}
	noViolations(t, tg)
}

// TestMaxReissuesNegative: a negative MaxReissues is refused with an
// error naming the setting.
func TestMaxReissuesNegative(t *testing.T) {
	cfg := Config{Portal: "192.0.2.1:3260", TargetName: "iqn.2026-12.test:t", InitiatorName: "iqn.2026-12.test:i", MaxReissues: -1}
	_, err := Login(tctx(t), cfg)
	if err == nil || !strings.Contains(err.Error(), "MaxReissues -1") {
		t.Errorf("Login with MaxReissues -1 = %v, want an error naming MaxReissues", err)
	}
}
