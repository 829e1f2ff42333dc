package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Session is a logged-in normal session. It implements scsi.Executor; its
// methods are safe for concurrent use.
type Session struct {
	cfg    Config
	params Params // what we offer at every login
	log    *slog.Logger
	ctx    context.Context // cancelled by Close; bounds reconnects
	cancel context.CancelFunc
	wg     sync.WaitGroup // recovery goroutines

	mu       sync.Mutex
	cn       *conn            // nil while recovering
	tasks    map[uint32]*task // sent on cn and not finished, by ITT
	queue    []*task          // waiting for the window or a connection, in order
	cmdSN    uint32           // next CmdSN to assign
	expCmdSN uint32
	maxCmdSN uint32
	nextITT  uint32
	closed   bool
	closing  bool // Logout in progress: no new commands
	info     SessionInfo
	portal   string // where reconnects go (changes on permanent redirection)
	lastErr  error  // what broke the connection or the last reconnect
	failures int    // connection failures since a command last succeeded
	issued   [][]byte
	exclude  []CHAPAlgorithm
	changed  chan struct{} // closed and replaced when a task finishes, if waiters > 0
	waiters  int
	paths    []*path // Config.Portal, then Config.Failover
	cur      int     // index in paths of the portal in use (or last used)
	good     int     // index of the last portal whose logical unit was the right one
	probing  bool    // VerifyPath runs: only its commands go out

	taskPool sync.Pool
}

// taskState is where a task is in its life.
type taskState uint8

const (
	taskQueued taskState = iota
	taskSent
	taskFinished
)

// task is one SCSI command from Execute to its status.
type task struct {
	cmd         *scsi.Command
	dataIn      []byte
	edtl        uint32
	read, write bool
	done        chan struct{} // receives one value when the task finishes
	res         *scsi.Result
	err         error
	// recycle: finished by the reader with a result, no timer ever
	// armed — nothing else refers to the task, so Execute may reuse it.
	recycle  bool
	hadTimer bool
	probe    bool // a VerifyPath command: sent while the queue is held

	// Re-issues (recovery.go): lostOn is the portal whose connection
	// last failed with the command outstanding, reissuedVia the portal it
	// then went out through again, losses how many connections failed
	// with it outstanding (unplanned; each loss was followed by a
	// re-issue, Config.MaxReissues bounds them). Guarded by Session.mu.
	lostOn, reissuedVia string
	losses              int

	// Guarded by Session.mu.
	state     taskState
	itt       uint32
	cmdSN     uint32
	cn        *conn
	timer     *time.Timer
	cancelled bool
	// Progress, owned by cn's reader once sent (reset by pump).
	dataSN, inOff uint32
	inBytes       int
	r2tSN         uint32

	// mu guards the caller's buffers against use after Execute returned:
	// the reader fills DataIn and the writer reads DataOut only while the
	// task is not abandoned, and Execute waits until refs (queued Data-Out
	// PDUs pointing into DataOut) drops to zero before returning on
	// cancellation.
	mu        sync.Mutex
	abandoned bool
	out       []byte
	refs      int
	refsZero  chan struct{}
}

// Login dials cfg.Portal, logs in to cfg.TargetName and returns the
// session in full feature phase. Login errors are *LoginError (matching
// ErrAuthenticationFailed and friends) or wrap ErrProtocol.
func Login(ctx context.Context, cfg Config) (*Session, error) {
	cfg, params, err := cfg.normalize(false)
	if err != nil {
		return nil, err
	}
	s := &Session{
		cfg: cfg, params: params, log: cfg.Logger,
		tasks: map[uint32]*task{}, portal: cfg.Portal, cmdSN: 1,
		changed: make(chan struct{}),
	}
	s.taskPool.New = newTask
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.initPaths()
	nc, res, portal, err := s.connect(ctx)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.mu.Lock()
	s.install(nc, res, portal)
	s.notePath(portal, res.tpgt)
	s.mu.Unlock()
	s.log.Info("iscsi: logged in", "target", cfg.TargetName, "portal", portal, "isid", cfg.ISID.String(),
		"tsih", res.tsih, "chap", res.chap.String(), "header_digest", res.hd, "data_digest", res.dd)
	return s, nil
}

