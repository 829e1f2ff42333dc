// Package iscsitest is an in-process iSCSI target for tests of lunboot's
// initiator and of what is built on it. It is not a product target and
// never replaces tgtd in interop tests: it exists to produce, on demand,
// what real targets do rarely — keys split across PDUs, proposals,
// redirections, CHAP quirks (mutual, base64, tgtd's algorithm numbering,
// skipped or reflected authentication), R2T sequences with several
// outstanding R2Ts, a closing and reopening command window, dropped
// connections, digest errors and hostile PDUs — behind a memory-backed LUN
// that serves READ/WRITE (10)/(16), READ CAPACITY, INQUIRY, REPORT LUNS,
// TEST UNIT READY, SYNCHRONIZE CACHE, MODE SENSE and UNMAP.
//
//	tgt := iscsitest.NewTarget(iscsitest.Options{LUNs: []iscsitest.LUNOptions{{Size: 64 << 20}}})
//	addr, err := tgt.Listen()
//	defer tgt.Close()
//
// The target records protocol violations it sees the initiator commit
// (Stats().Violations), so a test can assert there were none.
package iscsitest

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"
)

// DefaultName is the target name used when Options.Name is empty.
const DefaultName = "iqn.2026-01.org.lunboot:iscsitest"

// KV is one key=value pair of login or text data.
type KV struct{ Key, Value string }

// Options configure a Target. Zero values give a plain, well-behaved
// target with one 16 MiB LUN 0.
type Options struct {
	// Name is the target's iSCSI name (default DefaultName).
	Name  string
	Alias string
	// TPGT is the portal group tag declared at login (default 1).
	TPGT uint16
	// LUNs to serve (default one LUN 0 of 16 MiB, 512-byte blocks).
	LUNs []LUNOptions

	// CHAP, when set, requires CHAP authentication.
	CHAP *CHAP

	// The target's side of the operational keys. Zero values select:
	// MaxRecvDataSegmentLength 8192, MaxBurstLength 262144,
	// FirstBurstLength 65536, MaxOutstandingR2T 1, DefaultTime2Wait 0.
	MaxRecvDataSegmentLength int
	MaxBurstLength           int
	FirstBurstLength         int
	MaxOutstandingR2T        int
	DefaultTime2Wait         int
	// InitialR2T makes the target insist on InitialR2T=Yes.
	InitialR2T bool
	// NoImmediateData makes the target refuse immediate data.
	NoImmediateData bool
	// Digests is the digest values the target accepts for HeaderDigest and
	// DataDigest (default "CRC32C,None"; "None" refuses digests).
	Digests string
	// Answers replaces the target's answer to a key with a fixed value
	// (for instance "Reject", "NotUnderstood", or an out-of-range number).
	Answers map[string]string
	// Propose lists keys the target offers first in the operational stage
	// (as LIO does with FirstBurstLength); it waits for their answers.
	Propose []KV
	// TextSplit, when non-zero, caps the text in one Login or Text
	// Response PDU: longer answers are sent with the C bit.
	TextSplit int

	// DataInSegment caps Data-In PDUs below the initiator's
	// MaxRecvDataSegmentLength.
	DataInSegment int
	// NoPhaseCollapse sends status in a SCSI Response after the Data-In
	// PDUs instead of in the last Data-In.
	NoPhaseCollapse bool
	// Window is the command window: commands received but not answered
	// (default 32).
	Window int
	// CommandDelay delays every command's answer.
	CommandDelay time.Duration
	// UnitAttention reports POWER ON OCCURRED on the first command of each
	// session to each LUN, as tgtd does.
	UnitAttention bool
	// NOPInterval makes the target ping idle initiators with NOP-In.
	NOPInterval time.Duration
	// DiscoveryExtra is listed by SendTargets after this target.
	DiscoveryExtra []DiscoveryTarget
	// LUNsFrom serves that target's logical units (their storage and
	// identity) instead of LUNs: a second target controller, or a
	// portal group of its own, in front of the same disks.
	LUNsFrom *Target

	// Hooks inject faults.
	Hooks Hooks
	// Logger receives the target's protocol events; nil discards them.
	Logger *slog.Logger
}

// CHAP configures the target's authentication.
type CHAP struct {
	// Username and Secret are what the initiator must present.
	Username, Secret string
	// TargetUsername and TargetSecret answer mutual CHAP.
	TargetUsername, TargetSecret string
	// Algorithms the target accepts (default 5, 6, 7, 8); it picks the
	// initiator's most preferred one among them.
	Algorithms []int
	// SHA1As7 reproduces tgtd: it answers CHAP_A=7 but computes SHA-1.
	SHA1As7 bool
	// Base64 sends challenges and responses in base64 (0b…).
	Base64 bool
	// ChallengeLen is the length of the target's challenge (default 16).
	ChallengeLen int
	// SkipMutual: asked to authenticate itself, the target moves on
	// without CHAP_N/CHAP_R (a downgrade the initiator must refuse).
	SkipMutual bool
	// SkipAuth: offered AuthMethod=CHAP only, the target answers None.
	SkipAuth bool
	// WrongMutualResponse: the target answers mutual CHAP with a response
	// computed from a wrong secret.
	WrongMutualResponse bool
	// ReflectChallenge: from the second login of a session on, the target
	// presents the initiator's previous challenge as its own.
	ReflectChallenge bool
}

