package handoff

import (
	"strings"

	"github.com/lunboot/lunboot/pkg/cmdline"
)

// Arg is one kernel command-line argument: Key, Value and HasValue as the
// kernel reads them, Raw as written (what Cmdline writes back for the
// arguments it keeps).
type Arg = cmdline.Param

// ParseCmdline splits a kernel command line into arguments the way the
// kernel does (pkg/cmdline, after lib/cmdline.c next_arg). A "--" (everything
// after it goes to init) is kept as an argument; Arg.IsEnd reports it. It
// never fails.
func ParseCmdline(s string) []Arg { return cmdline.Split(s) }

// JoinCmdline writes arguments back with single spaces, each as its Raw
// text or, when Raw is empty, as key=value quoted where the kernel needs it
// (cmdline.Param.Format).
func JoinCmdline(args []Arg) string { return cmdline.Join(args) }

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
// (the *password= parameters of both dialects, rd.iscsi.param= node
// parameters that set a password, and the credentials part of an iscsi:
// root-path), for logs and the console.
func MaskCmdline(s string) string {
	args := ParseCmdline(s)
	for i, a := range args {
		switch {
		case a.HasValue && strings.Contains(a.Key, "password"):
			args[i] = Arg{Key: a.Key, Value: "***", HasValue: true}
		case a.Key == "rd.iscsi.param" && strings.Contains(a.Value, "password"):
			// A node parameter passed through for the OS's initiator
			// (node.session.auth.password[_in]=…), a CHAP secret too.
			name, _, _ := strings.Cut(a.Value, "=")
			args[i] = Arg{Key: a.Key, Value: name + "=***", HasValue: true}
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
