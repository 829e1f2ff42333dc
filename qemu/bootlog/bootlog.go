// Package bootlog reads what lunboot boot prints on a serial console, as
// the lab records it: the stage lines with their times, the final report
// of a failed boot, and any CHAP secret that should not be there. The lab's
// end-to-end tests (qemu/e2e, qemu/handoff) and make demo share it, so that
// a change of the console format breaks one parser and its tests.
package bootlog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The lunboot console, as cmds/lunboot/boot.go prints it:
//
//	lunboot: iSCSI boot starting, version v1.2.0 (commit 8b8cfae97891)
//	[   5.81s] network    eth0 (…) 10.21.129.110/24 …; root-path from option 17 (3.49s)
//	             target iscsi:… (from DHCP option 17)          ← Info lines, indented
//	[   5.90s] login      FAILED (attempt 1/4) after 10ms: …
//	[   5.90s] login      retrying in 1s
//	           booting Debian GNU/Linux … after 41.20s
//	lunboot: BOOT FAILED in stage handoff after 38.02s
//	lunboot:   <the error, one line per line>
//	lunboot: check: <what to check>
//	lunboot: dropping to the rescue shell; …        (or: rebooting in 10s)
//
// Kernel messages interleave ("[    5.123456] …": six decimals, no "s").
const (
	// StartLine starts lunboot's first line, which goes on to name the
	// version and commit.
	StartLine = "lunboot: iSCSI boot starting"
	// FailedLine starts the final report of a failed boot.
	FailedLine = "lunboot: BOOT FAILED in stage "
	// RescueLine says the rescue shell comes next.
	RescueLine = "lunboot: dropping to the rescue shell"
	// RebootLine says a reboot comes next (lunboot.rescue=0).
	RebootLine = "lunboot: rebooting in"
)

// Stages are the stages of a boot that reaches kexec, in order
// (pkg/bootflow.Boot).
var Stages = []string{"modules", "config", "network", "target", "login", "nbd", "os", "load", "handoff", "kexec-load", "shutdown"}

// stagePattern matches one stage line: its time stamp, the stage and the
// rest (a summary ending in "(took)", "FAILED …" or "retrying in …").
var stagePattern = regexp.MustCompile(`(?m)^\[ *(\d+\.\d\d)s\] (\S+) +(.*?)\s*$`)

// tookPattern matches the duration that ends a stage's summary.
var tookPattern = regexp.MustCompile(`^(.*) \(([0-9][0-9a-zµ.]*)\)$`)

// Stage is one stage line of the lunboot console.
type Stage struct {
	Name string
	// At is the line's time stamp: lunboot's time since it started.
	At time.Duration
	// Took is the stage's duration (all attempts), zero for failed
	// attempts and retry lines.
	Took time.Duration
	// Text is what follows the name: the summary without its duration,
	// "FAILED …" or "retrying in …".
	Text string
	// Line is the whole line.
	Line string
}

// Failed reports a failed attempt.
func (s Stage) Failed() bool { return strings.HasPrefix(s.Text, "FAILED") }

// Retry reports a "retrying in" line.
func (s Stage) Retry() bool { return strings.HasPrefix(s.Text, "retrying in ") }

// OK reports a finished stage.
func (s Stage) OK() bool { return !s.Failed() && !s.Retry() }

// Section returns the part of console output lunboot printed: from its
// start line up to the OS kernel's first message after the jump ("Linux
// version" again) or the end of the output. It is empty when lunboot never
// started.
func Section(console string) string {
	i := strings.Index(console, StartLine)
	if i < 0 {
		return ""
	}
	s := console[i:]
	if j := strings.Index(s, "Linux version "); j >= 0 {
		s = s[:j]
	}
	return s
}

