package rootpath

import (
	"errors"
	"fmt"
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
	if !ok {
		return fail(FieldSyntax, "", errors.New("no /<target>/<lun> after the host: "+form))
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return fail(FieldServer, hostport, errors.New("'[' without a closing ']'"))
		}
		host = hostport[1:end]
		switch tail := hostport[end+1:]; {
		case tail == "":
		case tail[0] == ':':
			port = tail[1:]
			if port == "" {
				return fail(FieldPort, port, errors.New("empty port after ':'"))
			}
		default:
			return fail(FieldServer, hostport, errors.New("']' must be followed by ':<port>' or '/'"))
		}
		if err := r.setBracketed(host); err != nil {
			return fail(FieldServer, host, err)
		}
	} else {
		if i := strings.IndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if port == "" {
				return fail(FieldPort, port, errors.New("empty port after ':'"))
			}
			if strings.IndexByte(port, ':') >= 0 {
				return fail(FieldServer, hostport, errors.New("an IPv6 address must be written in brackets: iscsi://[2001:db8::1]:3260/..."))
			}
		}
		if err := r.setServer(host); err != nil {
			return fail(FieldServer, host, err)
		}
	}
	var err error
	if r.Port, err = parsePort(port); err != nil {
		return fail(FieldPort, port, err)
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
