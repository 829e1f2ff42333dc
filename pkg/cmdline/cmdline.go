// Package cmdline splits a Linux kernel command line into parameters the
// way the kernel does, and writes parameters back so that the kernel reads
// them the same way.
//
// Every reader of the command line in lunboot goes through [Split] or
// [Kernel]: the module loader (which must pass the kernel's module
// parameters on to init_module), the configuration stage, the hand-off
// (which edits the OS's command line) and the probe that runs in the booted
// OS. One splitter means they cannot read the same /proc/cmdline
// differently.
//
// The rules are those of next_arg in the kernel's lib/cmdline.c, as
// parse_args in kernel/params.c applies it to the boot command line (and to
// a module's parameter string in init_module):
//
//   - Parameters are separated by white space: the bytes the kernel's
//     isspace() accepts (lib/ctype.c), which are '\t', '\n', '\v', '\f',
//     '\r', ' ' and 0xA0. 0xA0 is Latin-1's no-break space, and it is also
//     the second byte of some UTF-8 letters ("à" is C3 A0): the kernel
//     splits an unquoted value there, and so does Split.
//   - A double quote turns the grouping of white space on or off, wherever
//     it is in the parameter; quotes cannot be escaped. An unterminated
//     quote runs to the end of the line.
//   - The parameter's name ends at its first '=' that is not its first
//     byte; without such an '=' the parameter has no value ("=x" is a name).
//   - A value that starts with a quote loses that quote; a parameter that
//     starts with a quote loses it from its name. In either case the
//     parameter's last byte is removed too if it is a quote (once, even when
//     both apply). Other quotes stay: a="x"y" has the value x"y.
//   - The first "--" without a value ends the kernel's parameters
//     (parse_args stops there); the words after it are the arguments of
//     init (init/main.c). [Kernel] returns only what comes before it.
//   - The command line, a C string to the kernel, ends at its first NUL.
package cmdline

import "strings"

// Param is one parameter of a kernel command line.
type Param struct {
	// Key is the parameter's name, what next_arg returns as param.
	Key string
	// Value is what follows the '=', with next_arg's quote removal; it is
	// meaningful only when HasValue is set. HasValue is false for a bare
	// word such as "quiet" (next_arg's val is NULL), true for "x=".
	Value    string
	HasValue bool
	// Raw is the parameter as it was written, quotes included, when it
	// came from Split; [Join] writes it back unchanged. A Param built in
	// code leaves it empty and Join writes [Param.Format]'s text.
	Raw string
}

// IsEnd reports whether p is the "--" that ends the kernel's parameters:
// parse_args stops at a parameter named "--" that has no value, however it
// was quoted ("--" and `"--"` end them, "--=x" does not).
func (p Param) IsEnd() bool { return p.Key == "--" && !p.HasValue }

// Split returns every parameter of the command line s in order, the "--"
// that ends the kernel's parameters and the words after it included, each
// with its Raw text. It never fails: any string splits into something, as
// it does for the kernel.
func Split(s string) []Param {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	var ps []Param
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return ps
		}
		n := paramLen(s[i:])
		ps = append(ps, parse(s[i:i+n]))
		i += n
	}
}

// Kernel returns the parameters the kernel itself parses: those of Split
// before the first "--" (see [Param.IsEnd]). The words after it are
// init's arguments, not kernel or module parameters.
func Kernel(s string) []Param {
	ps := Split(s)
	for i, p := range ps {
		if p.IsEnd() {
			return ps[:i:i]
		}
	}
	return ps
}

// isSpace is the kernel's isspace(): the bytes lib/ctype.c marks _S.
func isSpace(c byte) bool {
	switch c {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xa0:
		return true
	}
	return false
}

// paramLen returns the length of the parameter that starts s (at a byte
// that is not white space): up to the first white space outside quotes.
func paramLen(s string) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case !quoted && isSpace(s[i]):
			return i
		}
	}
	return len(s)
}

// parse interprets one parameter as next_arg does.
func parse(raw string) Param {
	p := Param{Raw: raw}
	body, quoted := strings.CutPrefix(raw, `"`)
	// A closing quote is removed only when it is the parameter's last
	// byte, and never the opening quote itself (raw == `"`).
	last := body != "" && body[len(body)-1] == '"'
	eq := -1
	if len(body) > 1 {
		// next_arg records the first '=' at an index above 0: one in
		// first place leaves its "equals" at 0, which means none.
		if j := strings.IndexByte(body[1:], '='); j >= 0 {
			eq = j + 1
		}
	}
	if eq < 0 {
		p.Key = body
		if quoted && last {
			p.Key = body[:len(body)-1]
		}
		return p
	}
	p.Key, p.Value, p.HasValue = body[:eq], body[eq+1:], true
	v, valueQuoted := strings.CutPrefix(p.Value, `"`)
	if valueQuoted {
		p.Value = v
	}
	// The value is not empty here when last is set, except for a value
	// that is just the opening quote, which is gone already.
	if last && (valueQuoted || quoted) && p.Value != "" {
		p.Value = p.Value[:len(p.Value)-1]
	}
	return p
}
