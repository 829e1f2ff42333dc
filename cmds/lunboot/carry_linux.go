package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/kmod"
	"github.com/lunboot/lunboot/pkg/nbd"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Carry-in (lunboot.handoff=carry, docs/handoff.md): the firmware's lunboot
// appends itself to the OS initrd; there, initramfs-tools' local-top hook
// runs `lunboot carry start`, which loads the OS kernel's carried modules
// and starts the daemon (`lunboot carry daemon`, argv[0] "@lunboot") that
// logs in again and serves the LUN as /dev/nbdN until the OS shuts down.
// systemd-shutdown then returns to /run/initramfs/shutdown, a script run by
// a copy of this binary (`lunboot carry-shutdown`), which unmounts the old
// root, has the daemon detach and log out, and powers off or reboots.

func init() {
	register(&command{
		name:    "carry",
		summary: "carry-in: run lunboot's initiator in an OS initrd (start, daemon)",
		run:     runCarry,
	})
	register(&command{
		name:    "carry-shutdown",
		summary: "carry-in: the OS's /run/initramfs/shutdown (unmount, log out, power off)",
		run:     runCarryShutdown,
	})
}

// Bounds of the carry-in steps. The login is retried: the NIC's carrier
// and the target may take a moment after the OS kernel starts.
const (
	carryStartTimeout = 3 * time.Minute
	carryLoginTimeout = 90 * time.Second
	carryLogoutWait   = 90 * time.Second
	// carryPIDFile is in /run/initramfs, the root systemd-shutdown
	// returns to, so /shutdown finds it there as /<name>.
	carryPIDFile = "lunboot-carry.pid"
	// prSetIOFlusher is PR_SET_IO_FLUSHER (Linux 5.6,
	// include/uapi/linux/prctl.h): the task and its children allocate
	// memory without recursing into I/O (PF_MEMALLOC_NOIO) and are not
	// throttled as dirty-page writers (PF_LOCAL_THROTTLE), as a process
	// in the block I/O path must be.
	prSetIOFlusher = 57
)

func runCarry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("carry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("settings", "/"+handoff.CarrySettingsPath, "the carry-in settings the firmware's lunboot wrote")
	readyFD := fs.Int("ready-fd", -1, "daemon: the file descriptor to report readiness on")
	fs.Usage = usageFunc(fs, "carry [options] start|daemon",
		"Carry-in (lunboot.handoff=carry): run in an OS initrd that lunboot extended.\n"+
			"start loads the carried OS kernel modules, starts the daemon and returns once\n"+
			"the LUN is a block device; daemon (started by start as \"@lunboot\") configures\n"+
			"the boot NIC, logs in and serves the LUN over NBD until SIGTERM.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "start" && pos[0] != "daemon" {
		fs.Usage()
		return fmt.Errorf("%w: carry takes start or daemon", errUsage)
	}
	b, err := os.ReadFile(*path)
	if err != nil {
		return fmt.Errorf("carry: %w", err)
	}
	s, err := handoff.ParseCarrySettings(b)
	if err != nil {
		return err
	}
	if pos[0] == "start" {
		return carryStart(ctx, s, *path, stdout)
	}
	return carryDaemon(ctx, s, *readyFD)
}