// DiscoveryTarget is an extra SendTargets entry.
type DiscoveryTarget struct {
	Name      string
	Addresses []string // TargetAddress values, host:port,tpgt
}

// Fault is what a Command hook asks the target to do with a command.
type Fault int

// Faults.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultDrop closes the connection without answering.
	FaultDrop
	// FaultDropMidData sends half of the read data, then closes.
	FaultDropMidData
	// FaultHeaderDigest corrupts the header digest of the answer (when
	// header digests are in use).
	FaultHeaderDigest
	// FaultDataDigest corrupts the data digest of the first Data-In (when
	// data digests are in use).
	FaultDataDigest
	// FaultReject answers with a Reject (command not supported).
	FaultReject
	// FaultSkip sends nothing: the hook answered through Command.Conn.
	FaultSkip
)

// Hooks let a test change the target's behaviour.
type Hooks struct {
	// Redirect is asked at the n-th normal login (from 1); a non-empty
	// address answers with a redirection to it (status 01/01, or 01/02
	// when permanent).
	Redirect func(n int) (addr string, permanent bool)
	// LoginStatus is asked at the n-th login (from 1); a non-zero class
	// fails the login with that status.
	LoginStatus func(n int) (class, detail uint8)
	// EditLoginKeys may change the keys of every Login Response before it
	// is sent (stage is the response's CSG).
	EditLoginKeys func(stage int, keys []KV) []KV
	// LoginOpcode, when set, answers the first login request with a PDU
	// of this opcode instead of a Login Response.
	LoginOpcode byte
	// Command is called for every SCSI command once its data is in.
	Command func(c *Command) Fault
}

// Command describes a SCSI command for the Command hook.
type Command struct {
	Conn  *Conn
	LUN   [8]byte
	CDB   []byte
	ITT   uint32
	CmdSN uint32
	// Seq counts commands across the target, from 1.
	Seq int
}

// Stats are counters for assertions.
type Stats struct {
	Logins, FailedLogins, Logouts, Reinstatements, Redirects int
	// DiscoveryLogouts counts logouts of discovery sessions (Logouts
	// counts normal sessions').
	DiscoveryLogouts                                 int
	Commands, DataOutPDUs, DataInPDUs, R2Ts          int
	ImmediateBytes, UnsolicitedBytes, SolicitedBytes int
	PingsSent, PingsAnswered, InitiatorPings         int
	// MaxInFlight is the most commands outstanding at once.
	MaxInFlight int
	// LoginRequestPDUs counts Login Requests with the C bit set (text the
	// initiator split).
	ContinuedLoginPDUs int
	// LastKeys are the keys the initiator sent in its last login.
	LastKeys []KV
	// Violations lists protocol errors the initiator committed.
	Violations []string
}

// Target is an in-process iSCSI target.
type Target struct {
	opts Options
	log  *slog.Logger
	luns map[int]*LUN

	mu        sync.Mutex
	lns       []net.Listener
	addr      string
	conns     map[*Conn]struct{}
	sessions  map[string]*session
	nextTSIH  uint16
	stats     Stats
	logins    int
	normal    int
	cmdSeq    int
	closed    bool
	wg        sync.WaitGroup
	reflected map[string][]byte // initiator challenges, by session key
}

// session is the target's view of a normal session (for reinstatement).
type session struct {
	key    string
	tsih   uint16
	conn   *Conn
	uaDone map[int]bool
}

