package rootpath

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/sam"
)

const formURL = "iSCSI URL"

// ParseURL parses the iSCSI URL form libiscsi and QEMU use:
//
//	iscsi://[<user>[%<password>]@]<host>[:<port>]/<target>/<lun>[?<args>]
//
// host is an IPv4 literal, a bracketed IPv6 literal or a host name. The
// LUN is the decimal number Linux uses (converted with sam.LUNFromLinux),
// not RFC 4173 hex. As in libiscsi the user name ends at the first '%' (or
// ':') and the password runs to the '@'; since no host or target name
// contains '@', the last '@' ends the password, which may therefore contain
// '@', but not '?' (and arguments cannot contain '@'). Percent escapes are decoded in the target name only, as
// libiscsi does. The arguments target_user= and target_password= give the
// mutual-CHAP credentials; any other argument is an error (set digests with
// lunboot's own options).
func ParseURL(s string) (RootPath, error) {
	return parseURL(s, false)
}

// errNoHost says what an iSCSI URL without a host lacks.
var errNoHost = errors.New("missing: an iSCSI URL names the target portal's host after \"iscsi://\", as in iscsi://192.0.2.1/iqn.2001-04.com.example:disk/0")

// parseURL is ParseURL; with portalOnly the /<target>/<lun> part may be
// left out (ParsePortal).
func parseURL(s string, portalOnly bool) (RootPath, error) {
	s = trimInput(s)
	masked := echo(maskURL(s))
	fail := func(field, value string, err error) (RootPath, error) {
		return RootPath{}, &Error{Form: formURL, Input: masked, Field: field, Value: echo(value), Err: err}
	}
	const form = "iscsi://[user[%password]@]host[:port]/<target>/<lun>"
	if len(s) > MaxLen {
		return fail(FieldSyntax, "", fmt.Errorf("%d bytes long; an iSCSI URL is at most %d", len(s), MaxLen))
	}
	if len(s) < len(urlScheme) || !strings.EqualFold(s[:len(urlScheme)], urlScheme) {
		v, _, _ := strings.Cut(s, "/")
		return fail(FieldScheme, v, errors.New("an iSCSI URL starts with \"iscsi://\": "+form))
	}
	var r RootPath
	r.input = masked
	rest, query, hasQuery := strings.Cut(s[len(urlScheme):], "?")
	if strings.IndexByte(query, '@') >= 0 {
		// Either a password containing '?' or an argument containing
		// '@'; refuse both rather than echo a piece of a password.
		return fail(FieldCredentials, "", errors.New("'@' after '?': passwords cannot contain '?', and URL arguments cannot contain '@'"))
	}

	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		auth := rest[:at]
		rest = rest[at+1:]
		sep := strings.IndexByte(auth, '%')
		if sep < 0 {
			sep = strings.IndexByte(auth, ':')
		}
		if sep < 0 || auth[:sep] == "" || auth[sep+1:] == "" {
			mv := auth
			if sep >= 0 {
				mv = auth[:sep+1] + maskIfSet(auth[sep+1:])
			}
			return fail(FieldCredentials, mv, errors.New("the form is user%password@ (both non-empty)"))
		}
		r.Username, r.Password = auth[:sep], auth[sep+1:]
	}

	hostport, path, ok := strings.Cut(rest, "/")
	if field, value, err := r.setHostPort(hostport, "iscsi://[2001:db8::1]:3260/..."); err != nil {
		return fail(field, value, err)
	}
	if portalOnly && path == "" {
		return r, nil
	}
	if !ok {
		return fail(FieldSyntax, "", errors.New("no /<target>/<lun> after the host: "+form))
	}

	target, lun, ok := strings.Cut(path, "/")
	if !ok {
		return fail(FieldLUN, "", errors.New("missing: the URL ends /<target>/<lun>, with the LUN in decimal"))
	}
	dec, err := percentDecode(target)
	if err != nil {
		return fail(FieldTarget, target, err)
	}
	if err := r.setTarget(dec); err != nil {
		return fail(FieldTarget, dec, err)
	}
	if !isDigits(lun) || len(lun) > 20 {
		return fail(FieldLUN, lun, errors.New("an iSCSI URL gives the LUN as a decimal number (the Linux LUN), as in /0 or /26"))
	}
	n, err := strconv.ParseUint(lun, 10, 64)
	if err != nil {
		return fail(FieldLUN, lun, errors.New("larger than a 64-bit LUN"))
	}
	r.LUN = sam.LUNFromLinux(n)

	if hasQuery {
		for arg := range strings.SplitSeq(query, "&") {
			k, v, _ := strings.Cut(arg, "=")
			switch k {
			case "target_user":
				r.ReverseUsername = v
			case "target_password":
				r.ReversePassword = v
			default:
				return fail(FieldQuery, k, errors.New("not supported; the only arguments are target_user= and target_password= (mutual CHAP)"))
			}
		}
		if (r.ReverseUsername == "") != (r.ReversePassword == "") {
			return fail(FieldCredentials, "", errors.New("target_user= and target_password= go together"))
		}
		if r.ReverseUsername != "" && r.Username == "" {
			return fail(FieldCredentials, "", errors.New("mutual CHAP (target_user=) also needs the initiator's user%password@"))
		}
	}
	return r, nil
}