// loginInput builds the input of the next login attempt.
func (s *Session) loginInput() *loginInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &loginInput{
		cfg: &s.cfg, params: s.params, cmdSN: s.cmdSN, portal: s.portal,
		chapExclude: slices.Clone(s.exclude), issued: slices.Clone(s.issued),
	}
}

// connect performs one login (with redirections) for this session on the
// portal in use.
func (s *Session) connect(ctx context.Context) (net.Conn, *loginResult, string, error) {
	return s.connectVia(ctx, "")
}

// connectVia is connect through another portal (host:port) when via is
// not empty.
func (s *Session) connectVia(ctx context.Context, via string) (net.Conn, *loginResult, string, error) {
	in := s.loginInput()
	if via != "" {
		in.portal = via
	}
	nc, res, portal, permanent, err := loginWithFallback(ctx, in, func(alg CHAPAlgorithm) {
		s.mu.Lock()
		s.exclude = append(s.exclude, alg)
		s.mu.Unlock()
	})
	s.mu.Lock()
	if in.challenge != nil {
		s.issued = append(s.issued, in.challenge)
		if len(s.issued) > 16 {
			s.issued = s.issued[1:]
		}
	}
	if err == nil && permanent {
		// RFC 7143 §11.13.5 (status 01/02): the target moved for good;
		// later logins go to the new address.
		s.portal = portal
	}
	s.mu.Unlock()
	return nc, res, portal, err
}

// loginWithFallback logs in and, when a target refuses our response to a
// CHAP_A=7 challenge, tries once more without offering 7. tgtd (through
// at least 1.0.97) numbers SHA-1 as 7 where the IANA registry and Linux LIO
// use 7 for SHA-256, so the two sides compute different digests and the
// target reports an initiator or authentication error.
func loginWithFallback(ctx context.Context, in *loginInput, exclude func(CHAPAlgorithm)) (net.Conn, *loginResult, string, bool, error) {
	nc, res, portal, permanent, err := dialLogin(ctx, in)
	var le *LoginError
	if err != nil && in.chapAlg == CHAPSHA256 && errors.As(err, &le) && le.Class == 2 && le.Detail <= 1 &&
		!slices.Contains(in.chapExclude, CHAPSHA256) {
		if len(chapOffer(in.cfg.CHAP, append(slices.Clone(in.chapExclude), CHAPSHA256))) == 0 {
			// Nothing else was offered: never fall back to an algorithm
			// the user did not list (a downgrade, to MD5 say).
			in.cfg.Logger.Info("iscsi: target refused our CHAP SHA-256 response; SHA-256 is the only algorithm configured, "+
				"so no retry with another (tgtd numbers SHA-1 as 7)", "portal", portal, "status", fmt.Sprintf("%02x/%02x", le.Class, le.Detail))
			return nc, res, portal, permanent, err
		}
		// Info, not Warn: with tgtd this happens on every login and the
		// second attempt succeeds; a real failure is reported by it.
		in.cfg.Logger.Info("iscsi: target refused our CHAP SHA-256 response; retrying without CHAP_A=7 "+
			"(tgtd numbers SHA-1 as 7)", "portal", portal, "status", fmt.Sprintf("%02x/%02x", le.Class, le.Detail))
		in.chapExclude = append(in.chapExclude, CHAPSHA256)
		in.portal = portal
		if exclude != nil {
			exclude(CHAPSHA256)
		}
		nc, res, portal, permanent, err = dialLogin(ctx, in)
	}
	return nc, res, portal, permanent, err
}

// notePath records the portal group of the path in use, learned at
// login, unless a redirection led elsewhere. s.mu is held.
func (s *Session) notePath(portal string, tpgt uint16) {
	if i := s.pathIndex(portal); i >= 0 {
		s.cur, s.good = i, i
		s.paths[i].addr.TPGT = tpgt
	}
}

