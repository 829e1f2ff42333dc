// Command benchtarget measures lunboot's initiator against libiscsi on the
// same tgtd target and writes the comparison as Markdown. scripts/bench.sh
// (make bench) runs it.
//
// Synopsis:
//
//	go run ./scripts/benchtarget -lunboot out/lunboot -out docs/benchmarks.md [options]
//
// It needs root (tgtd), tgtd/tgtadm (Debian tgt), iscsi-perf (Debian
// libiscsi-bin), and a C compiler with libiscsi's headers (Debian
// libiscsi-dev) to build scripts/writeperf, the libiscsi client that
// measures writes (iscsi-perf only reads). It builds writeperf into a
// temporary directory, creates a LUN file in /dev/shm filled with
// pseudo-random data (so the target reads real pages, not holes), starts
// tgtd on a free 127.0.0.1 port, and for each of -runs rounds runs, one
// after the other so they share the machine's conditions: lunboot bench
// --procs 1 (sequential 128 KiB and random 4 KiB reads, 32 in flight),
// iscsi-perf with the same shapes, lunboot bench with CRC32C digests,
// lunboot bench with Go's default GOMAXPROCS, lunboot's write tests and
// writeperf's, and, on two CPUs or more, both sequential reads once more
// with tgtd's main thread and the initiator pinned to separate CPUs (see
// pinnedPair). Odd rounds run lunboot before libiscsi, even
// rounds after, so neither side always inherits the other's aftermath
// (page cache, tgtd's state). In the first round writeperf also reads
// (-o read) as a check of the harness against iscsi-perf. The report gives
// the median of the rounds. Everything it started is stopped and removed
// on exit, including after errors and Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/sbin"
	"github.com/lunboot/lunboot/internal/tgt"
)

const (
	// lunbootProcs is lunboot bench's --procs (GOMAXPROCS): iscsi-perf and
	// writeperf run on one thread. The report also shows lunboot with Go's
	// default.
	lunbootProcs = 1

	targetIQN = "iqn.2026-11.org.lunboot:bench"
	seqBlock  = 128 << 10
	randBlock = 4 << 10
	depth     = 32
)

type options struct {
	loadBefore, loadAfter string // /proc/loadavg around the rounds

	lunboot  string
	out      string
	size     int64
	duration time.Duration
	runs     int
	dir      string
	command  string
	profile  string
	place    *placement // the placement-fixed pair's CPUs; nil: not run
	shapes   string     // -read-shapes: only the sweep of lunboot read's shapes
}

func main() {
	var o options
	flag.StringVar(&o.lunboot, "lunboot", "out/lunboot", "lunboot binary to measure")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "Markdown report to write")
	flag.Int64Var(&o.size, "size", 1<<30, "LUN size in bytes")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each test (whole seconds)")
	flag.IntVar(&o.runs, "runs", 3, "rounds; the report shows medians")
	flag.StringVar(&o.dir, "dir", "/dev/shm", "where the LUN file lives")
	flag.StringVar(&o.command, "command", "", "command line to record in the report (default: this one)")
	flag.StringVar(&o.profile, "cpuprofile", "", "also write a CPU profile of lunboot's sequential read to this file")
	flag.StringVar(&o.shapes, "read-shapes", "", "only compare `lunboot read` with these comma-separated `REQUESTxINFLIGHT` shapes (256Kx32,1Mx16) against iscsi-perf's sequential read, in interleaved rounds, and print the table (how read's defaults were chosen); -out is not written")
	flag.Parse()
	if o.command == "" {
		o.command = "go run ./scripts/benchtarget " + strings.Join(os.Args[1:], " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchtarget:", err)
		os.Exit(1)
	}
}

// measurement is one tool's figures for one test in one round.
type measurement struct {
	MBps, IOPS, CPUPerGiB float64
}

type results map[string][]measurement // key: tool/test

