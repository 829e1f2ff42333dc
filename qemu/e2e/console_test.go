package e2e

import (
	"fmt"
	"regexp"
	"strings"
)

// The lunboot console, as cmds/lunboot/boot.go prints it:
//
//	lunboot: iSCSI boot starting
//	[   5.81s] network    eth0 (…) 10.21.129.110/24 …; root-path from option 17 (3.49s)
//	             target iscsi:… (from DHCP option 17)          ← Info lines, indented
//	[   5.90s] login      FAILED (attempt 1/4) after 10ms: …
//	[   5.90s] login      retrying in 1s
//	           booting lunboot probe OS 6.1.0-56-amd64 after 13.14s
//	lunboot: BOOT FAILED in stage login after 9.20s
//	lunboot:   <the error, one line per line>
//	lunboot: check: <what to check>
//	lunboot: dropping to the rescue shell; …        (or: rebooting in 10s)
//
// Kernel messages interleave ("[    5.123456] …": six decimals, no "s"),
// and so do the libraries' log lines (time=… level=WARN …).
const (
	startLine   = "lunboot: iSCSI boot starting"
	rescueLine  = "lunboot: dropping to the rescue shell"
	rebootLine  = "lunboot: rebooting in"
	failedLine  = "lunboot: BOOT FAILED in stage "
	bootingLine = "booting "
)

// stagePattern matches one stage line: its time stamp, the stage and the
// rest (a summary, "FAILED …" or "retrying in …").
var stagePattern = regexp.MustCompile(`(?m)^\[ *(\d+\.\d\d)s\] (\S+) +(.*)$`)

// allStages are the stages of a boot that reaches the OS, in order
// (pkg/bootflow.Boot).
var allStages = []string{"modules", "config", "network", "target", "login", "nbd", "os", "load", "handoff", "kexec-load", "shutdown"}

// stageEvent is one stage line.
type stageEvent struct {
	Stage string
	Text  string // the summary with its "(took)" suffix, or "FAILED …", or "retrying in …"
	Line  string
}

// Failed reports a failed attempt; Retry a "retrying in" line.
func (e stageEvent) Failed() bool { return strings.HasPrefix(e.Text, "FAILED") }
func (e stageEvent) Retry() bool  { return strings.HasPrefix(e.Text, "retrying in ") }

// OK reports a finished stage.
func (e stageEvent) OK() bool { return !e.Failed() && !e.Retry() }

// lunbootSection returns the part of the console lunboot printed: from its
// start line to the probe's start marker or the end of the output.
func lunbootSection(console, endMarker string) (string, error) {
	i := strings.Index(console, startLine)
	if i < 0 {
		return "", fmt.Errorf("no %q line in the console", startLine)
	}
	s := console[i:]
	if endMarker != "" {
		if j := strings.Index(s, endMarker); j >= 0 {
			s = s[:j]
		}
	}
	return s, nil
}

// parseStages returns the stage lines of a lunboot section in order.
func parseStages(section string) []stageEvent {
	var evs []stageEvent
	for _, m := range stagePattern.FindAllStringSubmatch(section, -1) {
		evs = append(evs, stageEvent{Stage: m[2], Text: strings.TrimSpace(m[3]), Line: m[0]})
	}
	return evs
}

// finished returns the names of the stages that reported success, in order.
func finished(evs []stageEvent) []string {
	var names []string
	for _, e := range evs {
		if e.OK() {
			names = append(names, e.Stage)
		}
	}
	return names
}

// summary returns the success line of stage, or "" if it has none.
func summary(evs []stageEvent, stage string) string {
	for _, e := range evs {
		if e.Stage == stage && e.OK() {
			return e.Text
		}
	}
	return ""
}

// failures returns the failed attempts of stage, and how many "retrying"
// lines followed them.
func failures(evs []stageEvent, stage string) (failed []stageEvent, retries int) {
	for _, e := range evs {
		if e.Stage != stage {
			continue
		}
		if e.Failed() {
			failed = append(failed, e)
		}
		if e.Retry() {
			retries++
		}
	}
	return failed, retries
}

// bootFailure is the final report of a failed boot.
type bootFailure struct {
	Stage string
	// Error holds the error's lines ("lunboot:   …"), Check the advice.
	Error []string
	Check string
	// Then is what lunboot did next: "rescue" or "reboot".
	Then string
}

// ErrorText returns the error's lines joined by newlines.
func (f *bootFailure) ErrorText() string { return strings.Join(f.Error, "\n") }

// failurePattern matches the final report up to the line that says what
// happens next.
var failurePattern = regexp.MustCompile(`(?s)` + regexp.QuoteMeta(failedLine) + `(\S+) after [^\n]*\n(.*?)(` +
	regexp.QuoteMeta(rescueLine) + `|` + regexp.QuoteMeta(rebootLine) + `)[^\n]*\n`)

// parseFailure reads the final report from console output.
func parseFailure(console string) (*bootFailure, error) {
	m := failurePattern.FindStringSubmatch(console)
	if m == nil {
		return nil, fmt.Errorf("no complete %q report in the console", failedLine)
	}
	f := &bootFailure{Stage: m[1], Then: "rescue"}
	if m[3] == rebootLine {
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
		return f, fmt.Errorf("the %q report has no error lines", failedLine)
	}
	return f, nil
}

// kernelCmdlinePattern matches the kernel's own print of its command line
// (arch/x86/kernel/setup.c "Command line:", init/main.c "Kernel command
// line:"): the one place a secret the user typed on it may appear.
var kernelCmdlinePattern = regexp.MustCompile(`^\[ *\d+\.\d{6}\] (Kernel command line|Command line): `)

// secretLeaks returns the lines of console output that contain one of the
// secrets, with the secrets replaced so that the report does not repeat
// them. The firmware kernel printing its own command line, before lunboot
// starts, is not a leak: the user typed the secret there.
func secretLeaks(console string, secrets ...string) []string {
	var leaks []string
	started := false
	for _, line := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		if strings.Contains(line, startLine) {
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
