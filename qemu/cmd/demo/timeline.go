package main

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/probe"
)

// A mark is one point of a boot timeline: the nth match (from 1) of a
// pattern in a guest's console. A nil pattern means the point does not
// exist on that path (iPXE has no firmware kernel stages).
type mark struct {
	name string
	re   *regexp.Regexp
	nth  int
}

var (
	linuxVersion = regexp.MustCompile(`Linux version \d`)
	ipxeBanner   = regexp.MustCompile(`iPXE \d|iPXE \(http`)
	kexecCall    = regexp.MustCompile(`(?m)^\s*booting .* after \d[^\n]*$`)
	// An OS initrd's iSCSI login, as the kernel reports it when iscsi_tcp
	// gets its first connection (the firmware kernel never loads
	// iscsi_tcp: lunboot speaks iSCSI itself).
	osISCSILogin = regexp.MustCompile(`scsi host\d+: iSCSI Initiator over TCP/IP`)
	loginPrompt  = regexp.MustCompile(`(?m)^\S+ login: `)
)

// stageDone matches a stage's finished line (its summary ends in the
// duration): the end of that stage on the timeline.
func stageDone(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\[ *\d+\.\d\ds\] ` + regexp.QuoteMeta(name) + ` .*\([0-9][0-9a-zµ.]*\)\s*$`)
}

// lunbootMarks is lunboot's path from power-on to the OS: the firmware
// kernel, lunboot's start and stages, the kexec call, the OS kernel, then
// the OS's own milestones (osMarks).
func lunbootMarks(osMarks ...mark) []mark {
	m := []mark{
		{"firmware kernel starts", linuxVersion, 1},
		{"lunboot starts", regexp.MustCompile(regexp.QuoteMeta(bootlog.StartLine)), 1},
	}
	for _, s := range bootlog.Stages {
		m = append(m, mark{"  " + s + " done", stageDone(s), 1})
	}
	m = append(m, mark{"kexec call", kexecCall, 1}, mark{"OS kernel starts", linuxVersion, 2})
	return append(m, osMarks...)
}

// ipxeMarks is the same timeline through iPXE: no firmware kernel, the OS
// kernel is the first Linux.
func ipxeMarks(osMarks ...mark) []mark {
	m := lunbootMarks()
	for i := range m {
		m[i].re, m[i].nth = nil, 0
	}
	m[0] = mark{m[0].name, ipxeBanner, 1} // iPXE's own start stands in
	m[len(m)-1] = mark{m[len(m)-1].name, linuxVersion, 1}
	return append(m, osMarks...)
}

// probeMarks are the probe OS's milestones: its init runs in the OS initrd,
// logs in again with what it was handed and prints its result.
var probeMarks = []mark{
	{"OS initrd runs (probe starts)", probe.StartPattern, 1},
	{"OS initrd logged in again (probe result)", probe.ResultPattern, 1},
}

// debianMarks are Debian's: its initrd's iSCSI login, then the login prompt.
var debianMarks = []mark{
	{"OS initrd iSCSI login", osISCSILogin, 1},
	{"OS login prompt", loginPrompt, 1},
}

// timeline returns, for each mark, when it happened (from power-on), or -1
// when it did not (or does not exist on this path).
func timeline(events func(*regexp.Regexp) []lab.Event, marks []mark) []time.Duration {
	out := make([]time.Duration, len(marks))
	for i, m := range marks {
		out[i] = -1
		if m.re == nil {
			continue
		}
		if ev := events(m.re); len(ev) >= m.nth {
			out[i] = ev[m.nth-1].At
		}
	}
	return out
}

// writeTimelines prints one column per path: each mark's median over the
// runs, with the range when there are several. runs[c][r][i] is path c's
// run r's time for mark i.
func writeTimelines(w io.Writer, names []string, marks []mark, runs [][][]time.Duration, extra []string, note string) {
	fmt.Fprintf(w, "\n== boot timeline, time from power-on (median [min–max] of the runs; QEMU TCG)\n")
	fmt.Fprintf(w, "%-44s", "")
	for _, n := range names {
		fmt.Fprintf(w, " %24s", n)
	}
	fmt.Fprintln(w)
	for i, m := range marks {
		fmt.Fprintf(w, "%-44s", m.name)
		for c := range names {
			fmt.Fprintf(w, " %24s", cell(runs[c], i))
		}
		fmt.Fprintln(w)
	}
	for _, e := range extra {
		fmt.Fprintf(w, "%s\n", e)
	}
	if note != "" {
		fmt.Fprintf(w, "%s\n", note)
	}
}

// footprint is the memory part of lunboot's shutdown stage line (peak RSS
// and tmpfs use, see pkg/bootflow), or "" when the boot did not print it.
func footprint(console string) string {
	st, ok := bootlog.Find(bootlog.ParseStages(bootlog.Section(console)), "shutdown")
	if !ok {
		return ""
	}
	_, f, ok := strings.Cut(st.Text, "; ")
	if !ok {
		return ""
	}
	return f
}

// cell is one mark of one path over its runs.
func cell(runs [][]time.Duration, i int) string {
	var v []time.Duration
	for _, r := range runs {
		if i < len(r) && r[i] >= 0 {
			v = append(v, r[i])
		}
	}
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	s := fmt.Sprintf("%.1fs", med.Seconds())
	if len(v) > 1 {
		s += fmt.Sprintf(" [%.1f–%.1f]", v[0].Seconds(), v[len(v)-1].Seconds())
	}
	if len(v) < len(runs) {
		s += fmt.Sprintf(" (%d/%d)", len(v), len(runs))
	}
	return strings.TrimSpace(s)
}
