package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func init() {
	register(&command{
		name:    "bench",
		summary: "measure sequential and random throughput against a LUN",
		run:     runBench,
	})
}

// benchResult is one test's outcome, also the --json form.
type benchResult struct {
	Test      string  `json:"test"`
	BlockSize int     `json:"block_size"`
	Depth     int     `json:"depth"`
	Seconds   float64 `json:"seconds"`
	Bytes     int64   `json:"bytes"`
	Ops       int64   `json:"ops"`
	MBps      float64 `json:"mb_per_s"` // 10^6 bytes per second
	IOPS      float64 `json:"iops"`
	// Latency percentiles of single requests, in microseconds.
	LatP50 float64 `json:"lat_p50_us"`
	LatP99 float64 `json:"lat_p99_us"`
	// CPU is user+system CPU time of the whole process during the test;
	// CPUPerGiB normalises it by the data moved.
	CPU       float64 `json:"cpu_s"`
	CPUPerGiB float64 `json:"cpu_s_per_gib"`
}

// benchReport is `lunboot bench --json`.
type benchReport struct {
	Target       string        `json:"target"`
	LUN          uint64        `json:"lun"`
	Size         int64         `json:"size"`
	HeaderDigest bool          `json:"header_digest"`
	DataDigest   bool          `json:"data_digest"`
	Procs        int           `json:"procs"` // GOMAXPROCS during the tests
	Results      []benchResult `json:"results"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	duration := fs.Duration("duration", 10*time.Second, "length of each test")
	write := fs.Bool("write", false, "also run the write tests: DESTROYS the LUN's data")
	jsonOut := fs.Bool("json", false, "print JSON")
	var seqSize, randSize int64 = 128 << 10, 4 << 10
	fs.Var(sizeValue{&seqSize}, "seq-size", "request `size` of the sequential tests")
	fs.Var(sizeValue{&randSize}, "rand-size", "request `size` of the random tests")
	depth := fs.Int("depth", 32, "requests in flight")
	testList := fs.String("tests", "", "comma-separated subset of seq-read,rand-read,seq-write,rand-write")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the tests to `file` (go tool pprof)")
	procs := fs.Int("procs", 0, "run Go code on at most `n` threads at once (GOMAXPROCS); 0 keeps the default, one per CPU")
	fs.Usage = usageFunc(fs, "bench [options] <target>",
		"Logs in and measures, for --duration each: sequential reads of --seq-size\n"+
			"and random reads of --rand-size, --depth requests in flight, through the\n"+
			"same block-device layer the boot path uses; with --write the same for\n"+
			"writes, which overwrite the LUN. Reports MB/s, IOPS, latency and the CPU\n"+
			"time this process spent per GiB moved.", true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: bench takes one target", errUsage)
	}
	switch {
	case *depth < 1:
		return fmt.Errorf("%w: --depth %d: at least 1 request must be in flight", errUsage, *depth)
	case *duration <= 0:
		return fmt.Errorf("%w: --duration %v: must be positive", errUsage, *duration)
	case seqSize < 512:
		return fmt.Errorf("%w: --seq-size %d: at least 512 bytes", errUsage, seqSize)
	case randSize < 512:
		return fmt.Errorf("%w: --rand-size %d: at least 512 bytes", errUsage, randSize)
	case *procs < 0:
		return fmt.Errorf("%w: --procs %d: must not be negative (0 keeps the default)", errUsage, *procs)
	}
	if *procs > 0 {
		// With more than one P, every completion the session's reader
		// delivers wakes an idle thread to run the waiting goroutine
		// (runtime.ready → wakep): futex and epoll round trips that cost a
		// quarter to a third of the CPU time per request on a 2-CPU machine.
		// iscsi-perf does all its work on one thread; --procs 1 compares
		// like with like.
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*procs))
	}
	tests := []string{"seq-read", "rand-read"}
	if *write {
		tests = append(tests, "seq-write", "rand-write")
	}
	if *testList != "" {
		tests = strings.Split(*testList, ",")
		for _, t := range tests {
			if !slices.Contains([]string{"seq-read", "rand-read", "seq-write", "rand-write"}, t) {
				return fmt.Errorf("%w: unknown test %q", errUsage, t)
			}
			if strings.HasSuffix(t, "-write") && !*write {
				return fmt.Errorf("%w: test %s overwrites the LUN: add --write", errUsage, t)
			}
		}
	}

	s, lun, err := tf.login(ctx, pos[0])
	if err != nil {
		return err
	}
	defer tf.logout(s)
	d, err := tf.openDisk(ctx, "bench", s, lun, !*write)
	if err != nil {
		return err
	}
	defer d.Close()
	if *write && d.ReadOnly() {
		return fmt.Errorf("bench %s: the LUN is write-protected; run without --write", tf.shown)
	}

	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench %s: --cpuprofile: %w", tf.shown, err)
		}
		defer stop()
	}

	info := s.Info()
	rep := benchReport{Target: tf.shown, LUN: lun.Linux(), Size: d.Size(), HeaderDigest: info.HeaderDigest, DataDigest: info.DataDigest, Procs: runtime.GOMAXPROCS(0)}
	for _, t := range tests {
		size, sizeFlag := int(seqSize), "--seq-size"
		if strings.HasPrefix(t, "rand") {
			size, sizeFlag = int(randSize), "--rand-size"
		}
		if size%d.BlockSize() != 0 || int64(size) > d.Size() {
			return fmt.Errorf("%w: %s %d: must be a multiple of the LUN's block size %d and fit the LUN (%d bytes)", errUsage, sizeFlag, size, d.BlockSize(), d.Size())
		}
		if !*jsonOut {
			fmt.Fprintf(stderr, "lunboot: %s, %s requests, %d in flight, %v...\n", t, bytesize.Format(int64(size)), *depth, *duration)
		}
		r, err := benchOne(ctx, d, t, size, *depth, *duration)
		if err != nil {
			return fmt.Errorf("bench %s: %s: %w", tf.shown, t, err)
		}
		rep.Results = append(rep.Results, r)
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "target %s, LUN %d, %s, header digest %v, data digest %v, GOMAXPROCS %d\n", rep.Target, rep.LUN, bytesize.Format(rep.Size), rep.HeaderDigest, rep.DataDigest, rep.Procs)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "test\tsize\tdepth\tMB/s\tIOPS\tp50 µs\tp99 µs\tCPU s/GiB\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.0f\t%.0f\t%.0f\t%.3f\t\n", r.Test, bytesize.Format(int64(r.BlockSize)), r.Depth, r.MBps, r.IOPS, r.LatP50, r.LatP99, r.CPUPerGiB)
	}
	return tw.Flush()
}

// benchOne runs one test: depth workers issue requests back to back until
// the duration ends. Sequential tests share one cursor that wraps at the
// end of the LUN, so requests stay in order with depth outstanding, as
// iscsi-perf does; random tests pick aligned offsets uniformly.
func benchOne(ctx context.Context, d *scsi.Disk, test string, size, depth int, dur time.Duration) (benchResult, error) {
	write := strings.HasSuffix(test, "-write")
	random := strings.HasPrefix(test, "rand")
	slots := d.Size() / int64(size)
	var cursor atomic.Int64
	var ops atomic.Int64
	lats := make([][]time.Duration, depth)

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	cpu0 := cpuTime()
	start := time.Now()
	for w := range depth {
		wg.Go(func() {
			buf := make([]byte, size)
			if write {
				rand.Read(buf)
			}
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for ctx.Err() == nil {
				var off int64
				if random {
					off = rng.Int64N(slots) * int64(size)
				} else {
					off = (cursor.Add(1) - 1) % slots * int64(size)
				}
				t0 := time.Now()
				var err error
				if write {
					_, err = d.WriteAt(buf, off)
				} else {
					_, err = d.ReadAt(buf, off)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("at byte %d: %w", off, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				ops.Add(1)
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	if firstErr != nil {
		return benchResult{}, firstErr
	}
	if err := parent.Err(); err != nil {
		return benchResult{}, err // interrupted: no meaningful figures
	}
	r := benchResult{Test: test, BlockSize: size, Depth: depth, Seconds: el.Seconds(), Ops: ops.Load()}
	r.Bytes = r.Ops * int64(size)
	r.MBps = float64(r.Bytes) / el.Seconds() / 1e6
	r.IOPS = float64(r.Ops) / el.Seconds()
	r.CPU = cpu.Seconds()
	if r.Bytes > 0 {
		r.CPUPerGiB = r.CPU / (float64(r.Bytes) / (1 << 30))
	}
	all := slices.Concat(lats...)
	if len(all) > 0 {
		slices.Sort(all)
		r.LatP50 = float64(all[len(all)/2].Microseconds())
		r.LatP99 = float64(all[len(all)*99/100].Microseconds())
	}
	return r, nil
}

// cpuTime is the user plus system CPU time this process has used
// (getrusage(2), RUSAGE_SELF), all threads included.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