func (r results) add(key string, m measurement) { r[key] = append(r[key], m) }

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (tgtd)")
	}
	for _, b := range []string{"tgtd", "tgtadm", "iscsi-perf"} {
		if _, err := sbin.Look(b); err != nil {
			return fmt.Errorf("%s not found: run `make deps` (Debian tgt, libiscsi-bin)", b)
		}
	}
	if st, err := os.Stat(o.lunboot); err != nil || st.IsDir() {
		return fmt.Errorf("lunboot binary %s: not found (run `make build`)", o.lunboot)
	}
	secs := int(o.duration / time.Second)
	if secs < 1 || o.runs < 1 {
		return errors.New("-duration must be at least 1s and -runs at least 1")
	}
	tmp, err := os.MkdirTemp("", "lunboot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	wp, err := buildWriteperf(ctx, tmp)
	if err != nil {
		return err
	}

	img := filepath.Join(o.dir, fmt.Sprintf("lunboot-bench-%d.img", os.Getpid()))
	defer os.Remove(img)
	fmt.Fprintf(os.Stderr, "benchtarget: filling %s (%d MiB)\n", img, o.size>>20)
	if err := fillImage(img, o.size); err != nil {
		return err
	}
	logFile := filepath.Join(os.TempDir(), fmt.Sprintf("lunboot-bench-tgtd-%d.log", os.Getpid()))
	defer os.Remove(logFile)
	portal, err := tgt.FreeLoopbackAddr()
	if err != nil {
		return err
	}
	srv, err := tgt.Start(ctx, tgt.Options{Portal: portal, LogFile: logFile})
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := srv.AddTarget(1, targetIQN); err != nil {
		return err
	}
	if err := srv.AddLUN(1, 1, img); err != nil {
		return err
	}
	// tgtd's default is None only, which would quietly turn the digest
	// run into another run without. With CRC32C,None each initiator gets
	// the first value of its own offer (RFC 7143 §6.2): None for
	// iscsi-perf, writeperf and lunboot, CRC32C for lunboot
	// --header-digest --data-digest. lunbootBench checks what was agreed.
	for _, k := range []string{"HeaderDigest", "DataDigest"} {
		if err := srv.SetParam(1, k, "CRC32C,None"); err != nil {
			return err
		}
	}
	host, port, _ := strings.Cut(portal, ":")
	rootPath := fmt.Sprintf("iscsi:%s::%s:1:%s", host, port, targetIQN)
	url := fmt.Sprintf("iscsi://%s/%s/1", portal, targetIQN)

	res := results{}
	dur := fmt.Sprintf("%ds", secs)
	// Every step runs at most two timed tests; the rest is login and
	// teardown against a local target. A client stuck on a target that
	// stopped answering is killed at this bound instead of hanging the run.
	stepLimit := 2*time.Duration(secs)*time.Second + 2*time.Minute
	// lb runs lunboot bench with --procs lunbootProcs, or with Go's
	// default GOMAXPROCS for tool "lunboot-defaultprocs"; for tool
	// "lunboot-pinned" it runs on the placement's initiator CPU only.
	lb := func(tool string, args ...string) func(context.Context) error {
		common := []string{"--duration", dur, "--depth", strconv.Itoa(depth)}
		if tool != "lunboot-defaultprocs" {
			common = append(common, "--procs", strconv.Itoa(lunbootProcs))
		}
		var prefix []string
		if tool == "lunboot-pinned" {
			prefix = pinTo(o.place.initiator)
		}
		return func(ctx context.Context) error {
			return lunbootBench(ctx, prefix, o.lunboot, rootPath, tool, append(common, args...), res)
		}
	}
	// The placement-fixed pair (see pinnedPair) needs two CPUs and
	// util-linux's taskset.
	o.place, err = placementCPUs()
	if err == nil {
		if _, err = sbin.Look("taskset"); err != nil {
			o.place, err = nil, errors.New("taskset (Debian util-linux) is not installed")
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtarget: no placement-fixed sequential reads: %v\n", err)
	}
	if o.shapes != "" {
		return sweepShapes(ctx, o, rootPath, url, secs)
	}
	o.loadBefore = loadAvg()
	for round := 1; round <= o.runs; round++ {
		fmt.Fprintf(os.Stderr, "benchtarget: round %d of %d\n", round, o.runs)
		readArgs := []string{"--tests", "seq-read,rand-read"}
		if round == 1 && o.profile != "" {
			readArgs = append(readArgs, "--cpuprofile", o.profile)
		}
		lunbootReads := lb("lunboot", readArgs...)
		perfReads := func(ctx context.Context) error {
			if err := perf(ctx, nil, "iscsi-perf", url, "seq-read", secs, seqBlock, false, res); err != nil {
				return err
			}
			return perf(ctx, nil, "iscsi-perf", url, "rand-read", secs, randBlock, true, res)
		}
		lunbootWrites := lb("lunboot", "--write", "--tests", "seq-write,rand-write")
		libiscsiWrites := func(ctx context.Context) error {
			if err := writeperf(ctx, wp, url, "writeperf", "seq-write", secs, seqBlock, false, true, res); err != nil {
				return err
			}
			return writeperf(ctx, wp, url, "writeperf", "rand-write", secs, randBlock, true, true, res)
		}
		steps := []func(context.Context) error{
			lunbootReads, perfReads,
			lb("lunboot+digests", "--tests", "seq-read", "--header-digest", "--data-digest"),
			lb("lunboot-defaultprocs", "--tests", "seq-read,rand-read"),
			lunbootWrites, libiscsiWrites,
			func(ctx context.Context) error {
				return lunbootRead(ctx, o.lunboot, rootPath, "lunboot-read", nil, res)
			},
			func(ctx context.Context) error {
				return lunbootRead(ctx, o.lunboot, rootPath, "lunboot-read-1m", []string{"--request", "1M", "--inflight", "16"}, res)
			},
		}
		if round%2 == 0 {
			steps[0], steps[1] = steps[1], steps[0]
			steps[4], steps[5] = steps[5], steps[4]
			steps[6], steps[7] = steps[7], steps[6]
		}
		if o.place != nil {
			pair := []func(context.Context) error{
				lb("lunboot-pinned", "--tests", "seq-read"),
				func(ctx context.Context) error {
					return perf(ctx, pinTo(o.place.initiator), "iscsi-perf-pinned", url, "seq-read", secs, seqBlock, false, res)
				},
			}
			if round%2 == 0 {
				pair[0], pair[1] = pair[1], pair[0]
			}
			steps = append(steps, pinnedPair(srv.Pid(), o.place.target, pair))
		}
		if round == 1 {
			// The check of writeperf against iscsi-perf: the same read
			// shapes through writeperf's own loop.
			steps = append(steps, func(ctx context.Context) error {
				if err := writeperf(ctx, wp, url, "writeperf-read", "seq-read", secs, seqBlock, false, false, res); err != nil {
					return err
				}
				return writeperf(ctx, wp, url, "writeperf-read", "rand-read", secs, randBlock, true, false, res)
			})
		}
		for _, step := range steps {
			sctx, cancel := context.WithTimeout(ctx, stepLimit)
			err := step(sctx)
			timedOut := sctx.Err() != nil && ctx.Err() == nil
			cancel()
			if err != nil && timedOut {
				return fmt.Errorf("%w: killed after %v, though a step runs at most two %ds tests: is tgtd (on %s) still answering?", err, stepLimit, secs, portal)
			}
			if err != nil {
				return err
			}
		}
	}
	o.loadAfter = loadAvg()
	md := report(o, res)
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchtarget: wrote %s\n", o.out)
	fmt.Print(md)
	return nil
}

// fillImage writes size bytes of pseudo-random data: a fast generator is
// enough, the point is that every page is backed.
func fillImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{'l', 'u', 'n', 'b', 'o', 'o', 't'})
	buf := make([]byte, 4<<20)
	for done := int64(0); done < size; {
		n := min(int64(len(buf)), size-done)
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
		done += n
	}
	return f.Close()
}

