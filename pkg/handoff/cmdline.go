package handoff

import (
	"strings"
)

// Arg is one kernel command-line argument.
type Arg struct {
	// Key is the parameter name: the text before the first '=' with the
	// kernel's quote handling applied ("foo" for foo="a b" and "foo=a b").
	Key string
	// Value is what follows the '=', with one pair of surrounding double
	// quotes removed as the kernel does; HasValue is false for a bare flag.
	Value    string
	HasValue bool
	// Raw is the argument exactly as it appeared, quotes included; it is
	// what Cmdline writes back for arguments it keeps.
	Raw string
}

// ParseCmdline splits a kernel command line into arguments the way the
// kernel's next_arg (lib/cmdline.c) does: arguments are separated by
// unquoted white space, a double quote toggles quoting (so
// foo="a b" and "foo=a b" are one argument each), and an unterminated quote
// runs to the end. A "--" argument (everything after it goes to init) is
// kept as an argument with Key "--". It never fails.
func ParseCmdline(s string) []Arg {
	var args []Arg
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return args
		}
		start := i
		inQuote := false
		for i < len(s) && (inQuote || !isSpace(s[i])) {
			if s[i] == '"' {
				inQuote = !inQuote
			}
			i++
		}
		args = append(args, splitArg(s[start:i]))
	}
}

// splitArg interprets one raw argument as lib/cmdline.c next_arg does.
func splitArg(raw string) Arg {
	a := Arg{Raw: raw}
	s := raw
	quoted := strings.HasPrefix(s, `"`)
	if quoted {
		s = s[1:]
	}
	eq := -1
	for j := 0; j < len(s); j++ {
		if s[j] == '=' && eq < 0 && j > 0 {
			// An '=' in first place does not count (next_arg's
			// "equals == 0" test).
			eq = j
		}
	}
	if eq < 0 {
		a.Key = strings.TrimSuffix(s, `"`)
		if !quoted {
			a.Key = s
		}
		return a
	}
	a.Key = s[:eq]
	v := s[eq+1:]
	a.HasValue = true
	if strings.HasPrefix(v, `"`) {
		v = v[1:]
		v = strings.TrimSuffix(v, `"`)
	} else if quoted {
		v = strings.TrimSuffix(v, `"`)
	}
	a.Value = v
	return a
}

// isSpace is the kernel's isspace() for the ASCII range.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// JoinCmdline writes arguments back with single spaces, each as its Raw
// text (or key=value when Raw is empty).
func JoinCmdline(args []Arg) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case a.Raw != "":
			parts = append(parts, a.Raw)
		case a.HasValue:
			parts = append(parts, a.Key+"="+a.Value)
		default:
			parts = append(parts, a.Key)
		}
	}
	return strings.Join(parts, " ")
}

// Get returns the value of the last argument named key (the kernel and the
// initrd scripts let the last one win) and whether there was one.
func Get(args []Arg, key string) (string, bool) {
	v, ok := "", false
	for _, a := range args {
		if a.Key == key {
			v, ok = a.Value, true
		}
	}
	return v, ok
}

// MaskCmdline returns the command line with CHAP secrets replaced by "***"
// (the *password= parameters of both dialects and the credentials part of
// an iscsi: root-path), for logs and the console.
func MaskCmdline(s string) string {
	args := ParseCmdline(s)
	for i, a := range args {
		switch {
		case a.HasValue && strings.Contains(a.Key, "password"):
			args[i] = Arg{Key: a.Key, Value: "***", HasValue: true}
		case a.HasValue && (a.Key == "netroot" || a.Key == "root") && strings.HasPrefix(a.Value, "iscsi:") && strings.Contains(a.Value, "@"):
			// iscsi:user:pass[:ruser:rpass]@server:… (dracut, Debian)
			creds, rest, _ := strings.Cut(strings.TrimPrefix(a.Value, "iscsi:"), "@")
			f := strings.Split(creds, ":")
			for j := 1; j < len(f); j += 2 {
				f[j] = "***"
			}
			args[i] = Arg{Key: a.Key, Value: "iscsi:" + strings.Join(f, ":") + "@" + rest, HasValue: true}
		}
	}
	return JoinCmdline(args)
}
