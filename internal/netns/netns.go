// Package netns is the one network-namespace harness of the project's
// tests and lab: it names, creates, wires and removes the namespaces that
// hold the lab's bridge and taps (qemu/lab) and the veth pairs of the
// DHCP client tests (pkg/netconf).
//
// A namespace made here starts with only its loopback: no link to the
// host's namespace and no route out, so whatever runs in it (dnsmasq, tgtd,
// QEMU, a DHCP client) can only reach what the harness wires in. Its name,
// lunboot-<pid>-<seq>-<label>, carries the creator's process ID, so that
// SweepStale can remove what a killed test binary, whose cleanups never
// ran, left behind. Removal first kills every process inside: a process
// still inside keeps the namespace, and its interfaces, alive after
// `ip netns delete`.
//
// Every command runs through a Harness's Runner, which the lab points at
// its command log.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace the harness creates.
const Prefix = "lunboot-"

var namePattern = regexp.MustCompile(`^` + Prefix + `([0-9]+)-[0-9]+`)

var seq atomic.Int32

// NewName returns a namespace name unique to this process,
// lunboot-<pid>-<seq>-<label>, and its sequence number (unique within the
// process, from 1).
func NewName(label string) (string, int) {
	n := int(seq.Add(1))
	return fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), n, label), n
}

// OwnerGone reports whether name (of a namespace, or of anything named
// like one) was made by a process that no longer exists.
func OwnerGone(name string) bool { return DeadOwner(namePattern, name) }

// DeadOwner reports whether re's first group in name is the ID of a
// process that no longer exists (and is not this one).
func DeadOwner(re *regexp.Regexp, name string) bool {
	m := re.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid == os.Getpid() {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err != nil && !errors.Is(err, syscall.EPERM)
}

// CommandTimeout bounds every command the default Runner runs.
const CommandTimeout = 30 * time.Second

// Runner runs a short command to its end and returns its combined output;
// its error names the command.
type Runner func(ctx context.Context, argv ...string) (string, error)

// Run is the default Runner: bounded by CommandTimeout, killed with the
// test binary (PDEATHSIG).
func Run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (gave up after %s)", ctx.Err(), CommandTimeout)
		}
		return text, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, text)
	}
	return text, nil
}

// Harness creates and removes namespaces and their links.
type Harness struct {
	// Run runs each command (Run when nil).
	Run Runner
	// Logf receives notes: stale namespaces removed, stragglers killed
	// (nil drops them).
	Logf func(format string, args ...any)
}

func (h Harness) run(ctx context.Context, argv ...string) (string, error) {
	if h.Run == nil {
		return Run(ctx, argv...)
	}
	return h.Run(ctx, argv...)
}

func (h Harness) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

func (h Harness) ip(ctx context.Context, args ...string) error {
	_, err := h.run(ctx, append([]string{"ip"}, args...)...)
	return err
}

// Add creates namespace ns with its loopback up and nothing else.
func (h Harness) Add(ctx context.Context, ns string) error {
	if err := h.ip(ctx, "netns", "add", ns); err != nil {
		return fmt.Errorf("netns: add %s: %w", ns, err)
	}
	if err := h.ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("netns: %s: loopback: %w", ns, err)
	}
	return nil
}

// Bridge is a bridge inside a namespace.
type Bridge struct {
	Name string
	// Addrs are the bridge's own addresses (IPv6 ones without duplicate
	// address detection, so they are usable at once).
	Addrs []netip.Prefix
}

// AddBridge creates br in ns and sets it up. Its forward delay is 0, so a
// port forwards as soon as it is up (QEMU opening its tap); STP stays off
// (the default).
func (h Harness) AddBridge(ctx context.Context, ns string, br Bridge) error {
	steps := [][]string{{"-n", ns, "link", "add", br.Name, "type", "bridge", "forward_delay", "0"}}
	for _, a := range br.Addrs {
		s := []string{"-n", ns, "addr", "add", a.String(), "dev", br.Name}
		if a.Addr().Is6() {
			s = append(s, "nodad")
		}
		steps = append(steps, s)
	}
	steps = append(steps, []string{"-n", ns, "link", "set", br.Name, "up"})
	for _, s := range steps {
		if err := h.ip(ctx, s...); err != nil {
			return fmt.Errorf("netns: %s: bridge %s: %w", ns, br.Name, err)
		}
	}
	return nil
}

