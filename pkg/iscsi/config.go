package iscsi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/internal/wire"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Config says where and how to log in.
type Config struct {
	// Portal is "host:port" or "host" (port 3260); IPv6 as "[addr]:port".
	Portal string
	// TargetName is the target's iSCSI name; empty only for Discover.
	TargetName string
	// InitiatorName is our iSCSI name (iqn.…, eui.…, naa.…).
	InitiatorName string
	// ISID is the initiator part of the session identity. Zero means one
	// random ISID (RFC 7143 §11.12.5, type 10b "random") chosen at Login
	// and kept for the session's whole life, so that every reconnect
	// reinstates the same session instead of leaving a stale one behind.
	ISID ISID
	// CHAP enables CHAP authentication; nil offers AuthMethod=None only.
	CHAP *CHAP
	// HeaderDigest and DataDigest say which digests the login offers and
	// accepts (RFC 7143 §13.1); the zero value offers None only.
	HeaderDigest, DataDigest Digest
	// Params overrides the operational keys we offer; nil uses
	// DefaultParams. A non-nil Params is used as is: start from
	// DefaultParams() and change what you need.
	Params *Params
	// LoginTimeout bounds one login attempt, TCP connect included
	// (default 10s).
	LoginTimeout time.Duration
	// RecoveryTimeout is how long a command may wait across reconnects (or
	// for a closed command window to open) before it fails with
	// ErrRecoveryTimeout (default 60s; 0 uses the default). Negative
	// disables recovery: a connection failure fails the outstanding
	// commands and closes the session.
	RecoveryTimeout time.Duration
	// MaxReissues is how many times a command lost with a failed
	// connection is sent again before it fails with ErrReissueFailed.
	// 0 (the default) bounds the re-issues by RecoveryTimeout alone: a
	// session serving a running system's root (lunboot carry) must ride
	// out a link that flaps twice, since a failed write there means EIO
	// and a root remounted read-only. The firmware boot path sets 1
	// (issue 14: commands in flight are re-issued once), so a command
	// that takes down every connection it goes out on surfaces at once
	// instead of looping until the recovery timeout. Negative is an error.
	MaxReissues int
	// KeepAlive is the NOP-Out ping interval on an idle connection
	// (default 5s); a ping unanswered for 3×KeepAlive means the
	// connection is dead. Negative disables pings.
	KeepAlive time.Duration
	// Dial opens TCP connections; nil uses a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives protocol events; nil discards them.
	Logger *slog.Logger

	// Failover lists further portals of the same target: where the
	// session continues when its connection fails and Portal does not
	// take it back (RFC 7143 §6.3.5, §7.1.5: a new login with the same
	// ISID, TSIH 0). A TPGT of 0 means the portal group is not known
	// yet (it is learned at login). Portals of the session's own portal
	// group are tried first: there the login reinstates the session and
	// the target drops the failed connection's tasks; through another
	// group it is a new session (another I_T nexus) of the same target.
	Failover []TargetAddress
	// VerifyPath, when set, runs after the session moved to a portal it
	// was not using, before any queued command goes out there: it gets
	// an Executor that works on the new connection alone and returns an
	// error if the logical unit it finds is not the one the session was
	// using (lunboot compares VPD page 0x83). A refused portal is not
	// used again by this session.
	VerifyPath func(ctx context.Context, ex scsi.Executor) error
	// OnPath, when set, is called (from the recovery goroutine) when the
	// session moved to another portal or refused one. It must not block.
	OnPath func(PathEvent)

	// loginChunk, when non-zero, caps the text we put in one login PDU
	// (tests use it to force C-bit continuation).
	loginChunk int
}

// Defaults for Config's zero values.
const (
	DefaultLoginTimeout    = 10 * time.Second
	DefaultRecoveryTimeout = 60 * time.Second
	DefaultKeepAlive       = 5 * time.Second
	DefaultPort            = 3260
)

// Digest is the policy for one digest key, HeaderDigest or DataDigest
// (RFC 7143 §13.1). lunboot computes only CRC32C, so the policy says
// whether the login offers it, and whether it accepts a session without it.
type Digest uint8

// Digest policies.
const (
	// DigestNone offers None only.
	DigestNone Digest = iota
	// DigestPrefer offers CRC32C,None: CRC32C if the target agrees.
	DigestPrefer
	// DigestRequire offers CRC32C alone; a target that refuses it (Reject,
	// None, or no answer, which leaves the RFC default None) fails the
	// login with a *DigestError during negotiation, before the full
	// feature phase begins.
	DigestRequire
)

