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
)

// protoErr builds an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// LoginError is a login the target answered with a non-success status
// (RFC 7143 §11.13.5).
type LoginError struct {
	Class, Detail uint8
	// Target and Portal say where the login went; Initiator is our name,
	// quoted by the authorisation message.
	Target, Portal, Initiator string
}

// Error says what failed and what to check.
func (e *LoginError) Error() string {
	what := e.Target
	if what == "" {
		what = "discovery session"
	}
	return fmt.Sprintf("iscsi: login to %s at %s: status %02x/%02x: %s",
		what, e.Portal, e.Class, e.Detail, e.explain())
}

func (e *LoginError) explain() string {
	switch e.Class {
	case 1:
		return "target moved; the redirection could not be followed"
	case 2:
		switch e.Detail {
		case 0x00:
			return "initiator error: the target refused the login request; check the initiator name and login parameters"
		case 0x01:
			return "authentication failed: check the CHAP user name and secret (and that the target expects CHAP)"
		case 0x02:
			return fmt.Sprintf("not authorised: check the target ACL allows initiator %s", cmp.Or(e.Initiator, "(unknown)"))
		case 0x03:
			return "target or LUN not found: check the target name (run discovery to list the names this portal serves)"
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
			return "target error: check the target's logs"
		case 0x01:
			return "service unavailable: the target is not accepting logins now; retry later"
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