// AddTap creates tap interface name in ns, makes it a port of bridge and
// sets it up. A QEMU started in ns plugs a NIC into it.
func (h Harness) AddTap(ctx context.Context, ns, name, bridge string) error {
	for _, s := range [][]string{
		{"-n", ns, "tuntap", "add", name, "mode", "tap"},
		{"-n", ns, "link", "set", name, "master", bridge, "up"},
	} {
		if err := h.ip(ctx, s...); err != nil {
			return fmt.Errorf("netns: %s: tap %s: %w", ns, name, err)
		}
	}
	return nil
}

// End is one end of a veth pair.
type End struct {
	NS, Name string
	// MAC is the end's address (the kernel picks one when nil).
	MAC net.HardwareAddr
	// Master is a bridge in NS the end becomes a port of.
	Master string
	// Up sets the end up; one left down is for the code under test to
	// raise, or, on the far end, gives the near end no carrier.
	Up bool
}

// AddVeth creates the veth pair a–b, each end directly in its namespace.
func (h Harness) AddVeth(ctx context.Context, a, b End) error {
	add := []string{"-n", a.NS, "link", "add", a.Name}
	if a.MAC != nil {
		add = append(add, "address", a.MAC.String())
	}
	add = append(add, "type", "veth", "peer", "name", b.Name)
	if b.MAC != nil {
		add = append(add, "address", b.MAC.String())
	}
	add = append(add, "netns", b.NS)
	if err := h.ip(ctx, add...); err != nil {
		return fmt.Errorf("netns: veth %s/%s–%s/%s: %w", a.NS, a.Name, b.NS, b.Name, err)
	}
	for _, e := range []End{a, b} {
		s := []string{"-n", e.NS, "link", "set", e.Name}
		if e.Master != "" {
			s = append(s, "master", e.Master)
		}
		if e.Up {
			s = append(s, "up")
		}
		if len(s) == 5 {
			continue
		}
		if err := h.ip(ctx, s...); err != nil {
			return fmt.Errorf("netns: veth end %s/%s: %w", e.NS, e.Name, err)
		}
	}
	return nil
}

// List returns the named network namespaces (/run/netns).
func List() ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns: list: %w", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// Delete kills every process inside ns and deletes it, which also deletes
// the bridges, taps and veth ends inside (a veth pair goes with either
// end).
func (h Harness) Delete(ctx context.Context, ns string) error {
	if err := h.killInside(ctx, ns); err != nil {
		return err
	}
	if err := h.ip(ctx, "netns", "delete", ns); err != nil {
		return fmt.Errorf("netns: delete %s: %w", ns, err)
	}
	return nil
}

// DeleteMatching deletes, as Delete does, every namespace whose name match
// accepts, and returns what could not be undone.
func (h Harness) DeleteMatching(ctx context.Context, match func(string) bool) error {
	names, err := List()
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if match(ns) {
			if err := h.Delete(ctx, ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// SweepStale deletes the namespaces (and the processes in them) whose
// creator no longer exists.
func (h Harness) SweepStale(ctx context.Context) error {
	return h.DeleteMatching(ctx, func(ns string) bool {
		dead := OwnerGone(ns)
		if dead {
			h.logf("# removing stale namespace %s (its process is gone)", ns)
		}
		return dead
	})
}

// killInside SIGKILLs every process in ns and waits, bounded, until none
// is left.
func (h Harness) killInside(ctx context.Context, ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := h.run(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return fmt.Errorf("netns: %w", err)
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: processes %v still inside namespace %s after SIGKILL", pids, ns)
		}
		for _, s := range pids {
			if pid, err := strconv.Atoi(s); err == nil {
				h.logf("  killing straggler pid %d (%s) in %s", pid, procName(pid), ns)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns: emptying %s: %w", ns, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// Exec returns argv prefixed to run inside ns (`ip netns exec`), which
// also mounts a /sys that shows ns's links: for a whole process in a
// namespace, as in a real boot.
func Exec(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// Do runs fn on an OS thread switched into ns. Sockets fn opens belong to
// ns for their whole life, wherever the goroutines using them later run;
// other threads, and /sys, stay in the caller's namespace. If the thread
// cannot be switched back it is discarded with its goroutine, never
// reused.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked and the runtime retires the thread.
		errc <- ferr
	}()
	return <-errc
}