// offer is the value list sent for the key, most preferred first (RFC
// 7143 §6.2.1).
func (d Digest) offer() string {
	switch d {
	case DigestPrefer:
		return "CRC32C,None"
	case DigestRequire:
		return "CRC32C"
	}
	return "None"
}

// String names the policy: "none", "prefer" or "require".
func (d Digest) String() string {
	switch d {
	case DigestNone:
		return "none"
	case DigestPrefer:
		return "prefer"
	case DigestRequire:
		return "require"
	}
	return fmt.Sprintf("Digest(%d)", uint8(d))
}

// CHAP holds CHAP credentials (RFC 7143 §12.1.3). It is the one type for
// them across lunboot: the kernel command line (pkg/bootcfg), the login
// and the hand-off to the OS (pkg/handoff) all use it.
//
// No formatting of a CHAP value (fmt verbs, slog, encoding.TextMarshaler
// and so JSON) shows a secret: see String.
type CHAP struct {
	// Username and Secret are the initiator's identity (one-way CHAP).
	Username, Secret string
	// TargetUsername and TargetSecret, both set, make CHAP mutual: the
	// target must prove it knows TargetSecret. It must differ from Secret.
	TargetUsername, TargetSecret string
	// Algorithms lists the digests we offer, most preferred first; nil
	// means SHA3-256, SHA-256, SHA-1, MD5.
	Algorithms []CHAPAlgorithm
}

// Enabled reports whether the initiator authenticates (a user name is set).
func (c CHAP) Enabled() bool { return c.Username != "" }

// Mutual reports whether the target must authenticate too.
func (c CHAP) Mutual() bool { return c.TargetUsername != "" || c.TargetSecret != "" }

// IsZero reports whether no credential is set.
func (c CHAP) IsZero() bool {
	return c.Username == "" && c.Secret == "" && c.TargetUsername == "" && c.TargetSecret == ""
}

// mutual is Mutual for a possibly nil *CHAP (Config.CHAP).
func (c *CHAP) mutual() bool { return c != nil && c.Mutual() }

// String describes the credentials without the secrets:
// `none`, `one-way user "alice"`, `mutual user "alice" target user "san"`.
func (c CHAP) String() string {
	switch {
	case c.Mutual():
		return fmt.Sprintf("mutual user %q target user %q", c.Username, c.TargetUsername)
	case c.Enabled():
		return fmt.Sprintf("one-way user %q", c.Username)
	case c.Secret != "":
		return "incomplete (secret without user name)"
	}
	return "none"
}

// Format implements fmt.Formatter: every verb prints String(), so %v,
// %+v and %#v of a CHAP or of a struct holding one show no secret.
func (c CHAP) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		io.WriteString(f, strconv.Quote(c.String()))
		return
	}
	io.WriteString(f, c.String())
}

// LogValue implements slog.LogValuer without the secrets.
func (c CHAP) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalText implements encoding.TextMarshaler (and so JSON) with
// String().
func (c CHAP) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// CHAPAlgorithm is a CHAP digest (CHAP_A value, IANA PPP authentication
// algorithms as RFC 7143 §12.1.3 uses them).
type CHAPAlgorithm uint8

// CHAP algorithms.
const (
	CHAPMD5     CHAPAlgorithm = wire.CHAPMD5
	CHAPSHA1    CHAPAlgorithm = wire.CHAPSHA1
	CHAPSHA256  CHAPAlgorithm = wire.CHAPSHA256
	CHAPSHA3256 CHAPAlgorithm = wire.CHAPSHA3256
)

// DefaultCHAPAlgorithms is what we offer when CHAP.Algorithms is nil.
var DefaultCHAPAlgorithms = []CHAPAlgorithm{CHAPSHA3256, CHAPSHA256, CHAPSHA1, CHAPMD5}

func (a CHAPAlgorithm) String() string {
	switch a {
	case CHAPMD5:
		return "MD5"
	case CHAPSHA1:
		return "SHA-1"
	case CHAPSHA256:
		return "SHA-256"
	case CHAPSHA3256:
		return "SHA3-256"
	case 0:
		return "none"
	}
	return fmt.Sprintf("CHAP_A %d", uint8(a))
}

// digestSize is the response length of the algorithm, 0 if unknown.
func (a CHAPAlgorithm) digestSize() int {
	if h := wire.CHAPHash(int(a)); h != nil {
		return h.Size()
	}
	return 0
}

