package rootpath

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

const (
	scheme    = "iscsi:"
	urlScheme = "iscsi://"
	// MaxLen bounds the input of every parser. A DHCP option is at most 255
	// bytes (RFC 3396 concatenation aside) and a kernel command line a few
	// KiB; nothing valid comes close.
	MaxLen = 1024
	// formRootPath names the form in errors.
	formRootPath = "root-path"
)

// Parse parses an RFC 4173 root-path as DHCP delivers it (option 17, or
// option 43 sub-option 201):
//
//	iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>
//
// server is an IPv4 literal, a bracketed IPv6 literal with an optional
// %zone, or a host name; protocol is empty or 6 (TCP); port is empty (3260)
// or 1–65535; the LUN is hex (see ParseLUN); the target name is everything
// after the fourth ':' and must be a valid iSCSI name (see NormalizeName).
// Trailing NUL bytes and white space are ignored. Credentials are refused:
// RFC 4173 has no field for them.
func Parse(s string) (RootPath, error) {
	return parse(s, false)
}

// ParseCmdline parses a root-path written on a kernel command line, in the
// dracut dialect (netroot=iscsi:…, root=iscsi:…). On top of Parse it accepts
//
//	iscsi:[<user>:<pass>[:<ruser>:<rpass>]@]<server>:<proto>:<port>[:<iface>:<netdev>]:<LUN>:<target>
//
// As in dracut the credentials end at the first '@'; an empty credential
// part ("iscsi:@server…") is allowed. Passwords can contain neither ':' nor
// '@'. The iface/netdev pair is recognised when the target name (which must
// start with iqn., eui. or naa.) follows the sixth ':' instead of the
// fourth; that is unambiguous because a LUN never starts with those
// prefixes.
func ParseCmdline(s string) (RootPath, error) {
	return parse(s, true)
}

// trimInput removes what DHCP servers and boot loaders append to a string.
func trimInput(s string) string {
	return strings.TrimRight(s, "\x00 \t\r\n")
}

func parse(s string, cmdline bool) (RootPath, error) {
	s = trimInput(s)
	masked := echo(maskRootPath(s))
	fail := func(field, value string, err error) (RootPath, error) {
		return RootPath{}, &Error{Form: formRootPath, Input: masked, Field: field, Value: echo(value), Err: err}
	}
	if len(s) > MaxLen {
		return fail(FieldSyntax, "", fmt.Errorf("%d bytes long; a root-path is at most %d", len(s), MaxLen))
	}
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		v, _, _ := strings.Cut(s, ":")
		return fail(FieldScheme, v, errors.New(`a root-path starts with "iscsi:" (iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>)`))
	}
	var r RootPath
	r.input = masked
	if s[:len(scheme)] != scheme {
		r.Warnings = append(r.Warnings, fmt.Sprintf("scheme %q accepted as \"iscsi:\"; dracut only recognises lower case", s[:len(scheme)]))
	}
	rest := s[len(scheme):]
	if strings.HasPrefix(rest, "//") {
		return fail(FieldScheme, s[:len(urlScheme)], errors.New("this is an iSCSI URL (iscsi://host/target/lun); a root-path is iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>"))
	}

	if at := strings.IndexByte(rest, '@'); at >= 0 {
		if !cmdline {
			return fail(FieldCredentials, maskAuth(rest[:at]), errors.New("a DHCP root-path cannot carry CHAP credentials (RFC 4173 has no field for them); give them on the kernel command line (rd.iscsi.username=, rd.iscsi.password=)"))
		}
		if strings.IndexByte(rest[at+1:], '@') >= 0 {
			return fail(FieldCredentials, maskAuth(rest[:strings.LastIndexByte(rest, '@')]), errors.New("'@' appears more than once: the credentials end at the first '@' (as in dracut), so passwords cannot contain '@', and target names never do"))
		}
		if err := r.setAuth(rest[:at]); err != nil {
			return fail(FieldCredentials, maskAuth(rest[:at]), err)
		}
		rest = rest[at+1:]
	}

	// Server: a bracketed IPv6 literal, or the text up to the first ':'.
	var server, after string
	bracketed := strings.HasPrefix(rest, "[")
	if bracketed {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return fail(FieldServer, rest, errors.New("'[' without a closing ']'"))
		}
		server = rest[1:end]
		after = rest[end+1:]
		if !strings.HasPrefix(after, ":") {
			return fail(FieldServer, rest[:end+1], errors.New("']' must be followed by ':'"))
		}
		after = after[1:]
	} else {
		var ok bool
		server, after, ok = strings.Cut(rest, ":")
		if !ok {
			return fail(FieldSyntax, "", errTooShort)
		}
	}

	// The fields after the server: proto, port, [iface, netdev,] LUN, target.
	var proto, port, lun, target string
	fields := strings.SplitN(after, ":", 4)
	if len(fields) < 4 {
		if err := bareIPv6(bracketed, rest); err != nil {
			return fail(FieldServer, server, err)
		}
		return fail(FieldSyntax, "", errTooShort)
	}
	proto, port, lun, target = fields[0], fields[1], fields[2], fields[3]
	if cmdline && !hasNamePrefix(target) {
		// dracut's iface:netdev pair: the target follows two more fields.
		if f := strings.SplitN(after, ":", 6); len(f) == 6 && hasNamePrefix(f[5]) {
			if f[2] != "" {
				if err := CheckIfname(f[2]); err != nil {
					return fail(FieldIface, f[2], err)
				}
				r.Iface = f[2]
				r.Warnings = append(r.Warnings, fmt.Sprintf("open-iscsi iface %q ignored: lunboot is its own initiator", f[2]))
			}
			if f[3] != "" {
				if err := CheckIfname(f[3]); err != nil {
					return fail(FieldNetDev, f[3], err)
				}
				r.NetDev = f[3]
			}
			proto, port, lun, target = f[0], f[1], f[4], f[5]
		}
	}

	// Validate left to right so the first wrong field is the one reported;
	// but an unbracketed IPv6 literal derails every field after it, so
	// that diagnosis wins whenever it applies.
	var field, value string
	var err error
	switch {
	case bracketed:
		field, value, err = FieldServer, server, r.setBracketed(server)
	default:
		field, value, err = FieldServer, server, r.setServer(server)
	}
	if err == nil {
		field, value, err = FieldProtocol, proto, checkProtocol(proto)
	}
	if err == nil {
		field, value = FieldPort, port
		r.Port, err = parsePort(port)
	}
	if err == nil {
		field, value = FieldLUN, lun
		if hasNamePrefix(lun) {
			err = errors.New("this is a target name, so a ':' is missing before it; the form is iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>")
		} else {
			r.LUN, err = parseLUN(lun)
		}
	}
	if err == nil {
		field, value, err = FieldTarget, target, r.setTarget(target)
	}
	if err != nil {
		if v6 := bareIPv6(bracketed, rest); v6 != nil {
			return fail(FieldServer, server, v6)
		}
		return fail(field, value, err)
	}
	// A server of one to four hex digits may be the first group of an
	// unbracketed IPv6 literal. If reading it that way also gives a valid
	// root-path ("fe80::1::::iqn…" in the dracut form: host fe80 and port 1,
	// or [fe80::1] with defaults), refuse to guess.
	if !bracketed && len(server) <= 4 && isHex(server) {
		for _, cand := range ipv6Prefixes(rest) {
			if _, err := parse(scheme+"["+cand+"]"+rest[len(cand):], cmdline); err == nil {
				return fail(FieldServer, server, fmt.Errorf("ambiguous: an IPv6 address must be written in brackets (iscsi:[%s]:...); if %q is a host name, write it with a trailing dot (%s.)", cand, server, server))
			}
		}
	}
	return r, nil
}

