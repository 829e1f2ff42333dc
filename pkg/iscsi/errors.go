package iscsi

import (
	"cmp"
	"errors"
	"fmt"
)

// Errors callers branch on, usable with errors.Is. A *LoginError matches the
// sentinel of its status class and detail.
var (
	// ErrAuthenticationFailed: the target refused our CHAP credentials
	// (login status 02/01), or the target failed to authenticate itself
	// in mutual CHAP.
	ErrAuthenticationFailed = errors.New("iscsi: authentication failed")
	// ErrAuthorizationFailed: the initiator is not allowed to access the
	// target (02/02).
	ErrAuthorizationFailed = errors.New("iscsi: initiator not authorized")
	// ErrTargetNotFound: no such target on this portal (02/03).
	ErrTargetNotFound = errors.New("iscsi: target not found")
	// ErrTargetRemoved: the target was removed (02/04).
	ErrTargetRemoved = errors.New("iscsi: target removed")
	// ErrTargetUnavailable: the target reported an error of its own, such
	// as service unavailable or out of resources (status class 3).
	ErrTargetUnavailable = errors.New("iscsi: target unavailable")
	// ErrProtocol: the target violated RFC 7143 (malformed or unexpected
	// PDU, digest error, impossible negotiation answer).
	ErrProtocol = errors.New("iscsi: protocol error")
	// ErrSessionClosed: the session was closed or logged out.
	ErrSessionClosed = errors.New("iscsi: session closed")
	// ErrRecoveryTimeout: a command waited longer than RecoveryTimeout for
	// the session to come back (or for the command window to open).
	ErrRecoveryTimeout = errors.New("iscsi: recovery timeout")
	// ErrReissueFailed: a command outstanding when its connection failed
	// was re-issued Config.MaxReissues times and its connection failed
	// again before it completed; it is not sent again.
	ErrReissueFailed = errors.New("iscsi: command failed again after its last allowed re-issue")
)

// protoErr builds an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// LoginError is a login the target answered with a non-success status
// (RFC 7143 §11.13.5). Its text states the status; what the operator should
// do about it is the caller's to say (lunboot's pkg/advice), in the words
// of wherever the configuration came from.
type LoginError struct {
	Class, Detail uint8
	// Target and Portal say where the login went; Initiator is the name
	// we logged in as, the one a target's ACL must allow.
	Target, Portal, Initiator string
}

// Error states the status and its meaning.
func (e *LoginError) Error() string {
	what := e.Target
	if what == "" {
		what = "discovery session"
	}
	return fmt.Sprintf("iscsi: login to %s at %s: status %02x/%02x: %s",
		what, e.Portal, e.Class, e.Detail, e.status())
}

// status is the meaning RFC 7143 §11.13.5 gives the status.
func (e *LoginError) status() string {
	switch e.Class {
	case 1:
		return "target moved; the redirection could not be followed"
	case 2:
		switch e.Detail {
		case 0x00:
			return "initiator error: the target refused the login request"
		case 0x01:
			return "authentication failed"
		case 0x02:
			return fmt.Sprintf("initiator %s not authorized", cmp.Or(e.Initiator, "(unknown)"))
		case 0x03:
			return "target or LUN not found"
		case 0x04:
			return "target removed: it no longer exists on this portal"
		case 0x05:
			return "unsupported iSCSI version"
		case 0x06:
			return "too many connections on this session"
		case 0x07:
			return "missing parameter (initiator or target name)"
		case 0x08:
			return "cannot include this connection in the session"
		case 0x09:
			return "session type not supported by the target"
		case 0x0a:
			return "session does not exist"
		case 0x0b:
			return "request invalid during login"
		}
		return "initiator error"
	case 3:
		switch e.Detail {
		case 0x00:
			return "target error"
		case 0x01:
			return "service unavailable: the target is not accepting logins now"
		case 0x02:
			return "target out of resources"
		}
		return "target error"
	}
	return "unknown status class"
}

// Is maps the status to the package's sentinels.
func (e *LoginError) Is(target error) bool {
	switch target {
	case ErrAuthenticationFailed:
		return e.Class == 2 && e.Detail == 1
	case ErrAuthorizationFailed:
		return e.Class == 2 && e.Detail == 2
	case ErrTargetNotFound:
		return e.Class == 2 && e.Detail == 3
	case ErrTargetRemoved:
		return e.Class == 2 && e.Detail == 4
	case ErrTargetUnavailable:
		return e.Class == 3
	}
	return false
}

// CHAPSide says whose CHAP credentials an authentication failure concerns.
type CHAPSide uint8

// CHAP sides.
const (
	// CHAPInitiatorSide: ours (CHAP.Username and Secret). The target
	// refused our response (login status 02/01), or it requires an
	// authentication we did not offer.
	CHAPInitiatorSide CHAPSide = iota + 1
	// CHAPTargetSide: the target's (CHAP.TargetUsername and TargetSecret).
	// It failed to prove itself in mutual CHAP.
	CHAPTargetSide
)

// String names the side: "initiator" or "target".
func (s CHAPSide) String() string {
	switch s {
	case CHAPInitiatorSide:
		return "initiator"
	case CHAPTargetSide:
		return "target"
	}
	return "neither side"
}

// AuthError is an authentication failure the initiator detected itself
// during the security stage (RFC 7143 §12.1.3): a target that did not prove
// its identity, or an exchange CHAP forbids. It matches
// ErrAuthenticationFailed. It never holds a secret.
type AuthError struct {
	// Side is whose credentials are at fault; zero when neither side's
	// are (no CHAP algorithm in common).
	Side CHAPSide
	// Reason states what happened.
	Reason string
}

func (e *AuthError) Error() string { return "iscsi: authentication failed: " + e.Reason }

// Is matches ErrAuthenticationFailed.
func (e *AuthError) Is(target error) bool { return target == ErrAuthenticationFailed }

// FailedCHAPSide reports whose credentials the authentication failure err
// concerns: the side an *AuthError names, the initiator's for a login
// status 02/01 (the target judged our response; a target asked for mutual
// CHAP without an account to answer it with says the same), and zero for
// any other error.
func FailedCHAPSide(err error) CHAPSide {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Side
	}
	if errors.Is(err, ErrAuthenticationFailed) {
		return CHAPInitiatorSide
	}
	return 0
}

// DigestError is a login that failed because the target would not use a
// digest the Config requires (DigestRequire, RFC 7143 §13.1). The login
// stops during operational negotiation, before the full feature phase.
type DigestError struct {
	// Key is "HeaderDigest" or "DataDigest".
	Key string
	// Answer is the target's answer to our CRC32C offer ("Reject",
	// "None"), or the values it proposed when Proposed is set;
	// empty when it never answered (the key then keeps its default, None).
	Answer   string
	Proposed bool
}

func (e *DigestError) Error() string {
	switch {
	case e.Proposed:
		return fmt.Sprintf("iscsi: login: the target proposed %s=%s, and CRC32C is required", e.Key, e.Answer)
	case e.Answer != "":
		return fmt.Sprintf("iscsi: login: the target answered %s=%s to our CRC32C offer, and CRC32C is required", e.Key, e.Answer)
	}
	return fmt.Sprintf("iscsi: login: the target did not answer our %s=CRC32C offer (the default is None), and CRC32C is required", e.Key)
}