// install makes a freshly logged-in connection current. s.mu is held.
func (s *Session) install(nc net.Conn, res *loginResult, portal string) {
	c := newConn(s, nc, res, portal)
	s.cn = c
	s.expCmdSN, s.maxCmdSN = res.expCmdSN, res.maxCmdSN
	s.info = SessionInfo{
		TargetName: s.cfg.TargetName, InitiatorName: s.cfg.InitiatorName, TargetAlias: res.alias,
		ISID: s.cfg.ISID, TSIH: res.tsih, TPGT: res.tpgt, Portal: portal,
		Params: res.params, TargetMaxRecvDataSegmentLength: res.targetMRDSL,
		HeaderDigest: res.hd, DataDigest: res.dd, CHAP: res.chap, CHAPAlgorithm: res.chapAlg,
		Reconnects: s.info.Reconnects,
	}
	c.start()
}

// Info describes the session as last negotiated.
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// checkCommand rejects what this transport cannot carry.
func checkCommand(cmd *scsi.Command) error {
	switch {
	case cmd == nil:
		return errors.New("iscsi: nil command")
	case len(cmd.CDB) == 0 || len(cmd.CDB) > 16:
		return fmt.Errorf("iscsi: CDB of %d bytes; 1 to 16 supported (no extended-CDB AHS)", len(cmd.CDB))
	case len(cmd.DataIn) > 0 && len(cmd.DataOut) > 0:
		return errors.New("iscsi: bidirectional commands are not supported")
	case uint64(len(cmd.DataIn)) > 1<<32-1 || uint64(len(cmd.DataOut)) > 1<<32-1:
		return errors.New("iscsi: data buffer larger than 4 GiB")
	}
	return nil
}

// Execute sends cmd and waits for its status. It implements
// scsi.Executor: many calls may be outstanding at once; they go out in
// order within the target's command window. Across a reconnect the command
// is re-issued; with Config.MaxReissues set, a command lost again after
// that many re-issues fails with ErrReissueFailed; in any case it fails
// with ErrRecoveryTimeout if it waits longer than
// Config.RecoveryTimeout. Once a command reached the target, the wait for
// its status is bounded by ctx (a dead connection is detected by the
// keepalive and recovered). When ctx ends first, Execute returns ctx's
// error and guarantees that cmd's buffers are no longer used; the command
// may still complete at the target.
func (s *Session) Execute(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
	return s.execute(ctx, cmd, false)
}

// execute is Execute; probe marks a VerifyPath command, which may go out
// while the session holds its queue for the check.
func (s *Session) execute(ctx context.Context, cmd *scsi.Command, probe bool) (*scsi.Result, error) {
	if err := checkCommand(cmd); err != nil {
		return nil, err
	}
	t := s.taskPool.Get().(*task)
	t.probe = probe
	t.cmd, t.dataIn, t.out = cmd, cmd.DataIn, cmd.DataOut
	t.read, t.write = len(cmd.DataIn) > 0, len(cmd.DataOut) > 0
	t.edtl = uint32(len(cmd.DataIn) + len(cmd.DataOut))
	t.state = taskQueued
	s.mu.Lock()
	if s.closed || s.closing {
		s.mu.Unlock()
		return nil, ErrSessionClosed
	}
	s.queue = append(s.queue, t)
	c := s.cn
	sent := s.pump()
	if t.state == taskQueued {
		s.armTimer(t)
	}
	s.mu.Unlock()
	if sent && !c.inBatch.Load() {
		c.flushSoon()
	}
	select {
	case <-t.done:
		res, err := t.res, t.err
		if t.write {
			// A target may answer before it took all the data (an
			// error status, RFC 7143 §11.4.7): Data-Out PDUs pointing
			// into cmd.DataOut can still be queued. The caller owns
			// its buffer again once Execute returns, so wait until the
			// writer has sent or dropped them.
			t.mu.Lock()
			t.waitUnreferenced()
			t.mu.Unlock()
		}
		s.reuse(t)
		return res, err
	case <-ctx.Done():
		if s.abandon(t) {
			return t.res, t.err
		}
		return nil, fmt.Errorf("iscsi: command 0x%02x: %w", cmd.CDB[0], context.Cause(ctx))
	}
}

// newTask allocates a task; s.tasksPool recycles them (and their done
// channels) on the common path, one allocation fewer per command. The pool
// is per session so that nothing crosses between sessions (nor testing/
// synctest bubbles).
func newTask() any { return &task{done: make(chan struct{}, 1)} }

