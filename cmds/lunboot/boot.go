package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/version"
	"github.com/lunboot/lunboot/pkg/bootflow"
	"github.com/lunboot/lunboot/pkg/netconf"
	"golang.org/x/sys/unix"
)

func init() {
	register(&command{
		name:    "boot",
		summary: "boot the OS on an iSCSI LUN (the image's init runs this)",
		run:     runBoot,
	})
}

func runBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("boot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	noExec := fs.Bool("n", false, "do everything but the final jump: load the OS kernel, shut down, and exit")
	cmdline := fs.String("cmdline", "", "use this kernel command line instead of /proc/cmdline")
	virtual := fs.Bool("virtual-nics", false, "also consider virtual NICs (veth, tap) for DHCP")
	skipModules := fs.Bool("skip-modules", false, "do not load the image's kernel modules")
	fs.Usage = usageFunc(fs, "boot [options]",
		"Does what a NIC iSCSI boot ROM does: loads drivers, configures the network (DHCP or\n"+
			"ip=), logs in to the target named by the RFC 4173 root-path (DHCP option 17 or\n"+
			"netroot= on the command line), exposes the LUN as /dev/nbd0, finds the OS boot\n"+
			"entry on it, and kexecs the OS with a hand-off its initrd understands.\n"+
			"Configuration comes from the kernel command line: see docs/configuration.md.\n"+
			"On failure it says what failed and what to check, then returns to the rescue\n"+
			"shell, or reboots when lunboot.rescue=0.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return fmt.Errorf("%w: boot takes no arguments, got %q", errUsage, pos)
	}
	// The stage lines say what happened; library logs show up only as
	// warnings unless lunboot.loglevel= asks for more.
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	con := &console{w: stdout, start: time.Now()}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintln(stdout, startLine(version.Get()))
	err = bootflow.Boot(ctx, bootflow.Options{
		Started:     con.start,
		Console:     con,
		Logger:      log,
		Cmdline:     *cmdline,
		NoExec:      *noExec,
		SkipModules: *skipModules,
		Menu:        os.Stdin,
		LogLevel:    level,
		Network:     netconf.Selector{Virtual: *virtual},
	})
	if err == nil {
		fmt.Fprintf(stdout, "lunboot: OS loaded, not executed (-n)\n")
		return nil
	}
	var se *bootflow.StageError
	if !errors.As(err, &se) {
		return err
	}
	fmt.Fprintf(stdout, "lunboot: BOOT FAILED in stage %s after %s\n", se.Stage, time.Since(con.start).Round(10*time.Millisecond))
	for _, line := range strings.Split(se.Err.Error(), "\n") {
		fmt.Fprintf(stdout, "lunboot:   %s\n", line)
	}
	if se.Check != "" {
		fmt.Fprintf(stdout, "lunboot: check: %s\n", se.Check)
	}
	if se.Reboot {
		fmt.Fprintf(stdout, "lunboot: rebooting in 10s (lunboot.rescue=0)\n")
		time.Sleep(10 * time.Second)
		unix.Sync()
		if rerr := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); rerr != nil {
			return fmt.Errorf("reboot: %w", rerr)
		}
	}
	if !*skipModules {
		// Stage 1 left the file systems and 8021q for later; the
		// operator may mount the LUN's partitions or make a VLAN.
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		loaded, problems := bootflow.RescueModules(rctx, log, *cmdline)
		cancel()
		if len(loaded) > 0 {
			fmt.Fprintf(stdout, "lunboot: loaded for the shell: %s\n", strings.Join(loaded, ", "))
		}
		for _, p := range problems {
			fmt.Fprintf(stdout, "lunboot: warning: %s\n", p)
		}
	}
	fmt.Fprintf(stdout, "lunboot: dropping to the rescue shell; `lunboot boot` tries again, `lunboot help` lists tools\n")
	releaseConsole()
	return fmt.Errorf("boot failed in stage %s", se.Stage)
}