// ParseStages returns the stage lines of console output in order. Pass
// Section(console) to leave out what the OS printed.
func ParseStages(console string) []Stage {
	var out []Stage
	for _, m := range stagePattern.FindAllStringSubmatch(console, -1) {
		secs, _ := strconv.ParseFloat(m[1], 64)
		s := Stage{Name: m[2], At: time.Duration(secs * float64(time.Second)).Round(10 * time.Millisecond), Text: m[3], Line: m[0]}
		if s.OK() {
			if t := tookPattern.FindStringSubmatch(s.Text); t != nil {
				if d, err := time.ParseDuration(t[2]); err == nil {
					s.Text, s.Took = t[1], d
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// Finished returns the names of the stages that reported success, in order.
func Finished(stages []Stage) []string {
	var names []string
	for _, s := range stages {
		if s.OK() {
			names = append(names, s.Name)
		}
	}
	return names
}

// Find returns the success line of the named stage, if there is one.
func Find(stages []Stage, name string) (Stage, bool) {
	for _, s := range stages {
		if s.Name == name && s.OK() {
			return s, true
		}
	}
	return Stage{}, false
}

// Failure is the final report of a failed boot.
type Failure struct {
	Stage string
	// Error holds the error's lines, Check the advice.
	Error []string
	Check string
	// Then is what lunboot did next: "rescue" or "reboot".
	Then string
}

// ErrorText returns the error's lines joined by newlines.
func (f *Failure) ErrorText() string { return strings.Join(f.Error, "\n") }

// Failures returns the failed attempts of the named stage, and how many
// "retrying" lines followed them.
func Failures(stages []Stage, name string) (failed []Stage, retries int) {
	for _, s := range stages {
		if s.Name != name {
			continue
		}
		if s.Failed() {
			failed = append(failed, s)
		}
		if s.Retry() {
			retries++
		}
	}
	return failed, retries
}

// failurePattern matches the final report up to the line that says what
// happens next.
var failurePattern = regexp.MustCompile(`(?s)` + regexp.QuoteMeta(FailedLine) + `(\S+) after [^\n]*\n(.*?)(` +
	regexp.QuoteMeta(RescueLine) + `|` + regexp.QuoteMeta(RebootLine) + `)[^\n]*\n`)

// ParseFailure reads the final report of a failed boot from console output.
func ParseFailure(console string) (*Failure, error) {
	console = strings.ReplaceAll(console, "\r", "")
	m := failurePattern.FindStringSubmatch(console)
	if m == nil {
		return nil, fmt.Errorf("no complete %q report in the console", strings.TrimSpace(FailedLine))
	}
	f := &Failure{Stage: m[1], Then: "rescue"}
	if m[3] == RebootLine {
		f.Then = "reboot"
	}
	for _, line := range strings.Split(m[2], "\n") {
		switch {
		case strings.HasPrefix(line, "lunboot: check: "):
			f.Check = strings.TrimPrefix(line, "lunboot: check: ")
		case strings.HasPrefix(line, "lunboot:   "):
			f.Error = append(f.Error, strings.TrimPrefix(line, "lunboot:   "))
		}
	}
	if len(f.Error) == 0 {
		return f, fmt.Errorf("the %q report has no error lines", strings.TrimSpace(FailedLine))
	}
	return f, nil
}

// kernelCmdlinePattern matches the kernel's own print of its command line
// (arch/x86/kernel/setup.c "Command line:", init/main.c "Kernel command
// line:"): where a secret typed on it legitimately shows up.
var kernelCmdlinePattern = regexp.MustCompile(`^\[ *\d+\.\d{6}\] (Kernel command line|Command line): `)

// SecretLeaks returns the lines of console output that contain one of the
// secrets, each secret replaced by "<SECRET>" so that a report does not
// repeat it. The firmware kernel's echo of its own command line before
// lunboot starts is not a leak: the user typed the secret there.
func SecretLeaks(console string, secrets ...string) []string {
	var leaks []string
	started := false
	for _, line := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		if strings.Contains(line, StartLine) {
			started = true
		}
		hit := false
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				hit = true
				line = strings.ReplaceAll(line, s, "<SECRET>")
			}
		}
		if hit && (started || !kernelCmdlinePattern.MatchString(line)) {
			leaks = append(leaks, line)
		}
	}
	return leaks
}

// LastLines returns the last n lines of console output (fewer if it has
// fewer), without a trailing empty line: what an error message quotes of a
// console or a log.
func LastLines(console string, n int) []string {
	console = strings.TrimRight(console, "\n")
	if console == "" || n <= 0 {
		return nil
	}
	lines := strings.Split(console, "\n")
	return lines[max(0, len(lines)-n):]
}
