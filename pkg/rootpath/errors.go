package rootpath

import (
	"fmt"
	"strings"
)

// Field names used in [Error.Field].
const (
	FieldSyntax      = ""            // the string as a whole (missing separators, too long)
	FieldScheme      = "scheme"      // "iscsi:" or "iscsi://"
	FieldCredentials = "credentials" // dracut's user:pass@ prefix, the URL's user%pass@
	FieldServer      = "server"      // host name or IP literal
	FieldProtocol    = "protocol"    // RFC 4173 protocol number
	FieldPort        = "port"        // TCP port
	FieldIface       = "iface"       // dracut's open-iscsi iface name
	FieldNetDev      = "netdev"      // dracut's network device
	FieldLUN         = "LUN"         // logical unit number
	FieldTarget      = "target name" // iSCSI target name
	FieldQuery       = "URL argument"
)

// Mask replaces secrets (CHAP passwords) wherever this package echoes input.
const Mask = "***"

// maxEcho bounds how much of a hostile input an error message repeats.
const maxEcho = 300

// Error reports why a root-path, target string or LUN was rejected. Its
// message names the field that was wrong and repeats the input with every
// password replaced by [Mask], so it is safe to log and print.
type Error struct {
	// Form is what was being parsed: "root-path", "iSCSI URL" or "" when
	// only a field was parsed (ParseLUN).
	Form string
	// Input is the string as given, secrets masked, long inputs shortened.
	Input string
	// Field is one of the Field* constants; FieldSyntax for problems with
	// the string as a whole.
	Field string
	// Value is the text of the offending field (masked if it is a secret).
	Value string
	// Err says what is wrong with it.
	Err error
}

// Error formats the problem as `<form> "<input>": <field> "<value>": <why>`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Form != "" {
		fmt.Fprintf(&b, "%s %q: ", e.Form, e.Input)
	}
	if e.Field != FieldSyntax {
		fmt.Fprintf(&b, "%s %q: ", e.Field, e.Value)
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying reason.
func (e *Error) Unwrap() error { return e.Err }

// echo shortens s for inclusion in an error message.
func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return s[:maxEcho] + "…"
}

// Redact returns s with the CHAP passwords masked, as the parsers' errors
// show it: s may be a root-path in the dracut form or an iscsi:// URL, valid
// or not. Use it to echo a target string that failed some other check.
func Redact(s string) string {
	if len(s) >= len(urlScheme) && strings.EqualFold(s[:len(urlScheme)], urlScheme) {
		return maskURL(s)
	}
	return maskRootPath(s)
}

// maskAuth masks the passwords in a dracut-style "user:pass[:ruser:rpass]"
// credential string. With an unexpected number of parts everything but the
// first (the user name) is masked, so a password containing ':' never leaks.
func maskAuth(auth string) string {
	if auth == "" {
		return ""
	}
	parts := strings.Split(auth, ":")
	switch len(parts) {
	case 1:
		return parts[0]
	case 2, 4:
		for i := 1; i < len(parts); i += 2 {
			if parts[i] != "" {
				parts[i] = Mask
			}
		}
		return strings.Join(parts, ":")
	default:
		return parts[0] + ":" + Mask
	}
}

// maskRootPath masks the credentials of a root-path in the dracut
// extension. Everything between the scheme and the last '@' is treated as
// credentials: no valid server, port, LUN or target name contains '@', so a
// password containing '@' is still masked even though it will be rejected.
func maskRootPath(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return s
	}
	start := 0
	if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
		start = len(scheme)
	}
	if at < start {
		return s
	}
	return s[:start] + maskAuth(s[start:at]) + s[at:]
}

// maskURL masks the password of a libiscsi URL (user%password@ or
// user:password@) and the target_password argument. It errs on the side of
// masking: everything from the user name's separator to the last '@' of the
// whole string is hidden, wherever the parser would split.
func maskURL(s string) string {
	start := 0
	if len(s) >= len(urlScheme) && strings.EqualFold(s[:len(urlScheme)], urlScheme) {
		start = len(urlScheme)
	}
	if at := strings.LastIndexByte(s, '@'); at >= start {
		user := s[start:at]
		if i := strings.IndexAny(user, "%:"); i >= 0 {
			user = user[:i+1] + Mask
		}
		s = s[:start] + user + s[at:]
	}
	rest, query, hasQuery := strings.Cut(s, "?")
	if !hasQuery {
		return rest
	}
	// Once a password argument starts, everything after it is masked: a
	// password containing '&' must not leak its tail.
	args := strings.Split(query, "&")
	for i, a := range args {
		k, _, ok := strings.Cut(a, "=")
		if ok && strings.Contains(strings.ToLower(k), "password") {
			args[i] = k + "=" + Mask
			args = args[:i+1]
			break
		}
	}
	return rest + "?" + strings.Join(args, "&")
}