// reuse returns a finished task to the pool when nothing else can still
// refer to it: the reader finished it with a result, no wait timer was
// armed, and the writer released every PDU pointing at its data.
func (s *Session) reuse(t *task) {
	if !t.recycle || t.hadTimer {
		return
	}
	t.mu.Lock()
	busy := t.refs != 0 || t.abandoned
	t.mu.Unlock()
	if busy {
		return
	}
	*t = task{done: t.done}
	s.taskPool.Put(t)
}

// pump queues commands for sending while the window allows (RFC 7143
// §4.2.2.1: CmdSN in [ExpCmdSN, MaxCmdSN]) and reports whether it queued
// any; the caller then has them written (Execute and recovery flush, the
// reader writes before it reads again). s.mu is held; holding it while the
// PDUs are queued keeps them in CmdSN order on the wire.
func (s *Session) pump() bool {
	c := s.cn
	if c == nil || c.draining {
		return false
	}
	if s.probing {
		return s.pumpProbes(c)
	}
	sent := false
	i := 0
	for ; i < len(s.queue) && wire.SerialLessEq(s.cmdSN, s.maxCmdSN); i++ {
		t := s.queue[i]
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		t.itt = s.allocITT()
		t.cmdSN = s.cmdSN
		s.cmdSN++
		t.state, t.cn = taskSent, c
		t.dataSN, t.inOff, t.inBytes, t.r2tSN = 0, 0, 0, 0
		if t.lostOn != "" {
			t.reissuedVia = c.portal
		}
		s.tasks[t.itt] = t
		c.sendCommand(t)
		sent = true
	}
	// Keep the queue at the start of its array: re-slicing it from the
	// front would use up its capacity until every Execute reallocated.
	n := copy(s.queue, s.queue[i:])
	clear(s.queue[n:])
	s.queue = s.queue[:n]
	return sent
}

// pumpProbes is pump while VerifyPath runs: only its commands go out,
// the rest keep their place in the queue. s.mu is held.
func (s *Session) pumpProbes(c *conn) bool {
	sent := false
	for i := 0; i < len(s.queue) && wire.SerialLessEq(s.cmdSN, s.maxCmdSN); {
		t := s.queue[i]
		if !t.probe {
			i++
			continue
		}
		s.queue = slices.Delete(s.queue, i, i+1)
		if t.timer != nil {
			t.timer.Stop()
			t.timer = nil
		}
		t.itt = s.allocITT()
		t.cmdSN = s.cmdSN
		s.cmdSN++
		t.state, t.cn = taskSent, c
		t.dataSN, t.inOff, t.inBytes, t.r2tSN = 0, 0, 0, 0
		if t.lostOn != "" {
			t.reissuedVia = c.portal
		}
		s.tasks[t.itt] = t
		c.sendCommand(t)
		sent = true
	}
	return sent
}

// allocITT returns a task tag not in use. s.mu is held.
func (s *Session) allocITT() uint32 {
	for {
		s.nextITT++
		if s.nextITT == wire.ReservedTag {
			continue
		}
		if _, busy := s.tasks[s.nextITT]; !busy {
			return s.nextITT
		}
	}
}

// waitLimit is how long a queued command may wait.
func (s *Session) waitLimit() time.Duration {
	if s.cfg.RecoveryTimeout < 0 {
		return DefaultRecoveryTimeout
	}
	return s.cfg.RecoveryTimeout
}

// armTimer bounds how long a queued task waits. s.mu is held.
func (s *Session) armTimer(t *task) {
	if t.timer != nil {
		return
	}
	limit := s.waitLimit()
	t.hadTimer = true
	t.timer = time.AfterFunc(limit, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.state != taskQueued || t.timer == nil {
			return
		}
		t.timer = nil
		why := "the target's command window to open"
		if s.cn == nil {
			why = "the session to reconnect"
		}
		err := fmt.Errorf("%w: command 0x%02x waited %v for %s", ErrRecoveryTimeout, t.cmd.CDB[0], limit, why)
		if s.lastErr != nil && s.cn == nil {
			err = fmt.Errorf("%w (last error: %w)", err, s.lastErr)
		}
		for _, p := range s.paths {
			if p.refused != nil && s.cn == nil {
				// The reason the other paths were not taken matters
				// more than the dead portal's last refusal to connect.
				err = fmt.Errorf("%w; %w", err, p.refused)
			}
		}
		s.finish(t, nil, err)
	})
}

