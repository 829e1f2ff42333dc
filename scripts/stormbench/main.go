// Command stormbench measures a boot storm: many lunboot initiators at once
// against one tgtd LUN shared read-only, each reading what a boot reads. It
// writes a Markdown table. scripts/bench.sh (make bench) runs it after the
// throughput tables.
//
// Synopsis:
//
//	go run ./scripts/stormbench [-clients 1,8,32,128] [-seq 45M] [-random 2000] [-runs 3] [-out file.md]
//
// Each client is a host-side lunboot session (pkg/iscsi, pkg/scsi) with its
// own initiator name and TCP connection. All clients start together (a
// rack coming back from a power cut logs in within the same second): each
// logs in, reads -seq bytes sequentially from the start of the LUN in 1 MiB
// reads (the kernel and initrd every client loads), then -random 4 KiB
// reads at random offsets across the LUN, one at a time (a file system
// walk), and logs out. A client that hits an error logs in again and goes
// on from where it was (retries are counted, a failure is a client that
// did not finish within -deadline). The restart case kills tgtd (SIGKILL)
// when the 32-client storm has moved half its bytes and starts it again on
// the same portal after -down.
//
// It needs root and tgtd/tgtadm (Debian tgt). The LUN file lives in
// /dev/shm, so the figures measure the initiators and tgtd, not a disk.
// Everything it started is stopped and removed on exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/sbin"
	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

const (
	targetIQN = "iqn.2026-12.org.lunboot:storm"
	seqChunk  = 1 << 20
	randBlock = 4 << 10
)

type options struct {
	clients  []int
	seq      int64
	random   int
	runs     int
	size     int64
	deadline time.Duration
	down     time.Duration
	restart  int
	out      string
	command  string
}

func main() {
	var o options
	clients := flag.String("clients", "1,8,32,128", "comma-separated client counts")
	seq := flag.String("seq", "45M", "bytes each client reads sequentially (suffix K, M, G)")
	flag.IntVar(&o.random, "random", 2000, "random 4 KiB reads per client after the sequential part")
	flag.IntVar(&o.runs, "runs", 3, "rounds per case; the table gives medians and ranges")
	size := flag.String("size", "512M", "LUN size (in /dev/shm)")
	flag.DurationVar(&o.deadline, "deadline", 10*time.Minute, "a client not done after this long has failed")
	flag.DurationVar(&o.down, "down", 2*time.Second, "how long tgtd stays down in the restart case")
	flag.IntVar(&o.restart, "restart", 32, "clients of the storm with tgtd killed and restarted mid-way (0: none)")
	flag.StringVar(&o.out, "out", "", "append the Markdown table to this file (default: standard output)")
	flag.StringVar(&o.command, "command", "", "the command line to print under the table")
	flag.Parse()
	var err error
	if o.seq, err = parseSize(*seq); err == nil {
		o.size, err = parseSize(*size)
	}
	if err == nil {
		o.clients, err = parseInts(*clients)
	}
	if err != nil || o.runs < 1 || o.seq < seqChunk || o.size < o.seq {
		fmt.Fprintf(os.Stderr, "stormbench: bad arguments (%v): need -runs ≥ 1, -seq ≥ 1M, -size ≥ -seq\n", err)
		os.Exit(2)
	}
	if o.command == "" {
		o.command = "go run ./scripts/stormbench " + strings.Join(os.Args[1:], " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "stormbench: %v\n", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional K, M or G", s)
	}
	return n * mult, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("client count %q: want a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// lab is the target: tgtd serving one read-only LUN.
type lab struct {
	portal string
	img    string
	log    string
	mu     sync.Mutex
	srv    *tgt.Server
}

func (l *lab) start(ctx context.Context) error {
	srv, err := tgt.Start(ctx, tgt.Options{Portal: l.portal, LogFile: l.log})
	if err != nil {
		return err
	}
	if err := srv.AddTarget(1, targetIQN); err == nil {
		if err = srv.AddLUN(1, 1, l.img); err == nil {
			err = srv.SetLUNParams(1, 1, "readonly=1")
		}
		if err != nil {
			srv.Stop()
			return err
		}
	} else {
		srv.Stop()
		return err
	}
	l.mu.Lock()
	l.srv = srv
	l.mu.Unlock()
	return nil
}

func (l *lab) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.Stop()
		l.srv = nil
	}
}

