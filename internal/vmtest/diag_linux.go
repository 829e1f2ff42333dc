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
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// debugFS is where the guest mounts the kernel's debug file system.
const debugFS = "/sys/kernel/debug"

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

// DumpState writes what explains a stalled guest test: every goroutine's
// stack; the queues of this process's sockets (SIOCINQ: bytes not read by
// us, SIOCOUTQ: bytes the peer has not read); the kernel stack of every
// task in uninterruptible sleep or running a work item (a kworker, or a
// workqueue's rescuer); and blk-mq's view of each of disks ("nbd3":
// requests in flight per hardware queue, from debugfs).
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
