package rootpath

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest iSCSI name RFC 7143 §4.2.7.1 allows, in bytes.
const MaxNameLen = 223

// NormalizeName validates an iSCSI name (a target or an initiator name) and
// returns its normalised form. The accepted formats are those of RFC 7143
// §4.2.7.3–4.2.7.5:
//
//	iqn.<yyyy-mm>.<reversed domain name>[:<any string>]
//	eui.<16 hex digits>
//	naa.<16 or 32 hex digits>
//
// Names are at most 223 bytes of the characters a–z, 0–9, '-', '.' and ':'.
// Upper-case ASCII is folded to lower case, which is what the RFC 3722
// stringprep profile does to ASCII; callers that must report the change
// compare the result with their input. Target names are validated with it
// but kept as written (RootPath.Target): targets compare them unfolded. Non-ASCII names (which RFC 3722
// allows) are rejected: no boot ROM or target in use produces them, and
// accepting them would need the full stringprep tables.
func NormalizeName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty; an iSCSI name looks like iqn.2001-04.com.example:disk1")
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%d bytes long; iSCSI names are at most %d bytes (RFC 7143 §4.2.7.1)", len(name), MaxNameLen)
	}
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == ':':
		case c >= 0x80:
			return "", fmt.Errorf("character %q at offset %d is not ASCII; lunboot accepts only ASCII iSCSI names (a-z, 0-9, '-', '.', ':')", charAt(name, i), i)
		default:
			return "", fmt.Errorf("character %q at offset %d is not allowed in an iSCSI name (RFC 7143 §4.2.7.2: a-z, 0-9, '-', '.', ':')", rune(c), i)
		}
	}
	n := string(b)
	switch {
	case strings.HasPrefix(n, "iqn."):
		if err := checkIQN(n[len("iqn."):]); err != nil {
			return "", err
		}
	case strings.HasPrefix(n, "eui."):
		if h := n[len("eui."):]; len(h) != 16 || !isHex(h) {
			return "", errors.New(`"eui." must be followed by exactly 16 hex digits (an EUI-64), as in eui.02004567a425678d`)
		}
	case strings.HasPrefix(n, "naa."):
		if h := n[len("naa."):]; (len(h) != 16 && len(h) != 32) || !isHex(h) {
			return "", errors.New(`"naa." must be followed by 16 or 32 hex digits (an NAA identifier), as in naa.52004567ba64678d`)
		}
	default:
		return "", errors.New(`an iSCSI name starts with "iqn.", "eui." or "naa.", as in iqn.2001-04.com.example:disk1`)
	}
	return n, nil
}

// checkIQN validates what follows "iqn.": a date, a reversed domain name
// and an optional ':'-introduced unique part (RFC 7143 §4.2.7.3).
func checkIQN(s string) error {
	const example = "as in iqn.2001-04.com.example:disk1"
	if len(s) < 8 || !isDigits(s[0:4]) || s[4] != '-' || !isDigits(s[5:7]) || s[7] != '.' {
		return fmt.Errorf(`"iqn." must be followed by the date yyyy-mm the naming authority owned its domain, a '.' and the reversed domain name, %s`, example)
	}
	if m := (s[5]-'0')*10 + (s[6] - '0'); m < 1 || m > 12 {
		return fmt.Errorf("month %q in the iqn date is not 01-12, %s", s[5:7], example)
	}
	auth, _, _ := strings.Cut(s[8:], ":")
	if auth == "" {
		return fmt.Errorf("the iqn has no naming authority (reversed domain name) after the date, %s", example)
	}
	for label := range strings.SplitSeq(auth, ".") {
		if label == "" {
			return fmt.Errorf("naming authority %q (the reversed domain name) has an empty label", auth)
		}
	}
	return nil
}

// CheckHostname reports whether s is a valid DNS host name (RFC 1123 §2.1, RFC 3696 §2): dot
// separated labels of letters, digits and '-', no label starting or ending
// with '-', at most 63 bytes a label and 253 in all, an optional trailing
// dot, and a last label that is not all digits (so "10.0.0.256" is reported
// as a bad address rather than looked up as a name).
func CheckHostname(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return errors.New("empty host name")
	}
	if len(name) > 253 {
		return fmt.Errorf("host name is %d bytes long; DNS allows 253", len(name))
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return errors.New("host name has an empty label (\"..\")")
		}
		if len(l) > 63 {
			return fmt.Errorf("host name label %q is longer than 63 bytes", echo(l))
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host name label %q starts or ends with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q is not allowed in a host name (letters, digits, '-' and '.')", charAt(l, i))
			}
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return errors.New("not a valid IPv4 address, and not a host name (its last label is numeric)")
	}
	return nil
}

// CheckIfname reports whether s can be a Linux network interface name: 1 to
// 15 bytes (IFNAMSIZ-1), not "." or "..", and none of '/', ':', white space
// or control characters (the kernel's dev_valid_name in net/core/dev.c).
// '%', '[', ']' and '@' are refused as well because they delimit fields in
// the strings this package parses.
func CheckIfname(s string) error {
	if s == "" {
		return errors.New("empty interface name")
	}
	if len(s) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 bytes", echo(s))
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not an interface name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("/:%[]@\"", c) >= 0 {
			return fmt.Errorf("character %q is not allowed in an interface name", charAt(s, i))
		}
	}
	return nil
}

// charAt returns the character at byte offset i of s, for a message: the
// whole UTF-8 sequence, so that %q shows "ä" rather than its first byte
// "\xc3" (and escapes only what cannot be seen: "\u200b", "\x01"); a byte
// that starts no valid sequence on its own.
func charAt(s string, i int) string {
	_, n := utf8.DecodeRuneInString(s[i:])
	return s[i : i+n]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if hexVal(s[i]) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
