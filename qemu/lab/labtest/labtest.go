// Package labtest connects the lab (package qemu/lab) to Go tests: it
// checks the prerequisites through internal/testenv (skip with a reason
// locally, fail under CI=true), ties the lab's life to the test, keeps the
// logs of a failing test and prints where they are, and builds or reuses
// the disk fixtures.
//
// A typical end-to-end test:
//
//	l := labtest.Start(t, lab.Options{Name: "gpt-bls"})
//	fx := labtest.Fixtures(t)
//	disk, _ := fx.Disk(fixtures.GPTBLS)
//	tgt := labtest.Target(t, l)
//	exp, err := tgt.Export(lab.ExportSpec{Images: []string{disk.Path}})
//	...
//	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})
//	vm := labtest.VM(t, l, lab.VMConfig{Kernel: …, Initrd: …, Cmdline: …})
//	res := labtest.ProbeResult(t, vm, 5*time.Minute)
package labtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/probe"
)

// Binaries are the programs a lab runs.
var Binaries = []string{"ip", "dnsmasq", "tgtd", "tgtadm", "qemu-system-x86_64"}

// Require skips (fails under CI) unless the lab can run here: root, the
// binaries, /dev/net/tun.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinaries(t, Binaries...)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Missing(t, "/dev/net/tun is missing (taps need the tun driver)")
	}
}

// Start creates a lab for the test: its logs go to
// $LUNBOOT_OUT/lab-logs/<test>-<time>, it is closed when the test ends,
// and then, if the test failed, the log folder is kept and its files' last
// lines are printed; if it passed the folder is removed unless
// LUNBOOT_KEEP_LOGS=1 or the test called Lab.KeepLogs.
func Start(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	Require(t)
	if opts.Name == "" {
		opts.Name = t.Name()
	}
	if opts.LogDir == "" {
		name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
		opts.LogDir = filepath.Join(testenv.OutDir(), "lab-logs",
			fmt.Sprintf("%s-%s-%d", name, time.Now().Format("20060102-150405"), os.Getpid()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.New(ctx, opts)
	if err != nil {
		t.Fatalf("lab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab.Close: %v", err)
		}
		if t.Failed() {
			t.Logf("lab logs kept in %s", l.LogDir())
			DumpLogs(t, l.LogDir(), 20)
			return
		}
		if why := l.KeptFor(); why != "" {
			t.Logf("lab logs kept in %s: %s", l.LogDir(), why)
			return
		}
		if os.Getenv("LUNBOOT_KEEP_LOGS") == "1" {
			t.Logf("lab logs in %s (LUNBOOT_KEEP_LOGS=1)", l.LogDir())
			return
		}
		_ = os.RemoveAll(l.LogDir())
	})
	return l
}

// DumpLogs prints the last n lines of every file in dir, and lab snapshots
// (Lab.Snapshot) whole.
func DumpLogs(t testing.TB, dir string, n int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("lab logs: %v", err)
		return
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || len(b) == 0 {
			continue
		}
		k := n
		if strings.HasPrefix(name, lab.SnapshotPrefix) {
			k = math.MaxInt // short, and read as a whole
		}
		lines := bootlog.LastLines(strings.ReplaceAll(string(b), "\r", ""), k)
		t.Logf("==> %s (last %d lines) <==\n%s", filepath.Join(dir, name), len(lines), strings.Join(lines, "\n"))
	}
}

// Image returns lunboot's boot image as make image leaves it in
// $LUNBOOT_OUT: the kernel and the initramfs. A missing one skips the test
// (fails it under CI) with the command that builds it.
func Image(t testing.TB) (kernel, initrd string) {
	t.Helper()
	out := testenv.OutDir()
	kernel = testenv.RequireFile(t, filepath.Join(out, "vmlinuz"), "make image")
	initrd = testenv.RequireFile(t, filepath.Join(out, "lunboot.cpio.xz"), "make image")
	return kernel, initrd
}