// NewTarget returns a target; call Listen, Serve or ServeConn to use it.
func NewTarget(opts Options) *Target {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.TPGT == 0 {
		opts.TPGT = 1
	}
	if len(opts.LUNs) == 0 {
		opts.LUNs = []LUNOptions{{}}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&opts.MaxRecvDataSegmentLength, 8192)
	def(&opts.MaxBurstLength, 262144)
	def(&opts.FirstBurstLength, 65536)
	def(&opts.MaxOutstandingR2T, 1)
	def(&opts.Window, 32)
	if opts.Digests == "" {
		opts.Digests = "CRC32C,None"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Target{opts: opts, log: log, luns: map[int]*LUN{}, conns: map[*Conn]struct{}{},
		sessions: map[string]*session{}, nextTSIH: 0x100, reflected: map[string][]byte{}}
	if opts.LUNsFrom != nil {
		maps.Copy(t.luns, opts.LUNsFrom.luns)
	} else {
		for _, lo := range opts.LUNs {
			t.luns[lo.ID] = newLUN(lo)
		}
	}
	return t
}

// Name returns the target's iSCSI name.
func (t *Target) Name() string { return t.opts.Name }

// LUN returns the logical unit with that ID, or nil.
func (t *Target) LUN(id int) *LUN { return t.luns[id] }

func (t *Target) lunIDs() []int {
	var ids []int
	for id := range t.luns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Listen serves on a fresh loopback port in the background and returns its
// address (host:port).
func (t *Target) Listen() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	if err := t.register(ln); err != nil {
		return "", err
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.accept(ln)
	}()
	return ln.Addr().String(), nil
}

// ClosePortal stops listening on addr (as Listen returned it) and drops
// every connection made through it, as when one portal of a target
// fails; the target's other portals keep serving.
func (t *Target) ClosePortal(addr string) error {
	t.mu.Lock()
	var ln net.Listener
	for _, l := range t.lns {
		if l.Addr().String() == addr {
			ln = l
		}
	}
	var cs []*Conn
	for c := range t.conns {
		if c.nc.LocalAddr().String() == addr {
			cs = append(cs, c)
		}
	}
	t.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("iscsitest: no portal %s", addr)
	}
	ln.Close()
	for _, c := range cs {
		c.Close()
	}
	return nil
}

// Serve accepts connections on l until Close.
func (t *Target) Serve(l net.Listener) error {
	if err := t.register(l); err != nil {
		return err
	}
	return t.accept(l)
}

// register adds a listener (a portal) of the target; the first one's
// address is Addr.
func (t *Target) register(l net.Listener) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		l.Close()
		return net.ErrClosed
	}
	t.lns = append(t.lns, l)
	if t.addr == "" {
		t.addr = l.Addr().String()
	}
	return nil
}

func (t *Target) accept(l net.Listener) error {
	for {
		nc, err := l.Accept()
		if err != nil {
			t.mu.Lock()
			closed := t.closed
			t.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		t.ServeConn(nc)
	}
}

// ServeConn serves one connection (for instance one end of a net.Pipe) in
// the background.
func (t *Target) ServeConn(nc net.Conn) {
	c := newConn(t, nc)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		c.serve()
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}()
}

// Dial connects to the target over an in-memory pipe; it fits
// iscsi.Config.Dial, whatever address is asked for.
func (t *Target) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	t.ServeConn(b)
	return a, nil
}

// Addr returns the listening address ("" before Listen or Serve).
func (t *Target) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// Close stops listening, drops every connection and waits for them.
func (t *Target) Close() error {
	t.mu.Lock()
	t.closed = true
	lns := t.lns
	var cs []*Conn
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, c := range cs {
		c.Close()
	}
	t.wg.Wait()
	return nil
}

// Stats returns a copy of the counters.
func (t *Target) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.LastKeys = slices.Clone(s.LastKeys)
	s.Violations = slices.Clone(s.Violations)
	return s
}

// Sessions returns how many normal sessions are logged in.
func (t *Target) Sessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

func (t *Target) count(f func(s *Stats)) {
	t.mu.Lock()
	f(&t.stats)
	t.mu.Unlock()
}

func (t *Target) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.log.Warn("iscsitest: initiator protocol violation", "what", msg)
	t.count(func(s *Stats) { s.Violations = append(s.Violations, msg) })
}

// fullFeature returns the connections in full feature phase.
func (t *Target) fullFeature() []*Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []*Conn
	for c := range t.conns {
		if c.ffp.Load() {
			cs = append(cs, c)
		}
	}
	return cs
}

// SetWindow changes the command window of every connection. 0 closes it:
// MaxCmdSN stops advancing as commands complete. Reopening announces the
// new MaxCmdSN with a NOP-In.
func (t *Target) SetWindow(n int) {
	t.mu.Lock()
	t.opts.Window = n
	t.mu.Unlock()
	for _, c := range t.fullFeature() {
		c.setWindow(n)
	}
}

// SendAsync sends an Asynchronous Message to every connection in full
// feature phase (RFC 7143 §11.9: event 1 asks for logout within p3
// seconds, 2 and 3 announce dropping connections with Time2Wait p2, 4 asks
// for renegotiation).
func (t *Target) SendAsync(event uint8, p1, p2, p3 uint16) {
	for _, c := range t.fullFeature() {
		c.sendAsync(event, p1, p2, p3)
	}
}

// DropConnections closes every connection abruptly.
func (t *Target) DropConnections() {
	t.mu.Lock()
	var cs []*Conn
	for c := range t.conns {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Freeze makes every current connection stop reading and answering, as a
// hung target or a pulled cable would; new connections are served normally.
func (t *Target) Freeze() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.frozen.Store(true)
	}
}