// kmsgLog logs to the kernel's log (/dev/kmsg), which reaches the console
// and, after the switch to the real root, the OS's journal; stderr when
// /dev/kmsg cannot be opened.
func kmsgLog() *slog.Logger {
	var w io.Writer = os.Stderr
	if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
		w = &kmsgWriter{f: f}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// kmsgWriter writes each record as one kernel log line at notice level
// (5; warnings at 4, errors at 3), tagged "lunboot-carry:" (the kernel's
// /dev/kmsg takes a "<level>" prefix per write, Documentation/ABI/testing/dev-kmsg).
type kmsgWriter struct{ f *os.File }

func (k *kmsgWriter) Write(b []byte) (int, error) {
	lvl := "5"
	switch {
	case strings.Contains(string(b), "level=ERROR"):
		lvl = "3"
	case strings.Contains(string(b), "level=WARN"):
		lvl = "4"
	}
	if _, err := k.f.Write([]byte("<" + lvl + ">lunboot-carry: " + strings.TrimRight(string(b), "\n"))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// carryStart runs in the OS initrd's local-top hook: it loads the carried
// modules, starts the daemon and waits until the LUN is a block device.
func carryStart(ctx context.Context, s *handoff.CarrySettings, settingsPath string, stdout io.Writer) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, carryStartTimeout)
	defer cancel()
	log := kmsgLog()
	root := filepath.Dir(settingsPath) // /lunboot: lib/modules/<release> below it
	results, err := kmod.LoadAll(ctx, log, kmod.Options{Root: root, Release: s.Release, Params: map[string]string{}})
	if err != nil {
		return fmt.Errorf("carry: load the OS kernel's modules: %w", err)
	}
	var failed []string
	for _, r := range results {
		if !r.Status.OK() {
			failed = append(failed, r.Name+" ("+r.Detail()+")")
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("carry: modules failed: %s", strings.Join(failed, ", "))
	}
	fmt.Fprintf(stdout, "lunboot carry-in: modules %s\n", kmod.Summarize(results))

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	pid, err := forkDaemon(settingsPath, pw)
	pw.Close()
	if err != nil {
		return fmt.Errorf("carry: start the daemon: %w", err)
	}
	if err := leaveUnitCgroup(pid); err != nil {
		fmt.Fprintf(stdout, "lunboot carry-in: warning: %v: a stop of the unit that started it may kill the daemon\n", err)
	}
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(pr).ReadString('\n')
		ch <- answer{strings.TrimSpace(line), err}
	}()
	select {
	case <-ctx.Done():
		syscall.Kill(pid, syscall.SIGKILL)
		return fmt.Errorf("carry: the daemon (pid %d) was not ready after %s", pid, carryStartTimeout)
	case a := <-ch:
		if ready, ok := strings.CutPrefix(a.line, "ready "); ok {
			fmt.Fprintf(stdout, "lunboot carry-in: %s, daemon @lunboot pid %d, in %s\n", ready, pid, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		if a.line != "" {
			return fmt.Errorf("carry: %s", strings.TrimPrefix(a.line, "error "))
		}
		return fmt.Errorf("carry: the daemon (pid %d) exited before it was ready: %v", pid, a.err)
	}
}

// leaveUnitCgroup moves the daemon into the root cgroup (cgroup v2,
// Documentation/admin-guide/cgroup-v2.rst: writing a PID to cgroup.procs
// migrates the whole process) when it was started in another: in dracut's
// systemd initrd it starts in lunboot-carry.service's cgroup, and a unit
// that is stopped kills what is left in its cgroup — after switch-root the
// OS's systemd knows that unit only by name, with the default KillMode.
// In the root cgroup it is where initramfs-tools' hook starts it: no
// unit's stop reaches it. Without the unified hierarchy (initramfs-tools'
// /init mounts none) there is nothing to leave.
func leaveUnitCgroup(pid int) error {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || strings.TrimSpace(string(self)) == "0::/" || !strings.HasPrefix(string(self), "0::/") {
		return nil
	}
	if err := os.WriteFile("/sys/fs/cgroup/cgroup.procs", []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("move the daemon (pid %d) out of cgroup %s into the root cgroup: %w", pid, strings.TrimSpace(strings.TrimPrefix(string(self), "0::")), err)
	}
	return nil
}

// forkDaemon starts `lunboot carry daemon` from this binary with argv[0]
// "@lunboot" (systemd.io/ROOT_STORAGE_DAEMONS: systemd-shutdown's killing
// spree spares a root process whose argv[0] starts with '@'), in its own
// session, reporting on ready. PR_SET_IO_FLUSHER is set on the forking
// thread: the flag is per task, and a child inherits it across fork and
// execve (prctl(2)), so every thread of the daemon, all cloned from its
// first, carries it.
func forkDaemon(settingsPath string, ready *os.File) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(prSetIOFlusher, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "lunboot carry-in: warning: PR_SET_IO_FLUSHER: %v (kernel before 5.6?)\n", err)
	}
	defer unix.Prctl(prSetIOFlusher, 0, 0, 0, 0)
	null, err := os.Open("/dev/null")
	if err != nil {
		return 0, err
	}
	defer null.Close()
	// The u-root busybox binary dispatches on argv[0], and on argv[1]
	// when argv[0] is no command it knows ("@lunboot"): /proc/<pid>/cmdline
	// keeps "@lunboot" for systemd.
	argv := []string{"@lunboot", "lunboot", "carry", "--settings", settingsPath, "--ready-fd", "3", "daemon"}
	return syscall.ForkExec("/proc/self/exe", argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/sbin:/bin:/usr/sbin:/usr/bin"},
		Files: []uintptr{null.Fd(), os.Stderr.Fd(), os.Stderr.Fd(), ready.Fd()},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
}

// carryDaemon logs in, serves the LUN over NBD and keeps it served until
// SIGTERM (from /shutdown, after the root is unmounted): then it flushes,
// detaches and logs out. Connection drops are handled by the session,
// which logs in again and reissues what was in flight (pkg/iscsi).
func carryDaemon(ctx context.Context, s *handoff.CarrySettings, readyFD int) (err error) {
	log := kmsgLog()
	var ready *os.File
	if readyFD >= 0 {
		ready = os.NewFile(uintptr(readyFD), "ready")
	}
	report := func(line string) {
		if ready != nil {
			fmt.Fprintln(ready, line)
			ready.Close()
			ready = nil
		}
	}
	defer func() {
		if err != nil {
			log.Error("carry-in daemon failed", "err", err)
			report("error " + err.Error())
		}
	}()
	// Locked memory and an OOM score as open-iscsi's iscsid sets them
	// (usr/iscsid.c: mlockall(MCL_CURRENT | MCL_FUTURE), oom_adjust()
	// writing OOM_SCORE_ADJ_MIN): the root's I/O must not wait for this
	// process to be paged in, nor lose it to the OOM killer. MCL_ONFAULT
	// locks pages as they are touched instead of populating the Go
	// runtime's whole reserved heap arenas at once.
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT); err != nil {
		log.Warn("mlockall", "err", err)
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("-1000\n"), 0); err != nil {
		log.Warn("oom_score_adj", "err", err)
	}
	// The initrd's console session ends at the switch to the real root.
	signal.Ignore(syscall.SIGHUP)

	start := time.Now()
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return fmt.Errorf("settings mac %q: %w", s.MAC, err)
	}
	addr, err := netip.ParsePrefix(s.Address)
	if err != nil {
		return fmt.Errorf("settings address %q: %w", s.Address, err)
	}
	st := &netconf.Static{Address: addr, MTU: s.MTU}
	if s.Gateway != "" {
		if st.Gateway, err = netip.ParseAddr(s.Gateway); err != nil {
			return fmt.Errorf("settings gateway %q: %w", s.Gateway, err)
		}
	}
	nctx, cancel := context.WithTimeout(ctx, carryLoginTimeout)
	defer cancel()
	var nc *netconf.Config
	for {
		// The OS's udev may still be loading the NIC's driver.
		nc, err = netconf.Configure(nctx, netconf.Options{Select: netconf.Selector{BootIF: mac}, Static: st, ResolvConf: "-", Logger: log})
		if err == nil || nctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("configure the boot NIC %s: %w", s.MAC, err)
	}
	// MaxReissues stays 0: this session serves the running OS's root, where
	// a failed command is EIO and ext4 remounts read-only, so a command is
	// re-issued across every reconnect until RecoveryTimeout (60 s), not once
	// as at boot (a link flapping twice must not cost the root).
	ic := iscsi.Config{Portal: s.Portal, TargetName: s.Target, InitiatorName: s.Initiator, Logger: log}
	if s.ISID != "" {
		b, err := hex.DecodeString(s.ISID)
		if err != nil || len(b) != len(ic.ISID) {
			return fmt.Errorf("settings isid %q: want 12 hex digits", s.ISID)
		}
		copy(ic.ISID[:], b)
	}
	for _, d := range []struct {
		in  string
		out *iscsi.Digest
	}{{s.HeaderDigest, &ic.HeaderDigest}, {s.DataDigest, &ic.DataDigest}} {
		for p := iscsi.DigestNone; p <= iscsi.DigestRequire; p++ {
			if d.in == p.String() {
				*d.out = p
			}
		}
	}
	if s.CHAPUser != "" {
		ic.CHAP = &iscsi.CHAP{Username: s.CHAPUser, Secret: s.CHAPSecret, TargetUsername: s.CHAPTargetUser, TargetSecret: s.CHAPTargetSecret}
	}
	var sess *iscsi.Session
	for {
		sess, err = iscsi.Login(nctx, ic)
		if err == nil || nctx.Err() != nil {
			break
		}
		log.Warn("login failed, retrying", "target", s.Target, "portal", s.Portal, "err", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		return fmt.Errorf("login to %s at %s: %w", s.Target, s.Portal, err)
	}
	defer func() {
		lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sess.Logout(lctx); err != nil {
			log.Warn("logout", "err", err)
			sess.Close()
			return
		}
		log.Info("logged out", "target", s.Target)
	}()
	disk, closeDisk, err := openServed(nctx, log, sess, s, scsi.DiskOptions{Logger: log, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer closeDisk()
	dev, err := nbd.Attach(nctx, disk, nbd.AttachOptions{Index: s.NBD, Backend: "lunboot:" + s.Target, Logger: log})
	if err != nil {
		return fmt.Errorf("attach LUN %d of %s as /dev/nbd%d: %w", s.LUN, s.Target, s.NBD, err)
	}
	if err := prepareShutdown(); err != nil {
		// The OS runs without it; its shutdown leaves the session to
		// the target's timeout. Said, not fatal.
		log.Warn("preparing /run/initramfs/shutdown", "err", err)
	}
	si := sess.Info()
	log.Info("serving the OS root", "device", dev.Path(), "partitions", strings.Join(dev.Partitions(), ","),
		"target", s.Target, "lun", s.LUN, "portal", si.Portal, "nic", nc.Link.Name, "isid", si.ISID.String(),
		"pid", os.Getpid(), "took", time.Since(start).Round(10*time.Millisecond))
	report(fmt.Sprintf("ready %s (%s) LUN %d of %s via %s", dev.Path(), strings.Join(dev.Partitions(), ", "), s.LUN, s.Target, nc.Link.Name))

	select {
	case <-ctx.Done():
		log.Info("asked to stop: detaching and logging out", "device", dev.Path())
	case <-dev.Done():
		if err := dev.Err(); err != nil {
			return fmt.Errorf("%s dropped by the kernel: %w", dev.Path(), err)
		}
		log.Info("detached from outside", "device", dev.Path())
		return nil
	}
	dctx, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	if err := dev.Detach(dctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("detach", "device", dev.Path(), "err", err)
	}
	return nil
}

// prepareShutdown fills /run/initramfs for systemd-shutdown, which returns
// there (pivot, old root at /oldroot) and execs /shutdown when it exists
// (systemd's src/shutdown/shutdown.c; dracut provides one, initramfs-tools
// none): a copy of this binary, a script that runs it as carry-shutdown,
// and the daemon's pid. initramfs-tools moves /run onto the real root, so
// what is written now is there at shutdown.
func prepareShutdown() error {
	dir := "/run/initramfs"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// initramfs-tools mounts /run noexec, and systemd-shutdown requires
	// access("/run/initramfs/shutdown", X_OK): a tmpfs of its own, which
	// moves onto the real root with /run.
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=64m"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "oldroot"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer exe.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "lunboot"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, exe); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, carryPIDFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	// The kernel runs "/lunboot carry-shutdown /shutdown <verb> …".
	return os.WriteFile(filepath.Join(dir, "shutdown"), []byte("#!/lunboot carry-shutdown\n"), 0o755)
}

// runCarryShutdown is /shutdown in /run/initramfs, exec'd by
// systemd-shutdown as PID 1 with the verb ("reboot", "poweroff", "halt",
// "kexec") after it has killed every process but the '@' ones and
// remounted the root read-only. It unmounts the old root, asks the daemon
// to detach and log out, waits for it, and does what the verb says. It
// never stops on an error: a shutdown must not hang.
func runCarryShutdown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("carry-shutdown", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// What systemd-shutdown passes on (src/core/main.c, the shutdown
	// command line): accepted and ignored.
	for _, n := range []string{"log-level", "log-target", "exit-code", "timeout"} {
		fs.String(n, "", "passed on by systemd-shutdown; ignored")
	}
	for _, n := range []string{"log-color", "log-location", "log-time"} {
		fs.Bool(n, false, "passed on by systemd-shutdown; ignored")
	}
	fs.Usage = usageFunc(fs, "carry-shutdown [options] /shutdown reboot|poweroff|halt|kexec",
		"Run by systemd-shutdown as /run/initramfs/shutdown in an OS booted by carry-in:\n"+
			"unmounts /oldroot, has the carry-in daemon detach and log out, then does the verb.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	verb := "poweroff"
	for _, a := range pos {
		switch a {
		case "reboot", "poweroff", "halt", "kexec":
			verb = a
		}
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("%w: carry-shutdown runs as PID 1 from /run/initramfs (systemd-shutdown); this is pid %d", errUsage, os.Getpid())
	}
	if _, err := os.Stat("/proc/self/mountinfo"); err != nil {
		os.MkdirAll("/proc", 0o755)
		unix.Mount("proc", "/proc", "proc", 0, "")
	}
	if _, err := os.Stat("/dev/kmsg"); err != nil {
		os.MkdirAll("/dev", 0o755)
		unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	}
	log := kmsgLog()
	log.Info("shutdown: unmounting the old root", "verb", verb)
	for _, m := range oldRootMounts() {
		if err := unix.Unmount(m, 0); err != nil {
			if err2 := unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err2 != nil {
				log.Warn("shutdown: cannot unmount or remount read-only", "mount", m, "err", err, "remount", err2)
			} else {
				log.Warn("shutdown: busy, remounted read-only", "mount", m, "err", err)
			}
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	unix.Sync()
	if b, err := os.ReadFile("/" + carryPIDFile); err != nil {
		log.Warn("shutdown: no daemon pid", "err", err)
	} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			log.Warn("shutdown: signalling the daemon", "pid", pid, "err", err)
		}
		deadline := time.Now().Add(carryLogoutWait)
		for {
			var ws unix.WaitStatus
			if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p == pid || syscall.Kill(pid, 0) == syscall.ESRCH {
				log.Info("shutdown: the daemon has detached and logged out", "pid", pid)
				break
			}
			if time.Now().After(deadline) {
				log.Warn("shutdown: the daemon did not finish; going on", "pid", pid, "waited", carryLogoutWait)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	unix.Sync()
	cmd := map[string]int{"reboot": unix.LINUX_REBOOT_CMD_RESTART, "poweroff": unix.LINUX_REBOOT_CMD_POWER_OFF,
		"halt": unix.LINUX_REBOOT_CMD_HALT, "kexec": unix.LINUX_REBOOT_CMD_KEXEC}[verb]
	log.Info("shutdown: " + verb)
	return unix.Reboot(cmd)
}

// oldRootMounts lists the mount points under /oldroot, deepest first.
func oldRootMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{"/oldroot"}
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == "/oldroot" || strings.HasPrefix(fields[4], "/oldroot/")) {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