// lunbootBench runs `lunboot bench --json` (after the command prefix, if
// any) and records its results under tool.
func lunbootBench(ctx context.Context, prefix []string, bin, target, tool string, args []string, res results) error {
	args = append([]string{"bench", "--json"}, append(args, target)...)
	cmd := command(ctx, prefix, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	var rep struct {
		HeaderDigest bool `json:"header_digest"`
		DataDigest   bool `json:"data_digest"`
		Results      []struct {
			Test      string  `json:"test"`
			MBps      float64 `json:"mb_per_s"`
			IOPS      float64 `json:"iops"`
			CPUPerGiB float64 `json:"cpu_s_per_gib"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return fmt.Errorf("lunboot bench output: %w", err)
	}
	if want := slices.Contains(args, "--data-digest"); rep.HeaderDigest != want || rep.DataDigest != want {
		return fmt.Errorf("%s %s: header digest %v, data digest %v negotiated, want %v", bin, strings.Join(args, " "), rep.HeaderDigest, rep.DataDigest, want)
	}
	for _, r := range rep.Results {
		res.add(tool+"/"+r.Test, measurement{MBps: r.MBps, IOPS: r.IOPS, CPUPerGiB: r.CPUPerGiB})
		fmt.Fprintf(os.Stderr, "  %-16s %-10s %8.1f MB/s %8.0f IOPS %6.3f CPU s/GiB\n", tool, r.Test, r.MBps, r.IOPS, r.CPUPerGiB)
	}
	return nil
}

// readRate matches `lunboot read -v`'s final line: "lunboot: read 1.0 GiB /
// 1.0 GiB (100%), 650.3 MB/s in 1.6s".
var readRate = regexp.MustCompile(`(?m)^lunboot: read .*\(100%\), ([0-9.]+) MB/s in `)

// lunbootRead copies the whole LUN with `lunboot read -v` (what a user runs
// to copy a LUN), with its defaults plus args, to /dev/null and records the
// throughput it prints, under tool.
func lunbootRead(ctx context.Context, bin, target, tool string, args []string, res results) error {
	args = append(append([]string{"read", "-v", "-o", "/dev/null"}, args...), target)
	cmd := command(ctx, nil, bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, tail(errb.String()))
	}
	m := readRate.FindStringSubmatch(errb.String())
	if m == nil {
		return fmt.Errorf("%s %s: no throughput line in its output: %s", bin, strings.Join(args, " "), tail(errb.String()))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return err
	}
	res.add(tool+"/copy", measurement{MBps: v})
	fmt.Fprintf(os.Stderr, "  %-16s %-10s %8.1f MB/s\n", tool, "copy", v)
	return nil
}

var iopsAverage = regexp.MustCompile(`iops average (\d+)`)

// perf runs iscsi-perf (after the command prefix, if any) for secs
// seconds with depth requests of block bytes (512-byte LUN blocks) and
// records its average IOPS and its CPU time under tool.
func perf(ctx context.Context, prefix []string, tool, url, test string, secs, block int, random bool, res results) error {
	args := []string{"-m", strconv.Itoa(depth), "-b", strconv.Itoa(block / 512), "-t", strconv.Itoa(secs)}
	if random {
		args = append(args, "-r")
	}
	args = append(args, url)
	cmd := command(ctx, prefix, "iscsi-perf", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iscsi-perf %s: %w: %s", strings.Join(args, " "), err, tail(out.String()))
	}
	m := iopsAverage.FindAllStringSubmatch(out.String(), -1)
	if len(m) == 0 {
		return fmt.Errorf("iscsi-perf %s: no \"iops average\" in its output: %s", strings.Join(args, " "), tail(out.String()))
	}
	iops, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	// iscsi-perf averages over its own run time, which is secs.
	bytesMoved := iops * float64(block) * float64(secs)
	r := measurement{MBps: iops * float64(block) / 1e6, IOPS: iops}
	if bytesMoved > 0 {
		r.CPUPerGiB = cpu.Seconds() / (bytesMoved / (1 << 30))
	}
	res.add(tool+"/"+test, r)
	fmt.Fprintf(os.Stderr, "  %-16s %-10s %8.1f MB/s %8.0f IOPS %6.3f CPU s/GiB\n", tool, test, r.MBps, r.IOPS, r.CPUPerGiB)
	return nil
}

// command is exec.CommandContext for name and args run through prefix
// (a wrapper such as taskset), if any.
func command(ctx context.Context, prefix []string, name string, args ...string) *exec.Cmd {
	if len(prefix) == 0 {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, prefix[0], slices.Concat(prefix[1:], []string{name}, args)...)
}

// The placement-fixed pair. On a machine of two CPUs shared by target and
// initiator, the sequential read figure depends on where the scheduler
// puts each thread: tgtd's main thread (which runs every connection's
// event loop and is the bottleneck), its I/O threads (which pread the
// LUN file) and the initiator, which neither initiator controls. The
// pair runs both initiators once more with that placement fixed:
// tgtd's main thread on one CPU, the initiator on another, tgtd's I/O
// threads left to the scheduler. It complements the main table and does
// not replace it.
type placement struct{ target, initiator int }

// placementCPUs picks the pair's CPUs: the first two this process may run
// on (a container's cpuset need not start at CPU 0).
func placementCPUs() (*placement, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("CPUs this process may use: %w", err)
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, errors.New("this process may run on one CPU only")
	}
	return &placement{target: cpus[0], initiator: cpus[1]}, nil
}

// pinTo is the command prefix that runs a program on cpu only.
func pinTo(cpu int) []string { return []string{"taskset", "-c", strconv.Itoa(cpu)} }

// pinnedPair returns a step that pins thread tid (tgtd's main thread) to
// cpu, runs steps, and lets the thread run anywhere again, also
// when a step fails.
func pinnedPair(tid, cpu int, steps []func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var all, one unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &all); err != nil {
			return fmt.Errorf("affinity of tgtd's main thread %d: %w", tid, err)
		}
		one.Set(cpu)
		if err := unix.SchedSetaffinity(tid, &one); err != nil {
			return fmt.Errorf("pin tgtd's main thread %d to CPU %d: %w", tid, cpu, err)
		}
		defer unix.SchedSetaffinity(tid, &all)
		for _, step := range steps {
			if err := step(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// buildWriteperf compiles scripts/writeperf/writeperf.c into dir and
// returns the binary's path.
func buildWriteperf(ctx context.Context, dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", errors.New("writeperf: no C compiler (cc) on PATH: run `make deps`")
	}
	src := filepath.Join("scripts", "writeperf", "writeperf.c")
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("writeperf: %w (run from the repository root)", err)
	}
	bin := filepath.Join(dir, "writeperf")
	cmd := exec.CommandContext(ctx, cc, "-O2", "-Wall", "-o", bin, src, "-liscsi")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "iscsi/iscsi.h") || strings.Contains(msg, "-liscsi") {
			return "", fmt.Errorf("writeperf: libiscsi headers or library missing (Debian libiscsi-dev): run `make deps`: %s", tail(msg))
		}
		return "", fmt.Errorf("writeperf: %s %s: %w: %s", cc, strings.Join(cmd.Args[1:], " "), err, tail(msg))
	}
	return bin, nil
}

// writeperf runs the writeperf binary for secs seconds with depth requests
// of block bytes, writing (or, for the harness check, reading), and
// records its figures and its CPU time (getrusage of the child, from
// wait4) under tool.
func writeperf(ctx context.Context, bin, url, tool, test string, secs, block int, random, write bool, res results) error {
	op := "read"
	if write {
		op = "write"
	}
	args := []string{"-o", op, "-m", strconv.Itoa(depth), "-b", strconv.Itoa(block / 512), "-t", strconv.Itoa(secs)}
	if random {
		args = append(args, "-r")
	}
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("writeperf %s: %w: %s", strings.Join(args, " "), err, tail(errb.String()+out.String()))
	}
	f, err := parseWriteperf(out.String())
	if err != nil {
		return fmt.Errorf("writeperf %s: %w", strings.Join(args, " "), err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r := measurement{MBps: f["bytes"] / f["seconds"] / 1e6, IOPS: f["ops"] / f["seconds"]}
	if f["bytes"] > 0 {
		r.CPUPerGiB = cpu.Seconds() / (f["bytes"] / (1 << 30))
	}
	res.add(tool+"/"+test, r)
	fmt.Fprintf(os.Stderr, "  %-16s %-10s %8.1f MB/s %8.0f IOPS %6.3f CPU s/GiB\n", tool, test, r.MBps, r.IOPS, r.CPUPerGiB)
	return nil
}

// parseWriteperf reads the key=value figures of writeperf's last line.
func parseWriteperf(out string) (map[string]float64, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	rest, ok := strings.CutPrefix(last, "writeperf: ")
	if !ok {
		return nil, fmt.Errorf("no result line in its output: %s", tail(out))
	}
	f := map[string]float64{}
	for _, kv := range strings.Fields(rest) {
		k, v, _ := strings.Cut(kv, "=")
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			f[k] = x
		}
	}
	for _, k := range []string{"ops", "bytes", "seconds"} {
		if _, ok := f[k]; !ok {
			return nil, fmt.Errorf("result line lacks %s=: %s", k, last)
		}
	}
	if f["seconds"] <= 0 {
		return nil, fmt.Errorf("result line has no duration: %s", last)
	}
	return f, nil
}

func tail(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n"))
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}

func median(ms []measurement, f func(measurement) float64) (float64, bool) {
	if len(ms) == 0 {
		return 0, false
	}
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// spread formats the range of the rounds, " (min–max)", when there are
// several.
func spread(ms []measurement, f func(measurement) float64) string {
	if len(ms) < 2 {
		return ""
	}
	lo, hi := f(ms[0]), f(ms[0])
	for _, m := range ms[1:] {
		lo, hi = min(lo, f(m)), max(hi, f(m))
	}
	return fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
}

func mbps(m measurement) float64 { return m.MBps }
func iops(m measurement) float64 { return m.IOPS }
func cpu(m measurement) float64  { return m.CPUPerGiB }

func report(o options, res results) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("lunboot's userspace initiator (`lunboot bench`, which reads and writes through the same\n")
	w("`scsi.Disk` and `iscsi.Session` the boot path serves NBD from) against libiscsi on the\n")
	w("same tgtd target in the same run. Higher is better except CPU.\n\n")
	w("- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	w("- machine: %d CPUs (`nproc`), %s, Linux %s, %s\n", runtime.NumCPU(), cpuModel(), kernelRelease(), runtime.Version())
	w("- target: tgtd %s on 127.0.0.1, one %d MiB LUN in %s (512-byte blocks), filled with data;\n", tgtVersion(), o.size>>20, o.dir)
	w("  it accepts CRC32C or None for both digests, and every run but the one marked with digests\n")
	w("  negotiated None\n")
	w("- each figure: the median of %d round(s) of %v per test; the tools run one after the other,\n", o.runs, o.duration)
	w("  lunboot first in odd rounds and libiscsi first in even ones\n")
	w("- load average (1, 5, 15 min) before and after: %s; %s — other work on the\n", o.loadBefore, o.loadAfter)
	w("  machine competes for its %d CPUs\n", runtime.NumCPU())
	w("- lunboot: %s\n", gitVersion())
	w("- lunboot runs as `lunboot bench --procs %d` (GOMAXPROCS=%d: Go code runs on one thread at a\n", lunbootProcs, lunbootProcs)
	w("  time, as iscsi-perf and writeperf run on one thread); the CPU table also shows it with\n")
	w("  Go's default, GOMAXPROCS=%d here\n", runtime.NumCPU())
	w("- command: `%s`\n\n", o.command)

	w("| test | lunboot | libiscsi¹ | lunboot / libiscsi |\n|---|---:|---:|---:|\n")
	below := false
	row := func(label, test, other string, f func(measurement) float64, unit string) {
		l, okL := median(res["lunboot/"+test], f)
		p, okP := median(res[other+"/"+test], f)
		ls, ps, ratio := "n/a", "n/a", ""
		if okL {
			ls = fmt.Sprintf("%.0f %s%s", l, unit, spread(res["lunboot/"+test], f))
		}
		if okP {
			ps = fmt.Sprintf("`%s` %.0f %s%s", other, p, unit, spread(res[other+"/"+test], f))
		}
		if okL && okP && p > 0 {
			ratio = fmt.Sprintf("%.2f", l/p)
			if l < p {
				ratio += " ⚠"
				below = true
			}
		}
		w("| %s | %s | %s | %s |\n", label, ls, ps, ratio)
	}
	row("sequential read, 128 KiB × 32 in flight", "seq-read", "iscsi-perf", mbps, "MB/s")
	row("random read, 4 KiB × 32 in flight", "rand-read", "iscsi-perf", iops, "IOPS")
	row("sequential write, 128 KiB × 32 in flight", "seq-write", "writeperf", mbps, "MB/s")
	row("random write, 4 KiB × 32 in flight", "rand-write", "writeperf", iops, "IOPS")
	for _, c := range []struct{ key, label string }{
		{"lunboot-read/copy", "`lunboot read` with its defaults (256 KiB × 8 in flight), whole LUN to /dev/null"},
		{"lunboot-read-1m/copy", "`lunboot read --request 1M --inflight 16` (the defaults before 6 December 2026), whole LUN"},
	} {
		l, okL := median(res[c.key], mbps)
		p, okP := median(res["iscsi-perf/seq-read"], mbps)
		if okL && okP && p > 0 {
			w("| %s | %.0f MB/s%s | `iscsi-perf` sequential %.0f MB/s | %.2f |\n", c.label, l, spread(res[c.key], mbps), p, l/p)
		}
	}
	w("\n¹ Reads: `iscsi-perf` (Debian libiscsi-bin %s). It only issues READ(16), so writes are\n", pkgVersion("libiscsi-bin"))
	w("measured by `writeperf` ([scripts/writeperf/writeperf.c](../scripts/writeperf/writeperf.c), built at\n")
	w("the start of the run against Debian libiscsi-dev %s): a small load generator on\n", pkgVersion("libiscsi-dev"))
	w("libiscsi's asynchronous API that works the way iscsi-perf does — one thread, one session,\n")
	w("a poll(2) loop around `iscsi_service()`, 32 tasks kept in flight, each completion queuing\n")
	w("the next, header digest offered as None first — and issues WRITE(16) from one buffer of\n")
	w("random data. Its random writes start at multiples of the request size, as lunboot's do.\n")
	if wr, pr := res["writeperf-read/seq-read"], res["iscsi-perf/seq-read"]; len(wr) > 0 && len(pr) > 0 {
		// Both ran in round 1, a few seconds apart: compare those.
		wi, pi := res["writeperf-read/rand-read"], res["iscsi-perf/rand-read"]
		w("\nCheck of writeperf against iscsi-perf, in round 1 of this run: `writeperf -o read` (READ(16),\n")
		w("same shapes) gave %.0f MB/s sequential and %.0f IOPS random, iscsi-perf in the same round\n", wr[0].MBps, first(wi).IOPS)
		w("%.0f MB/s and %.0f IOPS (ratios %.2f and %.2f).\n", pr[0].MBps, first(pi).IOPS,
			ratio(wr[0].MBps, pr[0].MBps), ratio(first(wi).IOPS, first(pi).IOPS))
	}

	w("\nCPU time of the initiator process only (user + system, from getrusage; tgtd's own CPU is\n")
	w("not counted), per GiB moved and per request, 32 requests in flight:\n\n")
	w("| initiator | threads | test | digests | CPU s/GiB | CPU µs/request |\n|---|---|---|---|---:|---:|\n")
	one := fmt.Sprintf("GOMAXPROCS=%d", lunbootProcs)
	def := fmt.Sprintf("GOMAXPROCS=%d (default)", runtime.NumCPU())
	const seqR, randR, seqW = "sequential 128 KiB reads", "random 4 KiB reads", "sequential 128 KiB writes"
	for _, c := range []struct {
		key, name, threads, test, dig string
		size                          int
	}{
		{"lunboot/seq-read", "lunboot", one, seqR, "none", seqBlock},
		{"lunboot+digests/seq-read", "lunboot", one, seqR, "header + data CRC32C", seqBlock},
		{"lunboot-defaultprocs/seq-read", "lunboot", def, seqR, "none", seqBlock},
		{"iscsi-perf/seq-read", "iscsi-perf", "1", seqR, "none (it offers None first)", seqBlock},
		{"lunboot/rand-read", "lunboot", one, randR, "none", randBlock},
		{"lunboot-defaultprocs/rand-read", "lunboot", def, randR, "none", randBlock},
		{"iscsi-perf/rand-read", "iscsi-perf", "1", randR, "none (it offers None first)", randBlock},
		{"lunboot/seq-write", "lunboot", one, seqW, "none", seqBlock},
		{"writeperf/seq-write", "writeperf", "1", seqW, "none (it offers None first)", seqBlock},
	} {
		if v, ok := median(res[c.key], cpu); ok {
			w("| %s | %s | %s | %s | %.3f | %.1f |\n", c.name, c.threads, c.test, c.dig, v, v*float64(c.size)/(1<<30)*1e6)
		}
	}
	if below {
		w("\n⚠ marks rows where lunboot is below libiscsi.\n")
	}
	lp, okL := median(res["lunboot-pinned/seq-read"], mbps)
	pp, okP := median(res["iscsi-perf-pinned/seq-read"], mbps)
	if okL && okP && pp > 0 {
		w("\nSequential reads again with the placement fixed (`taskset`): tgtd's main thread, which\n")
		w("runs every connection's event loop, on CPU %d, the initiator on CPU %d, tgtd's I/O\n", o.place.target, o.place.initiator)
		w("threads left to the scheduler. On two CPUs shared by target and initiator, the main table's\n")
		w("sequential read depends on where the scheduler puts these threads, which neither\n")
		w("initiator controls; on a real network the target has CPUs of its own. This table\n")
		w("complements the main one and does not replace it.\n\n")
		w("| test | lunboot | iscsi-perf | lunboot / iscsi-perf |\n|---|---:|---:|---:|\n")
		w("| sequential read, 128 KiB × 32 in flight, placement fixed | %.0f MB/s%s | %.0f MB/s%s | %.2f |\n",
			lp, spread(res["lunboot-pinned/seq-read"], mbps), pp, spread(res["iscsi-perf-pinned/seq-read"], mbps), lp/pp)
	}
	if o.runs > 1 {
		w("\nFigures in parentheses are the lowest and highest of the rounds.\n")
	}
	w("\nMB/s are 10^6 bytes per second. `iscsi-perf`'s MB/s is derived from its average IOPS\n")
	w("times the request size (its own printout divides by 2^20). Its random reads start at any\n")
	w("512-byte block; lunboot's are 4 KiB aligned. On a shared machine the absolute numbers move\n")
	w("from run to run; the ratio, measured back to back, is the figure to compare.\n")
	return b.String()
}

func first(ms []measurement) measurement {
	if len(ms) == 0 {
		return measurement{}
	}
	return ms[0]
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "?"
	}
	var s []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func tgtVersion() string {
	p, err := sbin.Look("tgtd")
	if err != nil {
		return "?"
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// gitVersion names the checkout the measured binary was presumably built
// from; "+ local changes" when the work tree differs from the commit.
func gitVersion() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h (%cs)").Output()
	if err != nil {
		return "unknown commit"
	}
	v := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		v += " + local changes"
	}
	return v
}

func pkgVersion(name string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", name).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

// sweepShapes compares `lunboot read` (the whole LUN to /dev/null) with
// each of o.shapes' request sizes and depths against iscsi-perf's
// sequential read on the same LUN. Each round runs every case once, the
// first case moving one place per round so that no case always follows
// the same one; the table gives medians, ranges and the ratio of the
// medians.
func sweepShapes(ctx context.Context, o options, rootPath, url string, secs int) error {
	type shape struct{ label, request, inflight string }
	var shapes []shape
	for _, f := range strings.Split(o.shapes, ",") {
		req, inf, ok := strings.Cut(strings.ReplaceAll(strings.TrimSpace(f), "×", "x"), "x")
		if !ok || req == "" || inf == "" {
			return fmt.Errorf("-read-shapes: %q is not REQUESTxINFLIGHT (256Kx32)", f)
		}
		shapes = append(shapes, shape{req + " × " + inf, req, inf})
	}
	res := results{}
	cases := []func(context.Context) error{func(ctx context.Context) error {
		return perf(ctx, nil, "iscsi-perf", url, "seq-read", secs, seqBlock, false, res)
	}}
	for _, sh := range shapes {
		cases = append(cases, func(ctx context.Context) error {
			return lunbootRead(ctx, o.lunboot, rootPath, "read "+sh.label, []string{"--request", sh.request, "--inflight", sh.inflight}, res)
		})
	}
	o.loadBefore = loadAvg()
	for round := 1; round <= o.runs; round++ {
		fmt.Fprintf(os.Stderr, "benchtarget: round %d of %d\n", round, o.runs)
		for i := range cases {
			sctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+2*time.Minute)
			err := cases[(i+round-1)%len(cases)](sctx)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	o.loadAfter = loadAvg()
	p, _ := median(res["iscsi-perf/seq-read"], mbps)
	fmt.Printf("| `lunboot read`, request × in flight | MB/s, median (min–max) | / iscsi-perf |\n|---|---:|---:|\n")
	fmt.Printf("| iscsi-perf sequential, 128 KiB × %d | %.0f%s | 1.00 |\n", depth, p, spread(res["iscsi-perf/seq-read"], mbps))
	for _, sh := range shapes {
		k := "read " + sh.label + "/copy"
		l, _ := median(res[k], mbps)
		fmt.Printf("| %s | %.0f%s | %.2f |\n", sh.label, l, spread(res[k], mbps), ratio(l, p))
	}
	fmt.Printf("\n%d rounds; %d MiB LUN in %s; iscsi-perf %ds per run; load average before %s, after %s (%d CPUs)\n",
		o.runs, o.size>>20, o.dir, secs, o.loadBefore, o.loadAfter, runtime.NumCPU())
	return nil
}
