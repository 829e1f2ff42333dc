package cmdline

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnwritable is wrapped by the errors of [Param.Format]: no text splits
// back into the parameter, because next_arg has no escape for a quote.
var ErrUnwritable = errors.New("cannot be written on a kernel command line")

// Format returns the text of p that [Split] reads back as one parameter
// with p's Key, Value and HasValue (Raw is ignored): key, key=value, or
// key="value" when the value has white space or starts with a quote. A
// value's own quotes are kept when they leave no white space outside
// quotes (a"b c" is written as it is).
//
// It fails, wrapping ErrUnwritable, for an empty key, a key with white
// space, a quote, a NUL or an '=' after its first byte, and a value with a
// NUL or quotes no quoting can carry (x"y). The error names the key, never
// the value, which may be a secret.
func (p Param) Format() (string, error) {
	if err := checkKey(p.Key); err != nil {
		return "", fmt.Errorf("cmdline: parameter %q %w: %s", p.Key, ErrUnwritable, err)
	}
	if !p.HasValue {
		return p.Key, nil
	}
	v, err := formatValue(p.Value)
	if err != nil {
		return "", fmt.Errorf("cmdline: the value of %q %w: %s", p.Key, ErrUnwritable, err)
	}
	return p.Key + "=" + v, nil
}

// String returns Raw when the parameter has it, else Format's text. A
// parameter Format refuses comes out as key=value, for messages only: it
// does not split back.
func (p Param) String() string {
	if p.Raw != "" {
		return p.Raw
	}
	if s, err := p.Format(); err == nil {
		return s
	}
	if !p.HasValue {
		return p.Key
	}
	return p.Key + "=" + p.Value
}

// Join writes the parameters separated by single spaces, each as its
// String. Split(Join(ps)) returns ps again when each parameter came from
// Split or Format accepts it.
func Join(ps []Param) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("the name is empty")
	case strings.ContainsAny(k, "\"\x00"):
		return errors.New("the name has a quote or a NUL")
	case strings.IndexByte(k[1:], '=') >= 0:
		// next_arg would end the name there.
		return errors.New("the name has an '=' after its first byte")
	}
	for i := 0; i < len(k); i++ {
		if isSpace(k[i]) {
			return errors.New("the name has white space")
		}
	}
	return nil
}

// formatValue writes v so that next_arg returns it as the value.
func formatValue(v string) (string, error) {
	if strings.IndexByte(v, 0) >= 0 {
		return "", errors.New("it has a NUL")
	}
	// As written, v must not start with a quote (next_arg would remove
	// it), and its quotes must leave no white space outside them and be
	// closed at its end, so that the next white space ends the parameter.
	bare := !strings.HasPrefix(v, `"`) && groups(v, false)
	// In quotes, the opening quote is removed, and so is the closing one
	// as the parameter's last byte; v's own quotes must again leave no
	// white space outside them and leave the closing quote closing.
	quoted := groups(v, true)
	switch {
	case bare && !hasSpace(v):
		return v, nil
	case quoted:
		return `"` + v + `"`, nil
	case bare:
		return v, nil
	}
	return "", errors.New("however it is quoted, its quotes would not close or would leave white space outside them")
}

// groups reports whether v, scanned from the given quote state, has white
// space only inside quotes and ends in the state it started in.
func groups(v string, in bool) bool {
	start := in
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '"':
			in = !in
		case !in && isSpace(v[i]):
			return false
		}
	}
	return in == start
}

func hasSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			return true
		}
	}
	return false
}