// ISID is the 6-byte initiator session identifier (RFC 7143 §11.12.5).
type ISID [6]byte

// String formats the ISID as 12 hex digits.
func (i ISID) String() string { return hex.EncodeToString(i[:]) }

// randomISID returns a type 10b ("random") ISID: T=10b, A reserved (zero),
// B and C random (24 bits), D a random qualifier (16 bits).
func randomISID() (ISID, error) {
	var id ISID
	if _, err := io.ReadFull(rand.Reader, id[1:]); err != nil {
		return id, err
	}
	id[0] = 0x80
	return id, nil
}

// Params are the operational keys of a session (RFC 7143 §13). As offers
// they are what we propose; in SessionInfo they are the negotiated result,
// with MaxRecvDataSegmentLength being what we declared we can receive.
type Params struct {
	MaxConnections           int
	InitialR2T               bool
	ImmediateData            bool
	MaxRecvDataSegmentLength int
	MaxBurstLength           int
	FirstBurstLength         int
	DefaultTime2Wait         int // seconds
	DefaultTime2Retain       int // seconds
	MaxOutstandingR2T        int
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
	ErrorRecoveryLevel       int
}

// DefaultParams returns what lunboot offers: RFC 7143 defaults, except
// for throughput InitialR2T=No (unsolicited data), a 256 KiB receive
// segment (one Data-In PDU per 128 KiB read), MaxBurstLength at its
// maximum and a 256 KiB first burst — the values open-iscsi offers.
func DefaultParams() Params {
	return Params{
		MaxConnections:           1,
		InitialR2T:               false,
		ImmediateData:            true,
		MaxRecvDataSegmentLength: 262144,
		MaxBurstLength:           16776192,
		FirstBurstLength:         262144,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		MaxOutstandingR2T:        1,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
		ErrorRecoveryLevel:       0,
	}
}

// rfcDefaults are the values a key has when it is not negotiated (RFC 7143
// §13). A key the target rejects or does not answer keeps these.
func rfcDefaults() Params {
	return Params{
		MaxConnections:           1,
		InitialR2T:               true,
		ImmediateData:            true,
		MaxRecvDataSegmentLength: 8192,
		MaxBurstLength:           262144,
		FirstBurstLength:         65536,
		DefaultTime2Wait:         2,
		DefaultTime2Retain:       20,
		MaxOutstandingR2T:        1,
		DataPDUInOrder:           true,
		DataSequenceInOrder:      true,
		ErrorRecoveryLevel:       0,
	}
}

// Validate checks that every value is within its RFC 7143 §13 range and
// that this initiator supports it.
func (p *Params) Validate() error {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("iscsi: Params.%s = %d, want %d..%d", name, v, lo, hi)
		}
		return nil
	}
	for _, c := range []struct {
		name      string
		v, lo, hi int
	}{
		{"MaxConnections", p.MaxConnections, 1, 65535},
		{"MaxRecvDataSegmentLength", p.MaxRecvDataSegmentLength, 512, wire.MaxDataSegment},
		{"MaxBurstLength", p.MaxBurstLength, 512, wire.MaxDataSegment},
		{"FirstBurstLength", p.FirstBurstLength, 512, p.MaxBurstLength},
		{"DefaultTime2Wait", p.DefaultTime2Wait, 0, 3600},
		{"DefaultTime2Retain", p.DefaultTime2Retain, 0, 3600},
		{"MaxOutstandingR2T", p.MaxOutstandingR2T, 1, 65535},
		{"ErrorRecoveryLevel", p.ErrorRecoveryLevel, 0, 0},
	} {
		if err := check(c.name, c.v, c.lo, c.hi); err != nil {
			return err
		}
	}
	if !p.DataPDUInOrder || !p.DataSequenceInOrder {
		return errors.New("iscsi: Params: DataPDUInOrder and DataSequenceInOrder must be true (out-of-order data is not supported)")
	}
	return nil
}

// CHAPMode says how a session authenticated.
type CHAPMode uint8

// CHAP modes.
const (
	CHAPNone CHAPMode = iota
	CHAPOneWay
	CHAPMutual
)

func (m CHAPMode) String() string {
	switch m {
	case CHAPOneWay:
		return "one-way"
	case CHAPMutual:
		return "mutual"
	}
	return "none"
}