// kill stops tgtd the way a power cut would, without goodbyes.
func (l *lab) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		l.srv.Kill()
		// Kill leaves tgtd's control socket behind (Stop would remove it,
		// but after Kill it does nothing).
		os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d", l.srv.ControlPort()))
		os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d.lock", l.srv.ControlPort()))
		l.srv = nil
	}
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (tgtd)")
	}
	for _, b := range []string{"tgtd", "tgtadm"} {
		if _, err := sbin.Look(b); err != nil {
			return fmt.Errorf("%s not found: run `make deps` (Debian tgt)", b)
		}
	}
	l := &lab{
		img: filepath.Join("/dev/shm", fmt.Sprintf("lunboot-storm-%d.img", os.Getpid())),
		log: filepath.Join(os.TempDir(), fmt.Sprintf("lunboot-storm-tgtd-%d.log", os.Getpid())),
	}
	defer os.Remove(l.img)
	defer os.Remove(l.log)
	fmt.Fprintf(os.Stderr, "stormbench: filling %s (%d MiB)\n", l.img, o.size>>20)
	if err := fillImage(l.img, o.size); err != nil {
		return err
	}
	var err error
	if l.portal, err = tgt.FreeLoopbackAddr(); err != nil {
		return err
	}
	if err := l.start(ctx); err != nil {
		return err
	}
	defer l.stop()

	type row struct {
		name   string
		n      int
		rounds []storm
	}
	var rows []row
	cases := []struct {
		name    string
		n       int
		restart bool
	}{}
	for _, n := range o.clients {
		cases = append(cases, struct {
			name    string
			n       int
			restart bool
		}{fmt.Sprintf("%d at once", n), n, false})
	}
	if o.restart > 0 {
		cases = append(cases, struct {
			name    string
			n       int
			restart bool
		}{fmt.Sprintf("%d, tgtd killed mid-way and restarted", o.restart), o.restart, true})
	}
	for _, c := range cases {
		r := row{name: c.name, n: c.n}
		for i := range o.runs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s := runStorm(ctx, l, o, c.n, c.restart, i)
			fmt.Fprintf(os.Stderr, "stormbench: %s, round %d: %s\n", c.name, i+1, s.summary())
			r.rounds = append(r.rounds, s)
		}
		rows = append(rows, r)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n## Boot storm\n\n")
	fmt.Fprintf(&b, "Clients start together (all log in within the same second); each reads %d MiB sequentially "+
		"(1 MiB reads, the kernel and initrd) then %d random 4 KiB reads one at a time, from one tgtd LUN (readonly=1, %d MiB in /dev/shm, loopback). "+
		"Medians of %d rounds, range in brackets. A client's completion time runs from the common start to its last read. Fairness is the slowest client's time over the fastest's. "+
		"A failure is a client that did not finish; retries (a new login after an error, then on from where it was) are allowed and counted.\n\n",
		o.seq>>20, o.random, o.size>>20, o.runs)
	fmt.Fprintf(&b, "| case | aggregate MB/s | login, slowest | completion median | p99 | max | fairness | retries | failures |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		f := func(get func(storm) float64, format string) string { return medRange(r.rounds, get, format) }
		fails := 0
		retries := 0
		for _, s := range r.rounds {
			fails += s.failures
			retries += s.retries
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", r.name,
			f(func(s storm) float64 { return s.mbps }, "%.0f"),
			f(func(s storm) float64 { return s.loginMax.Seconds() }, "%.2f s"),
			f(func(s storm) float64 { return s.p50.Seconds() }, "%.2f s"),
			f(func(s storm) float64 { return s.p99.Seconds() }, "%.2f s"),
			f(func(s storm) float64 { return s.max.Seconds() }, "%.2f s"),
			f(func(s storm) float64 { return s.fairness }, "%.2f"),
			retries, fails)
	}
	fmt.Fprintf(&b, "\n`%s`; load average before: %s\n", o.command, loadAvg())
	if o.out == "" {
		_, err := io.WriteString(os.Stdout, b.String())
		return err
	}
	f, err := os.OpenFile(o.out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// storm is one round's outcome.
type storm struct {
	n             int
	elapsed       time.Duration
	bytes         int64
	mbps          float64
	loginMax      time.Duration // slowest first login, from the common start
	min, p50, p99 time.Duration
	max           time.Duration
	fairness      float64
	retries       int
	failures      int
	firstErr      error
}

func (s storm) summary() string {
	msg := fmt.Sprintf("%d clients, %.0f MB/s, login ≤ %.2fs, completion min %.2fs median %.2fs p99 %.2fs max %.2fs, fairness %.2f, %d retries, %d failures",
		s.n, s.mbps, s.loginMax.Seconds(), s.min.Seconds(), s.p50.Seconds(), s.p99.Seconds(), s.max.Seconds(), s.fairness, s.retries, s.failures)
	if s.firstErr != nil {
		msg += fmt.Sprintf(" (first failure: %v)", s.firstErr)
	}
	return msg
}

// client is one initiator's result.
type client struct {
	login   time.Duration
	took    time.Duration
	bytes   int64
	retries int
	err     error
}

func runStorm(ctx context.Context, l *lab, o options, n int, restart bool, round int) storm {
	ctx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()
	total := int64(n) * (o.seq + int64(o.random)*randBlock)
	var moved atomic.Int64
	var restartDone chan struct{}
	if restart {
		restartDone = make(chan struct{})
		go func() {
			defer close(restartDone)
			for moved.Load() < total/2 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			fmt.Fprintf(os.Stderr, "stormbench: killing tgtd at %d of %d MiB\n", moved.Load()>>20, total>>20)
			l.kill()
			select {
			case <-ctx.Done():
				return
			case <-time.After(o.down):
			}
			for ctx.Err() == nil {
				if err := l.start(ctx); err != nil {
					fmt.Fprintf(os.Stderr, "stormbench: restarting tgtd: %v (trying again)\n", err)
					time.Sleep(500 * time.Millisecond)
					continue
				}
				fmt.Fprintf(os.Stderr, "stormbench: tgtd back\n")
				return
			}
		}()
	}
	results := make([]client, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("iqn.2026-12.org.lunboot:storm-r%d-c%03d", round, i)
			results[i] = boot(ctx, l.portal, name, o, rand.New(rand.NewPCG(uint64(round), uint64(i))), start, &moved)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if restartDone != nil {
		cancel()
		<-restartDone
		l.mu.Lock()
		up := l.srv != nil
		l.mu.Unlock()
		if !up {
			_ = l.start(context.Background())
		}
	}
	s := storm{n: n, elapsed: elapsed}
	var took []time.Duration
	for _, c := range results {
		s.bytes += c.bytes
		s.retries += c.retries
		s.loginMax = max(s.loginMax, c.login)
		if c.err != nil {
			s.failures++
			if s.firstErr == nil {
				s.firstErr = c.err
			}
			continue
		}
		took = append(took, c.took)
	}
	s.mbps = float64(s.bytes) / elapsed.Seconds() / 1e6
	if len(took) > 0 {
		slices.Sort(took)
		s.p50 = took[(len(took)-1)/2]
		s.p99 = took[min(len(took)-1, (len(took)*99+99)/100-1)]
		s.max = took[len(took)-1]
		s.min = took[0]
		if took[0] > 0 {
			s.fairness = float64(s.max) / float64(took[0])
		}
	}
	return s
}

// boot is one client: login, sequential then random reads, logout, with a
// new login after any error, resuming where it stopped.
func boot(ctx context.Context, portal, name string, o options, rng *rand.Rand, start time.Time, moved *atomic.Int64) client {
	var c client
	buf := make([]byte, seqChunk)
	offsets := make([]int64, o.random)
	for i := range offsets {
		offsets[i] = rng.Int64N(o.size/randBlock) * randBlock
	}
	var seqDone int64
	randDone := 0
	first := true
	var s *iscsi.Session
	var d *scsi.Disk
	closeAll := func() {
		if d != nil {
			d.Close()
			d = nil
		}
		if s != nil {
			lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.Logout(lctx); err != nil {
				s.Close()
			}
			cancel()
			s = nil
		}
	}
	defer closeAll()
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			c.err = fmt.Errorf("%s: not done within the deadline after %d retries: %w", name, c.retries, ctx.Err())
			return c
		}
		if attempt > 0 {
			c.retries++
			closeAll()
			select {
			case <-ctx.Done():
				continue
			case <-time.After(time.Duration(min(attempt, 10)) * 200 * time.Millisecond):
			}
		}
		var err error
		s, err = iscsi.Login(ctx, iscsi.Config{
			Portal: portal, TargetName: targetIQN, InitiatorName: name,
			LoginTimeout: 10 * time.Second, RecoveryTimeout: 30 * time.Second,
		})
		if err != nil {
			c.err = err
			continue
		}
		if first {
			c.login = time.Since(start)
			first = false
		}
		d, err = scsi.OpenDisk(ctx, s, sam.LUNFromLinux(1), scsi.DiskOptions{Timeout: 30 * time.Second, ReadOnly: true})
		if err != nil {
			c.err = err
			continue
		}
		for seqDone < o.seq && err == nil {
			n := min(int64(len(buf)), o.seq-seqDone)
			var got int
			got, err = d.ReadAt(buf[:n], seqDone)
			seqDone += int64(got)
			c.bytes += int64(got)
			moved.Add(int64(got))
		}
		for randDone < len(offsets) && err == nil {
			_, err = d.ReadAt(buf[:randBlock], offsets[randDone])
			if err == nil {
				randDone++
				c.bytes += randBlock
				moved.Add(randBlock)
			}
		}
		if err != nil {
			c.err = err
			continue
		}
		c.err = nil
		c.took = time.Since(start)
		return c
	}
}

func medRange(rs []storm, get func(storm) float64, format string) string {
	var v []float64
	for _, r := range rs {
		v = append(v, get(r))
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if len(v) == 1 {
		return fmt.Sprintf(format, med)
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", med, v[0], v[len(v)-1])
}

func fillImage(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{'s', 't', 'o', 'r', 'm'})
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

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
