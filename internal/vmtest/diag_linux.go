package vmtest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Where the guest mounts the kernel's debug and trace file systems.
const (
	debugFS = "/sys/kernel/debug"
	traceFS = "/sys/kernel/tracing"
)

// traced is set once Trace enabled events: DumpState then shows the buffer.
var traced atomic.Bool

// Watchdog helps explain a guest test that hangs: if the returned stop has
// not been called within d, it logs DumpState for disks to t (once). Outside
// a guest it does nothing. Call stop when the watched step is over; it is
// also called when t ends.
func Watchdog(t testing.TB, d time.Duration, disks ...string) (stop func()) {
	t.Helper()
	if !InGuest() {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	timer := time.AfterFunc(d, func() {
		var b bytes.Buffer
		fmt.Fprintf(&b, "vmtest watchdog: still running after %v; guest state follows\n", d)
		DumpState(&b, disks...)
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Log(b.String())
		}
	})
	stop = func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
	t.Cleanup(stop)
	return stop
}

// Trace enables kernel trace events for the rest of t, by tracefs names:
// "nbd" (a whole system) or "block/block_rq_issue" (one event). DumpState
// then includes the trace buffer. Outside a guest it does nothing: the
// host's tracing is not a test's to change.
//
// It is for debugging a test, not for tests that run in make test:
// enabling an event patches kernel text (static keys, text_poke_bp), which
// waits for every vCPU to answer an IPI, and under TCG on a loaded host a
// guest once stuck there for minutes (soft lockup in the writing task, the
// other vCPU's timer stalled) until vmtest killed it.
func Trace(t testing.TB, events ...string) {
	t.Helper()
	if !InGuest() {
		return
	}
	if err := mountOnce("tracefs", traceFS); err != nil {
		t.Logf("vmtest: trace: %v", err)
		return
	}
	write := func(rel, v string) error {
		return os.WriteFile(filepath.Join(traceFS, rel), []byte(v), 0)
	}
	if err := write("buffer_size_kb", "2048"); err != nil {
		t.Logf("vmtest: trace: %v", err)
	}
	for _, e := range events {
		if err := write(filepath.Join("events", e, "enable"), "1"); err != nil {
			t.Logf("vmtest: trace %s: %v", e, err)
		}
	}
	write("tracing_on", "1")
	traced.Store(true)
	t.Cleanup(func() {
		for _, e := range events {
			write(filepath.Join("events", e, "enable"), "0")
		}
		write("trace", "") // clear the buffer for the next test
	})
}

// DumpState writes what explains a stalled guest test: every goroutine's
// stack; the queues of this process's sockets (SIOCINQ: bytes not read by
// us, SIOCOUTQ: bytes the peer has not read); the kernel stack of every
// task in uninterruptible sleep or running a work item (a kworker, or a
// workqueue's rescuer); blk-mq's view of each of disks ("nbd3": requests
// in flight per hardware queue, from debugfs); and the trace buffer if
// Trace enabled events.
func DumpState(w io.Writer, disks ...string) {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	fmt.Fprintf(w, "--- goroutines ---\n%s\n", buf)

	fmt.Fprintf(w, "--- sockets of this process ---\n")
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, e := range fds {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if !strings.HasPrefix(link, "socket:") {
			continue
		}
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err != nil {
			continue
		}
		in, ierr := unix.IoctlGetInt(fd, unix.SIOCINQ)
		out, oerr := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if ierr != nil || oerr != nil {
			continue // not a stream socket
		}
		fmt.Fprintf(w, "fd %d %s: unread by us %d, unread by the peer %d\n", fd, link, in, out)
	}

	fmt.Fprintf(w, "--- kernel tasks blocked or running work items ---\n")
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*")
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(task, "stat"))
		if err != nil {
			continue
		}
		// The state follows the parenthesised command name.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			continue
		}
		state := stat[i+2]
		stack, _ := os.ReadFile(filepath.Join(task, "stack"))
		if state != 'D' && !bytes.Contains(stack, []byte("process_one_work")) {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(task, "comm"))
		fmt.Fprintf(w, "%s %s state %c\n%s", task, bytes.TrimSpace(comm), state, stack)
	}

	if len(disks) > 0 {
		if err := mountOnce("debugfs", debugFS); err != nil {
			fmt.Fprintf(w, "debugfs: %v\n", err)
		}
	}
	for _, disk := range disks {
		fmt.Fprintf(w, "--- blk-mq %s ---\n", disk)
		dir := filepath.Join(debugFS, "block", disk)
		for _, pat := range []string{"state", "hctx*/busy", "hctx*/dispatch", "hctx*/tags_bitmap", "sched/*"} {
			files, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil || len(bytes.TrimSpace(b)) == 0 {
					continue
				}
				rel, _ := filepath.Rel(dir, f)
				fmt.Fprintf(w, "%s:\n%s", rel, b)
			}
		}
	}

	if traced.Load() {
		if b, err := os.ReadFile(filepath.Join(traceFS, "trace")); err == nil {
			fmt.Fprintf(w, "--- trace ---\n%s", b)
		}
	}
}

// mountOnce mounts a pseudo file system at dir unless one already is there.
func mountOnce(fstype, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".")); err == nil {
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			return nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fstype, dir, fstype, 0, ""); err != nil && err != unix.EBUSY {
		return fmt.Errorf("mount %s on %s: %w", fstype, dir, err)
	}
	return nil
}