// finish completes a task with its result. s.mu is held.
func (s *Session) finish(t *task, res *scsi.Result, err error) {
	switch t.state {
	case taskFinished:
		return
	case taskSent:
		delete(s.tasks, t.itt)
	case taskQueued:
		if i := slices.Index(s.queue, t); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
		}
	}
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.state = taskFinished
	t.res, t.err = res, err
	t.done <- struct{}{}
	if err == nil {
		s.failures = 0
	}
	if s.waiters > 0 {
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// abandon detaches a task whose caller gave up. It returns true if the
// task finished first (its result is then valid). Otherwise, once it
// returns, neither the reader nor the writer touches the caller's buffers:
// a sent command still runs to completion at the target, so later R2Ts are
// served from a private copy of DataOut and Data-In is discarded.
func (s *Session) abandon(t *task) bool {
	s.mu.Lock()
	if t.state == taskFinished {
		s.mu.Unlock()
		return true
	}
	if t.state == taskQueued {
		s.finish(t, nil, context.Canceled)
	} else {
		t.cancelled = true
	}
	s.mu.Unlock()
	t.mu.Lock()
	t.abandoned = true
	t.waitUnreferenced()
	if t.write {
		t.out = bytes.Clone(t.out)
	}
	t.mu.Unlock()
	return false
}

// waitUnreferenced waits until no queued PDU points into the task's
// DataOut: the writer sends or drops every one (a failed connection drops
// its queue). t.mu is held, and released while waiting.
func (t *task) waitUnreferenced() {
	for t.refs > 0 {
		ch := make(chan struct{})
		t.refsZero = ch
		t.mu.Unlock()
		<-ch
		t.mu.Lock()
	}
}

// release drops one writer reference to the task's DataOut.
func (t *task) release() {
	t.mu.Lock()
	t.refs--
	if t.refs == 0 && t.refsZero != nil {
		close(t.refsZero)
		t.refsZero = nil
	}
	t.mu.Unlock()
}

// waitFor blocks until cond (evaluated with s.mu held) is true or ctx ends.
func (s *Session) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		s.waiters++
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Logout lets outstanding commands finish (bounded by ctx), logs the session
// out (RFC 7143 §11.14, reason 0: close the session) and closes it. The
// logout exchange itself is bounded by Config.LoginTimeout.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSessionClosed
	}
	s.closing = true
	s.mu.Unlock()
	defer s.Close()
	if err := s.waitFor(ctx, func() bool { return len(s.tasks) == 0 && len(s.queue) == 0 }); err != nil {
		return fmt.Errorf("iscsi: logout: waiting for outstanding commands: %w", err)
	}
	s.mu.Lock()
	c := s.cn
	s.mu.Unlock()
	if c == nil {
		return errors.New("iscsi: logout: not connected (reconnect in progress); session closed without logout")
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LoginTimeout)
	defer cancel()
	rsp, err := c.logout(lctx, wire.LogoutCloseSession)
	if err != nil {
		return fmt.Errorf("iscsi: logout: %w", err)
	}
	if rsp.Response != 0 {
		return fmt.Errorf("iscsi: logout: target answered response %d (1 CID not found, 2 recovery not supported, 3 cleanup failed)", rsp.Response)
	}
	s.log.Info("iscsi: logged out", "target", s.cfg.TargetName)
	return nil
}

// Close ends the session abruptly: the connection is closed without
// logout and every outstanding command fails with ErrSessionClosed.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closeLocked(ErrSessionClosed)
	c := s.cn
	s.cn = nil
	s.mu.Unlock()
	if c != nil {
		c.fail(ErrSessionClosed)
		c.wg.Wait()
	}
	s.wg.Wait()
	return nil
}

// closeLocked marks the session closed and fails every task with err.
func (s *Session) closeLocked(err error) {
	s.closed = true
	s.cancel()
	for _, t := range s.tasks {
		s.finish(t, nil, err)
	}
	for len(s.queue) > 0 {
		s.finish(s.queue[0], nil, err)
	}
}