// SessionInfo describes a logged-in session.
type SessionInfo struct {
	TargetName, InitiatorName string
	TargetAlias               string
	ISID                      ISID
	TSIH                      uint16
	// TPGT is the target portal group tag the target declared.
	TPGT uint16
	// Portal is the host:port connected to, after any redirection.
	Portal string
	// Params are the negotiated operational values.
	Params Params
	// TargetMaxRecvDataSegmentLength is what the target declared it can
	// receive; our Data-Out and immediate data PDUs are no larger.
	TargetMaxRecvDataSegmentLength int
	// HeaderDigest and DataDigest tell whether CRC32C is in use.
	HeaderDigest, DataDigest bool
	CHAP                     CHAPMode
	CHAPAlgorithm            CHAPAlgorithm
	// Reconnects counts successful recoveries (session reinstatements).
	Reconnects int
}

// Target is one target a SendTargets discovery returned.
type Target struct {
	Name      string
	Addresses []TargetAddress
}

// TargetAddress is a portal of a target (RFC 7143 §13.8 TargetAddress).
type TargetAddress struct {
	Host string // DNS name or IP literal, without brackets
	Port uint16
	TPGT uint16
}

// String formats the address as host:port,tpgt.
func (a TargetAddress) String() string {
	return fmt.Sprintf("%s,%d", net.JoinHostPort(a.Host, fmt.Sprint(a.Port)), a.TPGT)
}

// Portal returns the address as a Config.Portal value.
func (a TargetAddress) Portal() string { return net.JoinHostPort(a.Host, fmt.Sprint(a.Port)) }

// normalize fills defaults (a random ISID among them) and validates;
// discovery tells whether an empty TargetName is allowed.
func (c Config) normalize(discovery bool) (Config, Params, error) {
	if c.InitiatorName == "" {
		return c, Params{}, errors.New("iscsi: Config.InitiatorName is required")
	}
	if !discovery && c.TargetName == "" {
		return c, Params{}, errors.New("iscsi: Config.TargetName is required (use Discover to list targets)")
	}
	if _, _, err := splitPortal(c.Portal); err != nil {
		return c, Params{}, err
	}
	for i, a := range c.Failover {
		if a.Host == "" || a.Port == 0 || strings.ContainsAny(a.Host, " /,[]") {
			return c, Params{}, fmt.Errorf("iscsi: failover portal %d %q: want a host and a port", i+1, a.String())
		}
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	if c.MaxReissues < 0 {
		return c, Params{}, fmt.Errorf("iscsi: MaxReissues %d: want 0 (bounded by RecoveryTimeout) or a positive count", c.MaxReissues)
	}
	if c.RecoveryTimeout == 0 {
		c.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	p := DefaultParams()
	if c.Params != nil {
		p = *c.Params
	}
	if err := p.Validate(); err != nil {
		return c, p, err
	}
	if err := c.CHAP.validate(c.Logger); err != nil {
		return c, p, err
	}
	if c.ISID == (ISID{}) {
		id, err := randomISID()
		if err != nil {
			return c, p, fmt.Errorf("iscsi: ISID: %w", err)
		}
		c.ISID = id
	}
	return c, p, nil
}

// validate checks the credentials before anything is sent: secrets must be
// present, and mutual CHAP must not reuse the initiator's secret (RFC 7143
// §12.1.3 forbids one secret in both directions).
func (c *CHAP) validate(log *slog.Logger) error {
	if c == nil {
		return nil
	}
	if c.Username == "" || c.Secret == "" {
		return errors.New("iscsi: CHAP needs both Username and Secret")
	}
	if c.mutual() {
		if c.TargetUsername == "" || c.TargetSecret == "" {
			return errors.New("iscsi: mutual CHAP needs both TargetUsername and TargetSecret")
		}
		if c.TargetSecret == c.Secret {
			return errors.New("iscsi: mutual CHAP: the target secret equals the initiator secret; " +
				"RFC 7143 §12.1.3 requires a different secret in each direction")
		}
	}
	for _, a := range c.Algorithms {
		if a.digestSize() == 0 {
			return fmt.Errorf("iscsi: CHAP algorithm %d not supported (use 5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256)", uint8(a))
		}
	}
	// RFC 7143 §12.1.3 asks for at least 96-bit secrets without IPsec.
	if len(c.Secret) < 12 {
		log.Warn("iscsi: CHAP secret shorter than 12 bytes; many targets and the OS initiator refuse it", "length", len(c.Secret))
	}
	if c.mutual() && len(c.TargetSecret) < 12 {
		log.Warn("iscsi: CHAP target secret shorter than 12 bytes", "length", len(c.TargetSecret))
	}
	return nil
}
