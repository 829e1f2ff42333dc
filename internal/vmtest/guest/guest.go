// Package guest is the contract between internal/vmtest on the host and its
// init inside the QEMU guest (internal/vmtest/guestinit): where the run's
// configuration lives in the initramfs, how the init reports the test's exit
// status on the console, and how a test knows it runs in the guest.
package guest

import (
	"strconv"
	"strings"
)

// ConfigPath is the run's configuration inside the guest.
const ConfigPath = "/vmtest/config.json"

// EnvGuest is set to "1" in the environment of the program the init runs.
const EnvGuest = "LUNBOOT_VMTEST_GUEST"

// statusPrefix starts the line that carries the exit status; the host scans
// the console for it, so it must not look like anything a test prints.
const statusPrefix = "<<<vmtest exit status "

// Config is what the init does, in order: load Modules, run Command in Dir
// with Env added to a minimal environment, report its exit status.
type Config struct {
	Modules []Module `json:"modules"`
	Command []string `json:"command"`
	Dir     string   `json:"dir"`
	Env     []string `json:"env"`
}

// Module is one kernel module to load with finit_module(2).
type Module struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Params string `json:"params"`
}

// StatusLine formats the exit-status line the init prints last.
func StatusLine(code int) string {
	return statusPrefix + strconv.Itoa(code) + ">>>"
}

// ParseStatusLine finds an exit-status line in one console line (the serial
// console may prefix it with kernel output or a carriage return).
func ParseStatusLine(line string) (int, bool) {
	i := strings.Index(line, statusPrefix)
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(statusPrefix):]
	end := strings.Index(rest, ">>>")
	if end < 0 {
		return 0, false
	}
	code, err := strconv.Atoi(rest[:end])
	if err != nil {
		return 0, false
	}
	return code, true
}
