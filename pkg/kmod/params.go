package kmod

import (
	"strings"
)

// maxCmdline bounds the command line ParamsFromCmdline looks at; the x86
// kernel's COMMAND_LINE_SIZE is 2048, other architectures allow up to 4096.
const maxCmdline = 1 << 16

// ParamsFromCmdline collects module parameters from a kernel command line:
// every "<module>.<param>[=<value>]" word becomes "<param>[=<value>]" in the
// string for <module>, in command-line order, ready for init_module. The
// kernel applies such words itself only to built-in code; for a loadable
// module, modprobe(8) reads them from /proc/cmdline, and so must we.
//
// Words split on spaces outside double quotes and lose their quotes as the
// kernel's next_arg (lib/cmdline.c) does; a value with spaces is quoted
// again for init_module, which splits its string the same way. Module names
// fold '-' to '_'. Words after "--" belong to init and are ignored.
func ParamsFromCmdline(cmdline string) map[string]string {
	if len(cmdline) > maxCmdline {
		cmdline = cmdline[:maxCmdline]
	}
	params := map[string]string{}
	for _, word := range splitCmdline(cmdline) {
		if word == "--" {
			break
		}
		// next_arg: a word may be quoted as a whole, or only its value.
		if w, ok := strings.CutPrefix(word, `"`); ok {
			word = strings.TrimSuffix(w, `"`)
		}
		key, value, hasValue := strings.Cut(word, "=")
		if v, ok := strings.CutPrefix(value, `"`); ok {
			value = strings.TrimSuffix(v, `"`)
		}
		mod, param, ok := strings.Cut(key, ".")
		mod = strings.ReplaceAll(mod, "-", "_")
		if !ok || !validName(mod) || param == "" || strings.ContainsAny(param, "\" \t") || strings.Contains(value, `"`) {
			continue
		}
		p := param
		if hasValue {
			if strings.ContainsAny(value, " \t") {
				// init_module splits its string with next_arg too.
				value = `"` + value + `"`
			}
			p += "=" + value
		}
		if old := params[mod]; old != "" {
			p = old + " " + p
		}
		params[mod] = p
	}
	return params
}

// splitCmdline splits on spaces and tabs outside double quotes.
func splitCmdline(s string) []string {
	var words []string
	start, quoted := -1, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			if start < 0 {
				start = i
			}
		case (c == ' ' || c == '\t' || c == '\n') && !quoted:
			if start >= 0 {
				words = append(words, s[start:i])
				start = -1
			}
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}
