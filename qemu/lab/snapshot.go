package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SnapshotPrefix starts the name of each file Snapshot writes in the log
// folder.
const SnapshotPrefix = "snapshot-"

// Snapshot records what the lab's processes and connections are doing, for
// a guest that stopped making progress: the state and kernel wait channel
// of every thread in the lab's namespace (is tgtd blocked, and where?) and
// its TCP sockets with their counters (are segments being retransmitted, is
// data waiting to be read or acknowledged?). Without it, a stall shows only
// as a guest console that went quiet. Take it while the guest still runs:
// killing QEMU closes its connections. The report is written to a file in
// the log folder, whose path is returned.
func (l *Lab) Snapshot(ctx context.Context) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s at %s (%s after it started)\n", l.ns, time.Now().Format("15:04:05.000"), time.Since(l.created).Round(time.Millisecond))

	b.WriteString("\nthreads in the namespace (tid, state, kernel wait channel):\n")
	pids, err := l.run(ctx, "ip", "netns", "pids", l.ns)
	if err != nil {
		fmt.Fprintf(&b, "  (cannot list: %v)\n", err)
	}
	for _, f := range strings.Fields(pids) {
		if pid, err := strconv.Atoi(f); err == nil {
			writeThreads(&b, pid)
		}
	}

	b.WriteString("\nTCP sockets in the namespace (ss -tinoa):\n")
	out, err := l.run(ctx, "ip", "netns", "exec", l.ns, "ss", "-tinoa")
	if err != nil {
		fmt.Fprintf(&b, "  (cannot list: %v)\n", err)
	}
	for _, line := range strings.Split(out, "\n") {
		b.WriteString("  " + line + "\n")
	}

	path := filepath.Join(l.logDir, SnapshotPrefix+time.Now().Format("150405.000")+".txt")
	if err := os.WriteFile(path, []byte(l.mask(b.String())), 0o644); err != nil {
		return "", fmt.Errorf("lab: snapshot: %w", err)
	}
	l.cmds.printf("# snapshot of the lab's threads and sockets: %s", path)
	return path, nil
}

// writeThreads adds one process and its threads, each with its state (R, S,
// D, …; proc(5) /proc/pid/stat field 3) and wait channel, to b. A process
// that ended meanwhile is reported as such.
func writeThreads(b *strings.Builder, pid int) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tids, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(b, "  pid %d: %v\n", pid, err)
		return
	}
	fmt.Fprintf(b, "  pid %d %s\n", pid, procName(pid))
	for _, t := range tids {
		stat, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			continue
		}
		// "tid (comm) S …": comm may hold spaces and parentheses, so the
		// state is the first field after the last ")".
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		rest := strings.Fields(s[closing+1:])
		if len(rest) == 0 {
			continue
		}
		comm, state := s[open+1:closing], rest[0]
		wchan, _ := os.ReadFile(filepath.Join(dir, t.Name(), "wchan"))
		w := strings.TrimSpace(string(wchan))
		if w == "" || w == "0" {
			w = "-"
		}
		fmt.Fprintf(b, "    %s %-16s %s %s\n", t.Name(), comm, state, w)
	}
}

func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
