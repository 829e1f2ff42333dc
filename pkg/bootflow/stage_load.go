package bootflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
)

// load is stage 8: the entry's kernel and initrd copied from the LUN into
// memory (tmpfs), with progress, because kexec_file_load takes files and
// the LUN goes away before the jump.
func (b *boot) load(ctx context.Context) (string, error) {
	e := b.entry
	var total int64
	start := time.Now()
	b.kernel = b.tempPath("lunboot-kernel")
	n, err := b.copyOut(ctx, "kernel", e.Kernel, b.kernel)
	if err != nil {
		return "", err
	}
	total += n
	if e.Initrd != nil {
		b.initrd = b.tempPath("lunboot-os-initrd")
		m, err := b.copyOut(ctx, "initrd", e.Initrd, b.initrd)
		if err != nil {
			return "", err
		}
		total += m
	}
	d := time.Since(start)
	return fmt.Sprintf("kernel %s, initrd %s: %s in %s (%.1f MB/s)", bytesize.Format(n), bytesize.Format(total-n),
		bytesize.Format(total), d.Round(10*time.Millisecond), float64(total)/1e6/max(d.Seconds(), 1e-3)), nil
}

// copyOut copies r to the file dst, reporting progress every two seconds.
func (b *boot) copyOut(ctx context.Context, what string, r io.ReaderAt, dst string) (int64, error) {
	f, err := os.Create(dst)
	if err != nil {
		return 0, fmt.Errorf("creating %s copy: %w", what, err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var off int64
	start, last := time.Now(), time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		n, rerr := r.ReadAt(buf, off)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return off, fmt.Errorf("writing %s copy: %w", what, err)
			}
			off += int64(n)
		}
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			b.o.Console.Info("  %s: %s so far (%.1f MB/s)", what, bytesize.Format(off), float64(off)/1e6/time.Since(start).Seconds())
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return off, fmt.Errorf("reading the %s from the LUN: %w", what, rerr)
		}
	}
	if off == 0 {
		return 0, fmt.Errorf("the entry's %s is empty", what)
	}
	return off, f.Close()
}