var errTooShort = errors.New("too few ':'-separated fields; the form is iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>, with empty fields for defaults (iscsi:192.0.2.1::::iqn.2001-04.com.example:disk)")

// setAuth stores dracut's "user:pass[:ruser:rpass]" credentials.
func (r *RootPath) setAuth(auth string) error {
	if auth == "" {
		return nil // dracut's documented escape: "iscsi:@server..."
	}
	parts := strings.Split(auth, ":")
	switch len(parts) {
	case 2, 4:
	case 1:
		return errors.New("a CHAP user name needs a password: user:password@")
	default:
		return fmt.Errorf("%d ':'-separated parts; the form is user:password@ or user:password:target-user:target-password@ (passwords cannot contain ':')", len(parts))
	}
	for i, p := range parts {
		if p == "" {
			what := [...]string{"user name", "password", "target user name", "target password"}[i]
			return fmt.Errorf("empty CHAP %s", what)
		}
	}
	r.Username, r.Password = parts[0], parts[1]
	if len(parts) == 4 {
		r.ReverseUsername, r.ReversePassword = parts[2], parts[3]
	}
	return nil
}

func checkProtocol(p string) error {
	if p == "" || p == "6" {
		return nil
	}
	return errors.New("only 6 (TCP) is an iSCSI transport; leave the field empty")
}

func parsePort(p string) (uint16, error) {
	if p == "" {
		return DefaultPort, nil
	}
	if !isDigits(p) || len(p) > 5 {
		return 0, errors.New("not a decimal port number from 1 to 65535")
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("not a decimal port number from 1 to 65535")
	}
	return uint16(n), nil
}

// hasNamePrefix reports whether s starts like an iSCSI name.
func hasNamePrefix(s string) bool {
	if len(s) < 4 {
		return false
	}
	p := strings.ToLower(s[:4])
	return p == "iqn." || p == "eui." || p == "naa."
}

// bareIPv6 diagnoses an IPv6 literal written without brackets: if some
// prefix of rest ending before a ':' parses as an IPv6 address, the user
// almost certainly meant it as the server. It is only consulted once the
// normal parse has failed, because "abc::..." is both a valid host-name
// root-path and the prefix of an IPv6 address.
func bareIPv6(bracketed bool, rest string) error {
	if bracketed {
		return nil
	}
	cands := ipv6Prefixes(rest)
	if len(cands) == 0 {
		return nil
	}
	return fmt.Errorf("an IPv6 address must be written in brackets: iscsi:[%s]:...", cands[len(cands)-1])
}

// ipv6Prefixes returns the prefixes of rest that end just before a ':' (or
// at the end) and parse as IPv6 addresses, shortest first.
func ipv6Prefixes(rest string) []string {
	var out []string
	for i := 0; i <= len(rest); i++ {
		if i < len(rest) && rest[i] != ':' {
			continue
		}
		cand := rest[:i]
		if strings.Count(cand, ":") < 2 {
			continue
		}
		if a, err := netip.ParseAddr(cand); err == nil && a.Is6() {
			out = append(out, cand)
		}
	}
	return out
}
