// Package vmtest runs a Go test inside a QEMU guest booted from the Debian
// kernel that `make deps` unpacks, for tests that need kernel drivers the
// host lacks (NBD, kexec, iSCSI…).
//
// A test calls Run with the body that must run in the guest:
//
//	func TestKernelThing(t *testing.T) {
//		vmtest.Run(t, vmtest.Options{Modules: []string{"nbd"}}, func(t *testing.T) {
//			// runs as root in the guest, /dev/nbd* present
//		})
//	}
//
// On the host, Run builds the package's test binary (CGO_ENABLED=0), packs
// it with a small init (internal/vmtest/guestinit) and the requested modules
// (dependencies resolved by pkg/kmod/depmod) into an initramfs,
// boots QEMU through internal/qemuvm (-accel tcg, serial console, no
// network) in one of the machine's guest slots (testenv.GuestSlot), streams the console
// into the test log and fails the test if the guest's run fails or does not
// finish in time. In the guest the same test function runs again, with
// -test.run selecting just it; there Run calls the body.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/proc"
	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/vmtest/guest"
)

// Defaults for Options.
const (
	DefaultMemory  = "1G"
	DefaultCPUs    = 2
	DefaultTimeout = 3 * time.Minute
)

// Options describes the guest.
type Options struct {
	// Modules are kernel modules to load before the test runs, by name
	// ("nbd", "virtio_net"); their dependencies are added and loaded first.
	Modules []string
	// ModuleParams holds parameters per module name ("nbd": "nbds_max=4").
	ModuleParams map[string]string
	// Files copies host files or directories into the guest: guest path →
	// host path.
	Files map[string]string
	// Memory is QEMU's -m (DefaultMemory when empty).
	Memory string
	// CPUs is QEMU's -smp (DefaultCPUs when zero).
	CPUs int
	// Timeout bounds the whole guest run, boot included (DefaultTimeout
	// when zero); the guest's -test.timeout is set a little shorter so a
	// hung test prints its goroutines before QEMU is killed.
	Timeout time.Duration
	// Cmdline is appended to the kernel command line.
	Cmdline string
	// TestArgs are appended to the guest test binary's arguments.
	TestArgs []string
	// Env is added to the guest test's environment ("KEY=value").
	Env []string
	// KernelDir is an unpacked kernel package with boot/vmlinuz-<ver> and
	// lib/modules/<ver> (testenv.KernelDir() when empty).
	KernelDir string
	// QEMU names the emulator (qemu-system-x86_64 when empty).
	QEMU string
}

// InGuest reports whether the test binary runs inside a vmtest guest.
func InGuest() bool { return os.Getenv(guest.EnvGuest) == "1" }

// Run runs fn in a guest. In the guest it just calls fn(t). On the host it
// boots the guest, runs the calling test there, and fails t if the guest's
// run fails; it skips (or, under CI, fails) through testenv when QEMU, the
// kernel or the Go tool is missing.
func Run(t *testing.T, o Options, fn func(t *testing.T)) {
	t.Helper()
	if InGuest() {
		fn(t)
		return
	}
	if testing.Short() {
		t.Skip("skipping QEMU guest run in -short mode")
	}
	runHost(t, o)
}