// releaseConsole gives up the controlling terminal before the image's
// uinit exits to the rescue shell. u-root's init starts `lunboot boot` as a
// session leader whose controlling terminal is the console, and it has
// already opened the console for the shell's output. When a session leader
// exits, the kernel hangs up its controlling terminal (disassociate_ctty in
// drivers/tty/tty_jobctrl.c), and every file open on it then fails: the
// shell starts, runs what is typed and shows nothing — no prompt, no
// output — until writing to its broken output kills it; init then exits
// and the kernel panics ("Attempted to kill init"). TIOCNOTTY detaches the
// session without a hang-up (it sends SIGHUP to the foreground process
// group, this process, hence the Ignore). Run from a shell, `lunboot boot`
// is no session leader and changes nothing.
func releaseConsole() {
	if sid, err := unix.Getsid(0); err != nil || sid != unix.Getpid() {
		return
	}
	signal.Ignore(syscall.SIGHUP)
	_ = unix.IoctlSetInt(0, unix.TIOCNOTTY, 0)
}

// Flush waits, at most a second, until what lunboot printed has left the
// machine: kexec discards the old kernel's buffers, and on a serial console
// the stage lines before the jump would be lost. It implements
// bootflow.Flusher.
func (c *console) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	files := []*os.File{os.Stderr}
	if f, ok := c.w.(*os.File); ok {
		files = append(files, f)
	}
	drainConsole(files, "/sys", "/dev", time.Second)
}

// drainConsole waits until the output written to files has reached the
// consoles and the consoles have sent it, or until d has passed. u-root's
// init hands its uinit a pipe for stdout and stderr (pkg/libinit
// WithMultiTTY) and copies from the pipe to each console= device, so first
// every pipe among files must be empty (FIONREAD, TIOCINQ in x/sys/unix);
// then, after a moment for the copier to write what it read, each active
// console (<sysfs>/class/tty/console/active) must have sent its buffer
// (TCSBRK with a non-zero argument is tcdrain, drivers/tty/tty_ioctl.c).
// tcdrain has no timeout of its own (flow control can stop a line), so it
// runs in a goroutine that is abandoned at the deadline.
func drainConsole(files []*os.File, sysfs, dev string, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, f := range files {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			continue // FIONREAD on a tty counts unread input, not output
		}
		for time.Now().Before(deadline) {
			if n, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ); err != nil || n == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	active, err := os.ReadFile(sysfs + "/class/tty/console/active")
	if err != nil {
		return
	}
	time.Sleep(min(20*time.Millisecond, time.Until(deadline)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, name := range strings.Fields(string(active)) {
			fd, err := unix.Open(dev+"/"+name, unix.O_WRONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			_ = unix.IoctlSetInt(fd, unix.TCSBRK, 1)
			unix.Close(fd)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
}

// console prints the boot's stage lines: elapsed time since start, the
// stage, its result. It is the only place that formats them.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (c *console) stamp() string {
	return fmt.Sprintf("[%7.2fs]", time.Since(c.start).Seconds())
}

func (c *console) Stage(name string, took time.Duration, summary string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s %-10s %s (%s)\n", c.stamp(), name, summary, took.Round(10*time.Millisecond))
}

func (c *console) Failed(name string, took time.Duration, err error, attempt, attempts int, retryIn time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := strings.ReplaceAll(err.Error(), "\n", "\n             ")
	tries := ""
	if attempts > 1 {
		tries = fmt.Sprintf(" (attempt %d/%d)", attempt, attempts)
		if attempts >= bootflow.AttemptsForever {
			tries = fmt.Sprintf(" (attempt %d)", attempt)
		}
		if retryIn == 0 && attempt < attempts {
			// A permanent error or the stage's time limit ends the
			// retries early: say so, or "1/4" promises three more.
			tries = strings.TrimSuffix(tries, ")") + ", not retried)"
		}
	}
	fmt.Fprintf(c.w, "%s %-10s FAILED%s after %s: %s\n", c.stamp(), name, tries, took.Round(10*time.Millisecond), msg)
	if retryIn > 0 {
		fmt.Fprintf(c.w, "%s %-10s retrying in %s\n", c.stamp(), name, retryIn)
	}
}

func (c *console) Info(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s %s\n", strings.Repeat(" ", 10), fmt.Sprintf(format, args...))
}
