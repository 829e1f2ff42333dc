package kmod

import (
	"strings"

	"github.com/lunboot/lunboot/pkg/cmdline"
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
// The line is split as the kernel splits it (pkg/cmdline), so a module gets
// the value a built-in one would; the value is written again for
// init_module, which splits its string the same way, quoted where it must
// be. A parameter whose value no quoting can carry (x"y) is left out.
// Module names fold '-' to '_'. Words after "--" belong to init and are
// ignored.
func ParamsFromCmdline(line string) map[string]string {
	if len(line) > maxCmdline {
		line = line[:maxCmdline]
	}
	params := map[string]string{}
	for _, w := range cmdline.Kernel(line) {
		mod, param, ok := strings.Cut(w.Key, ".")
		mod = strings.ReplaceAll(mod, "-", "_")
		if !ok || !validName(mod) || param == "" {
			continue
		}
		p, err := cmdline.Param{Key: param, Value: w.Value, HasValue: w.HasValue}.Format()
		if err != nil {
			continue
		}
		if old := params[mod]; old != "" {
			p = old + " " + p
		}
		params[mod] = p
	}
	return params
}
