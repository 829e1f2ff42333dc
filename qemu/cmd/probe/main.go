//go:build linux

// Command probe is the /init of the lab's probe OS (see package
// qemu/probe): the operating system the disk fixtures boot instead of a real
// distribution. It runs as PID 1 and, in order:
//
//  1. mounts /proc, /sys, /dev (devtmpfs) and /run, and prints the start
//     marker with the fixture token and the kernel command line;
//  2. loads the kernel modules listed in /lib/modules/<release>/lunboot.order
//     (virtio networking, iscsi_boot_sysfs and iscsi_ibft);
//  3. prints everything /sys/firmware/ibft holds;
//  4. collects the hand-offs it was given: dracut (netroot=, rd.iscsi.*),
//     initramfs-tools (iscsi_target_*, iscsi_initiator=…), root=iscsi:,
//     lunboot.target= and the iBFT;
//  5. configures the network as the hand-off asks (ip= static, the iBFT NIC's
//     address, or DHCP);
//  6. logs in to each hand-off's target with lunboot's initiator
//     (pkg/iscsi), reads sector 0 of the LUN and logs out;
//  7. prints one LUNBOOT-PROBE-RESULT line of JSON and powers off.
//
// Every stage is bounded, and a watchdog prints whatever was found and
// powers off if the whole run takes longer than two minutes, so a lab test
// never waits on a hung probe. Secrets never reach the console.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/qemu/probe"
)

// watchdog bounds the whole probe run.
const watchdog = 120 * time.Second

// state is the result being built, shared with the watchdog.
type state struct {
	mu   sync.Mutex
	r    probe.Result
	once sync.Once
	out  *os.File
}

func (s *state) logf(format string, args ...any) {
	fmt.Fprintf(s.out, probe.LogPrefix+" "+format+"\n", args...)
}

func (s *state) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.logf("error: %s", msg)
	s.mu.Lock()
	s.r.Errors = append(s.r.Errors, msg)
	s.mu.Unlock()
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "probe: this is the /init of the lab's probe OS and runs as PID 1 in a guest; see qemu/probe")
		os.Exit(2)
	}
	s := &state{out: os.Stdout}
	s.r.Version = probe.ResultVersion
	t := time.AfterFunc(watchdog, func() {
		s.errorf("watchdog: the probe did not finish within %s", watchdog)
		s.finish()
	})
	defer t.Stop()
	run(s)
	s.finish()
}

// finish prints the result line once and powers off.
func (s *state) finish() {
	s.once.Do(func() {
		// Keep kernel messages from splitting the result line on the
		// shared serial console.
		_ = os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0)
		s.mu.Lock()
		s.r.Uptime = uptime()
		line, err := probe.EncodeResult(&s.r)
		s.mu.Unlock()
		if err != nil {
			line = fmt.Sprintf(`%s {"version":%d,"errors":[%q]}`, probe.ResultMarker, probe.ResultVersion, err.Error())
		}
		fmt.Fprintf(s.out, "\n%s\n", line)
		s.out.Sync()
		unix.Sync()
		time.Sleep(200 * time.Millisecond) // let the UART drain
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			fmt.Fprintf(s.out, "%s power off: %v\n", probe.LogPrefix, err)
		}
		select {} // PID 1 must not exit
	})
}

func run(s *state) {
	if err := mountBasics(); err != nil {
		s.errorf("mount: %v", err)
	}
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		_ = unix.Dup2(int(f.Fd()), 1)
		_ = unix.Dup2(int(f.Fd()), 2)
		s.out = f
	}
	raw, _ := os.ReadFile("/proc/cmdline")
	cl := probe.ParseCmdline(strings.TrimSpace(string(raw)))
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])

	s.mu.Lock()
	s.r.Kernel = release
	s.r.Cmdline = cl.Masked()
	s.r.Fixture, _ = cl.Get("lunboot.fixture")
	s.r.Entry, _ = cl.Get("lunboot.entry")
	s.r.Lunboot = cl.Lunboot()
	s.r.Firmware = cl.Firmware()
	s.mu.Unlock()
	if lvl, err := readLockdown(); err != nil {
		s.errorf("lockdown: %v", err)
	} else {
		s.mu.Lock()
		s.r.Lockdown = lvl
		s.mu.Unlock()
		s.logf("kernel lockdown: %q", lvl)
	}
	fmt.Fprintf(s.out, "\n%s fixture=%s entry=%s kernel=%s uptime=%.2fs\n", probe.StartMarker,
		s.r.Fixture, s.r.Entry, release, uptime())
	s.logf("cmdline: %s", s.r.Cmdline)

	loadModules(s, release)
	checkEntropy(s)

	var secrets map[string]string
	ib, secrets, err := probe.ReadIBFT(probe.DefaultIBFTDir)
	switch {
	case err == nil:
		s.mu.Lock()
		s.r.IBFT = ib
		s.mu.Unlock()
		printIBFT(s, ib)
	case err == probe.ErrNoIBFT:
		s.logf("ibft: none (%s absent)", probe.DefaultIBFTDir)
	default:
		s.errorf("ibft: %v", err)
	}

	handoffs := cl.Handoffs()
	var ibNIC *probe.IBFTEntry
	if ib != nil {
		h, nic, err := ib.Handoff(secrets)
		if err != nil {
			s.errorf("ibft hand-off: %v", err)
		} else {
			handoffs = append(handoffs, *h)
			ibNIC = nic
		}
	}
	s.mu.Lock()
	s.r.Handoffs = handoffs
	s.mu.Unlock()
	for _, h := range handoffs {
		s.logf("hand-off %s: portal=%s target=%s lun=%s initiator=%s chap=%s ip=%s warnings=%q",
			h.Source, h.Portal, h.Target, h.LUN, h.Initiator, h.CHAPMode(), h.IP, h.Warnings)
	}
	if len(handoffs) == 0 {
		s.logf("no hand-off: nothing on the command line and no iBFT; the OS could not find its root")
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n := setupNet(ctx, s, cl, ibNIC)
	s.mu.Lock()
	s.r.Net = n
	s.mu.Unlock()
	if n.Error != "" {
		s.errorf("network: %s", n.Error)
	}

	for _, h := range handoffs {
		l := login(ctx, s, h)
		s.mu.Lock()
		s.r.Logins = append(s.r.Logins, l)
		s.mu.Unlock()
	}
}

// checkEntropy warns when the kernel's CRNG is not ready: crypto/rand (DHCP
// transaction IDs, the ISID, CHAP challenges) blocks until it is, which
// under TCG without RDRAND or virtio-rng takes minutes.
func checkEntropy(s *state) {
	b := make([]byte, 1)
	if _, err := unix.Getrandom(b, unix.GRND_NONBLOCK); err == unix.EAGAIN {
		s.logf("warning: the kernel's random pool is not initialised yet; DHCP and login wait for it (give the VM RDRAND or virtio-rng)")
	}
}

func printIBFT(s *state, ib *probe.IBFT) {
	s.logf("ibft: signature=%s oem_id=%s oem_table_id=%s", ib.Signature, ib.OEMID, ib.OEMTableID)
	print := func(name string, attrs map[string]string) {
		keys := make([]string, 0, len(attrs))
		for k := range attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s.logf("ibft: %s/%s = %s", name, k, attrs[k])
		}
	}
	print("initiator", ib.Initiator)
	for _, e := range ib.NICs {
		print(e.Name, e.Attrs)
	}
	for _, e := range ib.Targets {
		print(e.Name, e.Attrs)
	}
}

func uptime() float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	var up float64
	fmt.Sscanf(string(b), "%f", &up)
	return up
}