func (o Options) withDefaults() Options {
	if o.Memory == "" {
		o.Memory = DefaultMemory
	}
	if o.CPUs <= 0 {
		o.CPUs = DefaultCPUs
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KernelDir == "" {
		o.KernelDir = testenv.KernelDir()
	}
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
	return o
}

func runHost(t *testing.T, o Options) {
	t.Helper()
	testenv.GuestSlot(t)
	res := runGuest(t, o, t.Name())
	switch {
	case res.timedOut:
		t.Fatalf("vmtest: guest did not finish within %v; QEMU killed", res.timeout)
	case !res.haveStatus:
		t.Fatalf("vmtest: guest ended without reporting an exit status (kernel panic or init failure? see the console above): qemu: %v %s", res.err, res.stderr)
	case res.status != 0:
		t.Errorf("vmtest: %s failed in the guest (exit status %d; its output is above)", t.Name(), res.status)
	default:
		t.Logf("vmtest: guest run passed in %v", res.elapsed.Round(time.Millisecond))
	}
}

// runGuest boots a guest that runs the test called name and returns how it
// ended. It fails t only when the guest cannot be prepared.
func runGuest(t *testing.T, o Options, name string) bootResult {
	t.Helper()
	o = o.withDefaults()
	qemu := testenv.RequireBinaries(t, o.QEMU)[0]
	kernel, modDir, err := findKernel(o.KernelDir)
	if err != nil {
		testenv.Missing(t, err.Error()+" (unpacked by `make deps`)")
	}
	goTool := findGo()
	if goTool == "" {
		testenv.Missing(t, "the go command is needed to build the guest binaries")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	start := time.Now()
	testBin, err := buildTestBinary(ctx, goTool, dir)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	initBin := filepath.Join(dir, "init")
	if err := goBuild(ctx, goTool, "build", "-o", initBin, "github.com/lunboot/lunboot/internal/vmtest/guestinit"); err != nil {
		t.Fatalf("vmtest: build guest init: %v", err)
	}
	mods, err := resolveModules(modDir, o.Modules)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}

	cfg := guest.Config{
		Command: append([]string{"/vmtest/test", "-test.run", runPattern(name), "-test.v", "-test.count=1",
			"-test.timeout", guestTimeout(o.Timeout).String()}, o.TestArgs...),
		Dir: "/tmp",
		Env: o.Env,
	}
	entries := []entry{
		{Name: "init", Host: initBin, Mode: 0o755},
		{Name: "vmtest/test", Host: testBin, Mode: 0o755},
	}
	for _, m := range mods {
		p := "/vmtest/modules/" + m.Name + ".ko"
		entries = append(entries, entry{Name: p, Host: m.Path})
		cfg.Modules = append(cfg.Modules, guest.Module{Name: m.Name, Path: p, Params: o.ModuleParams[m.Name]})
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	entries = append(entries, entry{Name: guest.ConfigPath, Data: cfgJSON})
	extra, err := expandFiles(o.Files)
	if err != nil {
		t.Fatal(err)
	}
	entries = append(entries, extra...)
	initrd := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(initrd, entries); err != nil {
		t.Fatalf("vmtest: write initramfs: %v", err)
	}
	t.Logf("vmtest: guest prepared in %v (kernel %s, modules %v)", time.Since(start).Round(time.Millisecond), filepath.Base(kernel), moduleNames(mods))

	res := boot(t, qemuConfig(o, qemu, kernel, initrd), o.Timeout)
	res.timeout = o.Timeout
	return res
}

// guestTimeout leaves the host time to collect the guest's panic output.
func guestTimeout(total time.Duration) time.Duration {
	return max(total-20*time.Second, total/2)
}

// runPattern selects exactly the named (sub)test: -test.run splits its
// pattern at unbracketed slashes, one regexp per level.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// qemuConfig describes the guest to the project's QEMU starter
// (internal/qemuvm): TCG, serial console on stdout, no network.
func qemuConfig(o Options, qemu, kernel, initrd string) qemuvm.Config {
	// no_timer_check: the kernel checks at boot that the timer interrupt
	// arrives through the IO-APIC within a few ticks (check_timer,
	// arch/x86/kernel/apic/io_apic.c) and panics if not ("IO-APIC + timer
	// doesn't work!"); an emulated CPU on a loaded host sometimes misses
	// that window although the timer works.
	cmdline := "console=ttyS0 panic=-1 quiet no_timer_check"
	if o.Cmdline != "" {
		cmdline += " " + o.Cmdline
	}
	return qemuvm.Config{
		Binary:  qemu,
		Memory:  o.Memory,
		CPUs:    o.CPUs,
		Kernel:  kernel,
		Initrd:  initrd,
		Cmdline: cmdline,
	}
}

// findKernel returns boot/vmlinuz-<ver> and lib/modules/<ver> of an unpacked
// kernel package.
func findKernel(dir string) (kernel, modDir string, err error) {
	ks, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(ks) == 0 {
		return "", "", fmt.Errorf("no kernel at %s/boot/vmlinuz-*", dir)
	}
	sort.Strings(ks)
	kernel = ks[len(ks)-1]
	ver := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	modDir = filepath.Join(dir, "lib", "modules", ver)
	if st, err := os.Stat(modDir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("no modules for kernel %s at %s", ver, modDir)
	}
	return kernel, modDir, nil
}

func findGo() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); isFile(p) {
		return p
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// guestEnv is the build environment of guest binaries: static, x86-64 at
// the baseline level (TCG's CPU need not have the host's extensions).
var guestEnv = []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1"}

func goBuild(ctx context.Context, goTool string, args ...string) error {
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Env = append(os.Environ(), guestEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// buildTestBinary returns a test binary of the current package that runs in
// the guest: the running one when it already fits (static linux/amd64 at the
// baseline level), else one built with `go test -c` in the package
// directory (a test's working directory).
func buildTestBinary(ctx context.Context, goTool, dir string) (string, error) {
	if exe, err := os.Executable(); err == nil && guestReady(exe) {
		return exe, nil
	}
	out := filepath.Join(dir, "test")
	if err := goBuild(ctx, goTool, "test", "-c", "-o", out, "."); err != nil {
		return "", fmt.Errorf("build the test binary for the guest: %w", err)
	}
	return out, nil
}

// guestReady reports whether the binary at path runs in the guest as is.
func guestReady(path string) bool {
	ef, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 {
		return false
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return false // dynamically linked: the guest has no libc
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "GOAMD64" && s.Value != "v1" {
			return false
		}
	}
	return true
}

type bootResult struct {
	status     int
	haveStatus bool
	timedOut   bool
	err        error
	stderr     string
	elapsed    time.Duration
	timeout    time.Duration
}

// boot runs QEMU, logs each console line, and returns how the guest ended.
func boot(t *testing.T, cfg qemuvm.Config, timeout time.Duration) bootResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stderr bytes.Buffer
	pr, pw := io.Pipe()
	start := time.Now()
	p, err := qemuvm.Start(cfg, proc.IO{Stdout: pw, Stderr: &limitedWriter{w: &stderr, n: 64 << 10}})
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop(0)
		case <-p.Done():
		}
	}()
	go func() {
		// Done follows the end of os/exec's copying into pw.
		<-p.Done()
		pw.Close()
	}()

	var res bootResult
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		readLines(pr, lines)
	}()
	for line := range lines {
		t.Log("guest: " + line)
		if code, ok := guest.ParseStatusLine(line); ok && !res.haveStatus {
			res.status, res.haveStatus = code, true
			// The init powers off next; give it a moment, then kill.
			kill := time.AfterFunc(10*time.Second, cancel)
			defer kill.Stop()
		}
	}
	<-p.Done()
	res.err = p.Err()
	res.elapsed = time.Since(start)
	res.stderr = strings.TrimSpace(stderr.String())
	if !res.haveStatus && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.timedOut = true
	}
	return res
}

// readLines sends each line of r without its line ending; lines longer
// than 64 KiB are split.
func readLines(r io.Reader, out chan<- string) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out <- strings.TrimRight(string(line), "\r\n")
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
