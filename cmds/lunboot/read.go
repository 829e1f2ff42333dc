package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func init() {
	register(&command{
		name:    "read",
		summary: "copy a LUN (or a byte range of it) to standard output or a file",
		run:     runRead,
	})
}

// The defaults of read's --request and --inflight: 2 MiB in flight, which
// covers the bandwidth-delay product of a 25 Gb/s LAN at 0.5 ms. Chosen by
// measurement (go run ./scripts/benchtarget -read-shapes …, interleaved
// rounds against iscsi-perf on one tgtd LUN in /dev/shm, contended machine,
// 6 December 2026): 256 KiB × 8 gave 1102 and 1160 MB/s medians in two
// sweeps (1.76 and 1.65 of iscsi-perf in the same rounds), 256 KiB × 4 1133
// and 256 KiB × 16 838, 938 and 543, while the old 1 MiB × 16 gave 146 and
// 82 MB/s (0.18, 0.13) and 512 KiB × 8 131: bigger requests or more of them
// in flight did not help tgtd and some combinations stalled it.
const (
	defaultReadRequest  = 256 << 10
	defaultReadInflight = 8
)

func runRead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	var offset, length, chunk int64 = 0, -1, defaultReadRequest
	fs.Var(sizeValue{&offset}, "offset", "start at `byte` offset (suffixes K, M, G, T)")
	fs.Var(sizeValue{&length}, "length", "copy this many `bytes` (default: to the end of the LUN)")
	fs.Var(sizeValue{&chunk}, "request", "bytes per READ `size`")
	inflight := fs.Int("inflight", defaultReadInflight, "READs in flight")
	outFile := fs.String("o", "", "write to `file` instead of standard output")
	fs.Usage = usageFunc(fs, "read [options] <target> > file",
		"Logs in and copies the LUN's bytes, in order, to standard output (or -o file),\n"+
			"with many READs in flight. Progress goes to stderr when it is a terminal or\n"+
			"with -v. Offset and length need not be block aligned.", true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: read takes one target", errUsage)
	}
	if *inflight < 1 {
		return fmt.Errorf("%w: --inflight %d: at least 1 READ must be in flight", errUsage, *inflight)
	}
	if chunk < 512 || chunk > 64<<20 {
		return fmt.Errorf("%w: --request %d: must be between 512 and 64M", errUsage, chunk)
	}
	var w io.Writer = stdout
	var file *os.File
	if *outFile != "" {
		file, err = os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("read %s: -o: %w", rootpath.Redact(pos[0]), err)
		}
		defer file.Close()
		w = file
	} else if isTerminal(stdout) {
		return fmt.Errorf("%w: standard output is a terminal: redirect it (> file) or use -o file", errUsage)
	}

	s, lun, err := tf.login(ctx, pos[0])
	if err != nil {
		return err
	}
	defer tf.logout(s)
	d, err := tf.openDisk(ctx, "read", s, lun, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if offset > d.Size() {
		return fmt.Errorf("%w: --offset %d is past the end of the LUN (%d bytes)", errUsage, offset, d.Size())
	}
	if length < 0 {
		length = d.Size() - offset
	}
	if length > d.Size()-offset {
		return fmt.Errorf("%w: --offset %d --length %d runs past the end of the LUN (%d bytes)", errUsage, offset, length, d.Size())
	}

	var prog *progress
	if isTerminal(stderr) || tf.verbose {
		prog = newProgress(stderr, length, isTerminal(stderr))
		defer prog.stop()
	}
	n, err := copyOut(ctx, d, w, offset, length, int(chunk), *inflight, prog)
	if err != nil {
		return fmt.Errorf("read %s at byte %d: %w", tf.shown, offset+n, err)
	}
	if file != nil {
		// fsync(2) makes a copy on disk durable; a character device such
		// as /dev/null has nothing to flush and answers EINVAL.
		if err := file.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("read %s: -o: %w", tf.shown, err)
		}
		if err := file.Close(); err != nil {
			return fmt.Errorf("read %s: -o: %w", tf.shown, err)
		}
	}
	return nil
}

// copyOut copies [off, off+length) of d to w in order, with up to inflight
// reads outstanding. Requests are aligned to multiples of chunk so that an
// unaligned start costs one short request, not a partial block in every
// one. It returns the bytes written.
func copyOut(ctx context.Context, d *scsi.Disk, w io.Writer, off, length int64, chunk, inflight int, prog *progress) (int64, error) {
	type piece struct {
		buf  []byte
		n    int
		err  error
		done chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Closing the disk on cancellation (Ctrl-C) stops reads in flight
	// instead of letting them run to their timeout.
	stopClose := context.AfterFunc(ctx, func() { d.Close() })
	defer stopClose()

	pool := sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}
	pieces := make(chan *piece, inflight-1)
	go func() {
		defer close(pieces)
		end := off + length
		for o := off; o < end; {
			next := min(end, (o/int64(chunk)+1)*int64(chunk))
			bp := pool.Get().(*[]byte)
			p := &piece{buf: (*bp)[:next-o], done: make(chan struct{})}
			select {
			case pieces <- p:
			case <-ctx.Done():
				return
			}
			go func(at int64) {
				p.n, p.err = d.ReadAt(p.buf, at)
				close(p.done)
			}(o)
			o = next
		}
	}()

	var written int64
	var firstErr error
	for p := range pieces {
		<-p.done
		if firstErr == nil && p.err != nil && !(errors.Is(p.err, io.EOF) && p.n == len(p.buf)) {
			firstErr = p.err
			cancel()
		}
		if firstErr == nil {
			if _, err := w.Write(p.buf[:p.n]); err != nil {
				firstErr = fmt.Errorf("writing output: %w", err)
				cancel()
			} else {
				written += int64(p.n)
				prog.add(int64(p.n))
			}
		}
		b := p.buf[:cap(p.buf)]
		pool.Put(&b)
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return written, firstErr
}

// isTerminal reports whether w is a terminal (TCGETS succeeds on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress prints a transfer's advance on stderr: a line rewritten in
// place on a terminal, else a line every 5 seconds (for -v into a log).
type progress struct {
	w     io.Writer
	total int64
	done  atomic.Int64
	tty   bool
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w io.Writer, total int64, tty bool) *progress {
	p := &progress{w: w, total: total, tty: tty, start: time.Now(), quit: make(chan struct{})}
	every := 5 * time.Second
	if tty {
		every = 500 * time.Millisecond
	}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.print(false)
			case <-p.quit:
				p.print(true)
				return
			}
		}
	})
	return p
}

func (p *progress) add(n int64) {
	if p != nil {
		p.done.Add(n)
	}
}

func (p *progress) print(final bool) {
	done := p.done.Load()
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el / 1e6
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	line := fmt.Sprintf("%s / %s (%.0f%%), %.1f MB/s", bytesize.Format(done), bytesize.Format(p.total), pct, rate)
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r%s in %.1fs\033[K\n", line, el)
	case p.tty:
		fmt.Fprintf(p.w, "\r%s\033[K", line)
	case final:
		fmt.Fprintf(p.w, "lunboot: read %s in %.1fs\n", line, el)
	default:
		fmt.Fprintf(p.w, "lunboot: read %s\n", line)
	}
}

func (p *progress) stop() {
	close(p.quit)
	p.wg.Wait()
}
