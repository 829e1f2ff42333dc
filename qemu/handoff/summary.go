package handoff

import (
	"cmp"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// WriteSummary prints what a boot through lunboot showed: lunboot's
// stages with their times, then the OS's account of what it received (its
// command line and iBFT) and what it made of it (its iSCSI session, its
// root device, systemd's state).
func WriteSummary(w io.Writer, stages []bootlog.Stage, os *OS) {
	fmt.Fprintf(w, "lunboot stages (time since lunboot started, duration):\n")
	for _, s := range stages {
		took := ""
		if s.OK() {
			took = round(s.Took)
		}
		fmt.Fprintf(w, "  %-10s %8s %8s  %s\n", s.Name, "+"+round(s.At), took, s.Text)
	}
	if os == nil || os.Proof == nil {
		fmt.Fprintf(w, "the OS did not report\n")
		return
	}
	p := os.Proof
	fmt.Fprintf(w, "the OS: %s, kernel %s; proof at +%s QEMU time (guest uptime %.1fs)", cmp.Or(p.OS, "-"), cmp.Or(p.Kernel, "-"), round(os.ProofAt), p.UptimeSeconds)
	if os.LoginAt > 0 {
		fmt.Fprintf(w, ", login prompt at +%s", round(os.LoginAt))
	}
	fmt.Fprintf(w, "\n  command line  %s\n", p.Cmdline)
	fmt.Fprintf(w, "  iBFT          %s\n", strings.ReplaceAll(IBFTSummary(p.IBFT), "\n", "\n                "))
	if len(p.Sessions) == 0 {
		fmt.Fprintf(w, "  iSCSI         no session\n")
	}
	for _, s := range p.Sessions {
		var portals []string
		for _, c := range s.Connections {
			portals = append(portals, fmt.Sprintf("%s:%d", c.PersistentAddress, c.PersistentPort))
		}
		fmt.Fprintf(w, "  iSCSI         %s %s: target %s, initiator %s, portal %s\n", s.Name, cmp.Or(s.State, "-"), s.TargetName, s.InitiatorName, strings.Join(portals, ", "))
	}
	r := p.Root
	fmt.Fprintf(w, "  root          %s (%s) = %s on %s LUN %d", r.Source, r.FSType, r.Device, cmp.Or(r.Session, "-"), r.LUN)
	if len(r.ByPath) > 0 {
		fmt.Fprintf(w, ", /dev/disk/by-path/%s", strings.Join(r.ByPath, ", "))
	}
	fmt.Fprintf(w, "\n  systemd       %s, multi-user.target %s", p.Systemd.State, p.Systemd.MultiUser)
	if len(p.Systemd.Failed) > 0 {
		fmt.Fprintf(w, ", failed units: %s", strings.Join(p.Systemd.Failed, " "))
	}
	fmt.Fprintln(w)
	for _, e := range p.Errors {
		fmt.Fprintf(w, "  not collected %s\n", e)
	}
}

// IBFTSummary formats a table the OS exposes under /sys/firmware/ibft, one
// line per section (initiator, ethernet0, target0, …), leaving out the
// attributes that say nothing (zero addresses, empty values). A nil table
// is "absent".
func IBFTSummary(t osproof.IBFT) string {
	if t == nil {
		return "absent"
	}
	sections := map[string][]string{}
	for k, v := range t {
		sec, attr, ok := strings.Cut(k, "/")
		if !ok {
			sec, attr = "", k
		}
		if v == "" || v == "0.0.0.0" || v == "::" || attr == "index" {
			continue
		}
		sections[sec] = append(sections[sec], attr+"="+v)
	}
	names := make([]string, 0, len(sections))
	for s := range sections {
		names = append(names, s)
	}
	sort.Strings(names)
	lines := make([]string, 0, len(names))
	for _, s := range names {
		sort.Strings(sections[s])
		lines = append(lines, s+": "+strings.Join(sections[s], " "))
	}
	if len(lines) == 0 {
		return "present, empty"
	}
	return strings.Join(lines, "\n")
}

func round(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.Round(10 * time.Millisecond).String()
}