// Fixtures builds the fixtures into $LUNBOOT_OUT/fixtures, or reuses them
// (a second of work when nothing changed).
func Fixtures(t testing.TB) *fixtures.Set {
	t.Helper()
	testenv.RequireBinaries(t, fixtures.Tools...)
	testenv.RequireFile(t, filepath.Join(testenv.KernelDir(), "boot"), "make deps")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	set, err := fixtures.Build(ctx, fixtures.Options{
		Out:       filepath.Join(testenv.OutDir(), "fixtures"),
		KernelDir: testenv.KernelDir(),
		RepoRoot:  testenv.RepoRoot(),
	})
	if err != nil {
		t.Fatalf("fixtures.Build: %v", err)
	}
	if len(set.Rebuilt) > 0 {
		t.Logf("fixtures rebuilt: %v", set.Rebuilt)
	}
	return set
}

// Target starts tgtd on the lab.
func Target(t testing.TB, l *lab.Lab) *lab.Target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		t.Fatalf("StartTarget: %v", err)
	}
	return tg
}

// LIO starts the lab's LIO target VM, after taking a machine-wide guest
// slot for it (held until the test ends; a boot test's client takes a
// second one). It needs the Debian kernel (make deps) and the go command.
func LIO(t testing.TB, l *lab.Lab, opts lab.LIOOptions) *lab.LIO {
	t.Helper()
	testenv.RequireFile(t, filepath.Join(testenv.KernelDir(), "boot"), "make deps")
	testenv.GuestSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if opts.OnConsole == nil {
		opts.OnConsole = Console(t, "lio")
	}
	start := time.Now()
	tg, err := l.StartLIO(ctx, opts)
	if err != nil {
		t.Fatalf("StartLIO: %v", err)
	}
	t.Logf("LIO target VM up at %s in %s", tg.Portal(), time.Since(start).Round(time.Millisecond))
	KillAtEnd(t, l, tg.VM())
	return tg
}

// DHCP starts dnsmasq on the lab.
func DHCP(t testing.TB, l *lab.Lab, cfg lab.DHCPConfig) *lab.DHCP {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := l.StartDHCP(ctx, cfg)
	if err != nil {
		t.Fatalf("StartDHCP: %v", err)
	}
	return d
}

// VM starts a guest whose console goes to the test log (with -v or
// LUNBOOT_CONSOLE=1; always to the console log file). The guest is killed
// when the (sub)test ends, which frees its tap for the next one.
func VM(t testing.TB, l *lab.Lab, cfg lab.VMConfig) *lab.VM {
	t.Helper()
	if cfg.OnConsole == nil {
		cfg.OnConsole = Console(t, cfg.Name)
	}
	v, err := l.StartVM(context.Background(), cfg)
	if err != nil {
		t.Fatalf("StartVM: %v", err)
	}
	KillAtEnd(t, l, v)
	return v
}

// KillAtEnd kills v when t ends. If t failed while the guest still runs (a
// wait for its console gave up), it first takes the lab's Snapshot: tgtd's
// threads and the guest's connections as they were, which killing QEMU
// would end. The lab's log dump then prints it whole.
func KillAtEnd(t testing.TB, l *lab.Lab, v *lab.VM) {
	t.Cleanup(func() {
		if t.Failed() && !v.Exited() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := l.Snapshot(ctx); err != nil {
				t.Logf("lab snapshot: %v", err)
			}
		}
		v.Kill()
	})
}

// Console returns a console-line callback that logs to t when the test runs
// verbosely (or LUNBOOT_CONSOLE=1), and nothing otherwise. It stops logging
// when the test ends, so late lines from a guest being killed cannot reach
// a finished test.
func Console(t testing.TB, prefix string) func(string) {
	if !testing.Verbose() && os.Getenv("LUNBOOT_CONSOLE") != "1" {
		return nil
	}
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	if prefix != "" {
		prefix += ": "
	}
	return func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf("%s%s", prefix, line)
		}
	}
}

// Expect is vm.Expect with a step timeout, failing the test on error.
func Expect(t testing.TB, vm *lab.VM, d time.Duration, re *regexp.Regexp) *lab.Match {
	t.Helper()
	m, err := vm.ExpectWithin(context.Background(), d, re)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ProbeResult waits (up to d) for the probe OS's result line and decodes it.
func ProbeResult(t testing.TB, vm *lab.VM, d time.Duration) (*probe.Result, *lab.Match) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, m, err := vm.ProbeResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (at +%s)", r.Summary(), m.At.Round(time.Millisecond))
	return r, m
}
