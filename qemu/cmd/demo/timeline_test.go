package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/qemu/lab"
)

// console is a lunboot boot into the probe OS as the serial console shows
// it; each line arrives one second after the one before.
var console = []string{
	"[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)",
	"lunboot: iSCSI boot starting, version v0 (commit 1)",
	"[   0.50s] modules    6 loaded, 0 already present (0.50s)",
	"[   1.00s] network    FAILED (attempt 1/4) after 1s: no lease",
	"[   2.00s] network    eth0 10.0.0.5/24 (1.50s)",
	"           booting probe after 9.00s",
	"[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)",
	"LUNBOOT-PROBE-START fixture=mbr",
	`LUNBOOT-PROBE-RESULT {"ok":true}`,
}

func events(re *regexp.Regexp) []lab.Event {
	var out []lab.Event
	for i, line := range console {
		for _, m := range re.FindAllString(line+"\n", -1) {
			out = append(out, lab.Event{Text: m, At: time.Duration(i+1) * time.Second})
		}
	}
	return out
}

func TestTimeline(t *testing.T) {
	marks := lunbootMarks(probeMarks...)
	got := timeline(events, marks)
	want := map[string]time.Duration{
		"firmware kernel starts":                   1 * time.Second,
		"lunboot starts":                           2 * time.Second,
		"  modules done":                           3 * time.Second,
		"  network done":                           5 * time.Second, // the finished line, not the failed attempt
		"  login done":                             -1,
		"kexec call":                               6 * time.Second,
		"OS kernel starts":                         7 * time.Second, // the second Linux
		"OS initrd runs (probe starts)":            8 * time.Second,
		"OS initrd logged in again (probe result)": 9 * time.Second,
	}
	for i, m := range marks {
		if w, ok := want[m.name]; ok && got[i] != w {
			t.Errorf("timeline %q = %v, want %v", m.name, got[i], w)
		}
	}
	ip := timeline(events, ipxeMarks(probeMarks...))
	if ip[0] != -1 || ip[len(ip)-3] != time.Second {
		t.Errorf("iPXE timeline: banner %v, OS kernel %v; want none and the first Linux (1s)", ip[0], ip[len(ip)-3])
	}
}

func TestCell(t *testing.T) {
	s := time.Second
	runs := [][]time.Duration{{3 * s}, {1 * s}, {2 * s}, {-1}}
	if got, want := cell(runs, 0), "2.0s [1.0–3.0] (3/4)"; got != want {
		t.Errorf("cell() = %q, want %q", got, want)
	}
	if got := cell([][]time.Duration{{-1}}, 0); got != "-" {
		t.Errorf("cell(missing) = %q, want -", got)
	}
	var b strings.Builder
	writeTimelines(&b, []string{"lunboot"}, []mark{{name: "x"}}, [][][]time.Duration{{{s}}}, nil, "note")
	if !strings.Contains(b.String(), "x") || !strings.Contains(b.String(), "1.0s") || !strings.Contains(b.String(), "note") {
		t.Errorf("writeTimelines() = %q", b.String())
	}
}

func TestFootprint(t *testing.T) {
	con := "lunboot: iSCSI boot starting, version v0 (commit 1)\n" +
		"[  20.00s] shutdown   unmounted, /dev/nbd0 detached, logged out, eth0 down; peak RSS 14.2 MiB (VmHWM), tmpfs 40.1 MiB (OS kernel and initrd) (0.20s)\n"
	if got, want := footprint(con), "peak RSS 14.2 MiB (VmHWM), tmpfs 40.1 MiB (OS kernel and initrd)"; got != want {
		t.Errorf("footprint() = %q, want %q", got, want)
	}
	if got := footprint("nothing"); got != "" {
		t.Errorf("footprint(no boot) = %q, want empty", got)
	}
}