// setHostPort validates and stores host[:port] of a URL or a portal:
// an IPv4 literal or host name, or a bracketed IPv6 literal, each with an
// optional port. On failure it returns the field and value to report.
// example shows a bracketed IPv6 portal in the form being parsed.
func (r *RootPath) setHostPort(hostport, example string) (field, value string, err error) {
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return FieldServer, hostport, errors.New("'[' without a closing ']'")
		}
		host = hostport[1:end]
		switch tail := hostport[end+1:]; {
		case tail == "":
		case tail[0] == ':':
			port = tail[1:]
			if port == "" {
				return FieldPort, port, errors.New("empty port after ':'")
			}
		default:
			return FieldServer, hostport, errors.New("']' must be followed by ':<port>' or '/'")
		}
		if err := r.setBracketed(host); err != nil {
			return FieldServer, host, err
		}
	} else {
		if i := strings.IndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if strings.IndexByte(port, ':') >= 0 {
				return FieldServer, hostport, errors.New("an IPv6 address must be written in brackets: " + example)
			}
			if port == "" {
				return FieldPort, port, errors.New("empty port after ':'")
			}
		}
		if host == "" {
			return FieldServer, "", errNoHost
		}
		if err := r.setServer(host); err != nil {
			return FieldServer, host, err
		}
	}
	if r.Port, err = parsePort(port); err != nil {
		return FieldPort, port, err
	}
	return "", "", nil
}

// ParsePortal parses a target portal as `lunboot discover` takes it:
//
//	<host>[:<port>] or [<IPv6>][:<port>]                   (port 3260 if left out)
//	iscsi://[<user>[%<password>]@]<host>[:<port>][/]        (an iSCSI URL without
//	                                                         target, as libiscsi's iscsi-ls takes it)
//	any target ParseTarget accepts                          (its portal is used)
//
// The result has the server, port and any CHAP credentials; Target and LUN
// are set only when the input names them. A bare unbracketed IPv6 literal
// (no port) is accepted in the first form, as nothing else can be meant.
func ParsePortal(s string) (RootPath, error) {
	t := strings.TrimLeft(trimInput(s), " \t")
	if len(t) >= len(urlScheme) && strings.EqualFold(t[:len(urlScheme)], urlScheme) {
		return parseURL(t, true)
	}
	if len(t) >= len(scheme) && strings.EqualFold(t[:len(scheme)], scheme) && !isDigits(t[len(scheme):]) {
		// A root-path; "iscsi:3260" is the host named iscsi.
		return ParseCmdline(t)
	}
	var r RootPath
	r.input = echo(t)
	if at := strings.LastIndexByte(t, '@'); at >= 0 {
		r.input = echo(maskURL(urlScheme + t)[len(urlScheme):])
		return RootPath{}, &Error{Form: formPortal, Input: r.input, Field: FieldCredentials,
			Err: errors.New("a portal carries no credentials: write the URL form iscsi://<user>%<password>@<host>[:<port>]")}
	}
	if a, err := netip.ParseAddr(t); err == nil && a.Is6() && a.Zone() == "" {
		r.Server, r.Addr, r.Port = a.String(), a, DefaultPort
		return r, nil
	}
	if len(t) > MaxLen {
		return RootPath{}, &Error{Form: formPortal, Input: r.input, Err: fmt.Errorf("%d bytes long; a portal is at most %d", len(t), MaxLen)}
	}
	if field, value, err := r.setHostPort(t, "[2001:db8::1]:3260"); err != nil {
		if errors.Is(err, errNoHost) {
			err = errors.New("missing: a portal is <host>, <host>:<port> or [<IPv6>]:<port>")
		}
		return RootPath{}, &Error{Form: formPortal, Input: r.input, Field: field, Value: echo(value), Err: err}
	}
	return r, nil
}

const formPortal = "portal"

// ParseTarget parses a target as a user names it to lunboot (the
// lunboot.target= option, host commands): an iscsi:// URL goes to ParseURL,
// anything else to ParseCmdline.
func ParseTarget(s string) (RootPath, error) {
	t := strings.TrimLeft(s, " \t")
	if len(t) >= len(urlScheme) && strings.EqualFold(t[:len(urlScheme)], urlScheme) {
		return ParseURL(t)
	}
	return ParseCmdline(t)
}

// percentDecode decodes %XX escapes (RFC 3986 §2.1).
func percentDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || hexVal(s[i+1]) < 0 || hexVal(s[i+2]) < 0 {
			return "", errors.New("'%' must be followed by two hex digits")
		}
		b.WriteByte(byte(hexVal(s[i+1])<<4 | hexVal(s[i+2])))
		i += 2
	}
	return b.String(), nil
}
