package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/lunboot/lunboot/internal/sysfs"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/vmtest"
	"github.com/lunboot/lunboot/pkg/blockdev"
	"golang.org/x/sys/unix"
)

// TestAttachNeedsModule runs on a host without the nbd driver (this
// project's machines): Attach must say how to get it.
func TestAttachNeedsModule(t *testing.T) {
	if vmtest.InGuest() {
		t.Skip("the guest has the module")
	}
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("this host has the nbd module loaded")
	}
	_, err := Attach(t.Context(), newMemDevice(1<<20, 512), AttachOptions{})
	if !errors.Is(err, ErrModuleNotLoaded) || !strings.Contains(err.Error(), "modprobe nbd") {
		t.Errorf("Attach without the module = %v, want ErrModuleNotLoaded naming modprobe nbd", err)
	}
	if err := Disconnect(t.Context(), 0); !errors.Is(err, ErrModuleNotLoaded) {
		t.Errorf("Disconnect without the module = %v, want ErrModuleNotLoaded", err)
	}
}

// TestKernel attaches memory-backed devices to the real driver of the
// Debian 6.1 kernel, inside a QEMU guest.
func TestKernel(t *testing.T) {
	vmtest.Run(t, vmtest.Options{Modules: []string{"nbd"}, CPUs: 2, Timeout: 4 * time.Minute}, func(t *testing.T) {
		t.Run("EveryConnectionAnswers", testEveryConnectionAnswers)
		t.Run("Geometry", testGeometry)
		t.Run("DirectIO", testDirectIO)
		t.Run("Buffered", testBuffered)
		t.Run("FsyncFlushes", testFsyncFlushes)
		t.Run("FUA", testFUA)
		t.Run("MBR", func(t *testing.T) { testPartitions(t, writeMBR) })
		t.Run("GPT", func(t *testing.T) { testPartitions(t, writeGPT) })
		t.Run("ConcurrentMultiConn", testConcurrent)
		t.Run("ReadError", testReadError)
		t.Run("ReadOnly", testReadOnly)
		t.Run("Detach", testDetach)
		t.Run("DisconnectFromElsewhere", testDisconnect)
		t.Run("Indexes", testIndexes)
		t.Run("SyncBounded", testSyncBounded)
	})
}

// TestKernelSlowWorkers attaches while the kernel is slow to start worker
// threads, in a guest of its own so that its workqueue pools hold no idle
// workers from earlier attaches. kthreadd, which creates them, is made
// SCHED_IDLE and every CPU busy: the device's receive work items then wait
// for a worker longer than the workqueue's mayday delay, and its rescuer
// thread runs them one after another, the first for the life of its socket
// (see ErrStalled). Attach must notice the unread socket and connect again;
// the device must then answer on every connection at once.
func TestKernelSlowWorkers(t *testing.T) {
	vmtest.Run(t, vmtest.Options{Modules: []string{"nbd"}, CPUs: 2}, func(t *testing.T) {
		defer vmtest.Watchdog(t, time.Minute, "nbd0")()
		var logs testenv.SyncBuffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		slowKernelWorkers(t, time.Second)
		ncpu := runtime.NumCPU()
		d := attachT(t, newMemDevice(4<<20, 512), AttachOptions{Index: 0, Connections: ncpu, Logger: logger})
		checkEveryConnectionAnswered(t, d)
		if strings.Contains(logs.String(), "connecting again") {
			t.Logf("the kernel left a connection unread and Attach connected again:\n%s", logs.String())
		} else {
			t.Logf("the kernel started every receive work item in time: the reconnect was not needed this run")
		}
		// Every connection keeps answering: one read per CPU, each of
		// which the kernel sends on that CPU's hardware queue.
		for cpu := range ncpu {
			if err := readFromCPU(d.Path(), cpu); err != nil {
				t.Errorf("read from CPU %d after Attach: %v", cpu, err)
			}
		}
	})
}

// slowKernelWorkers makes the kernel slow to create threads for d: kthreadd
// runs SCHED_IDLE while a busy goroutine holds each CPU.
func slowKernelWorkers(t *testing.T, d time.Duration) {
	t.Helper()
	const kthreadd = 2
	if err := unix.SchedSetAttr(kthreadd, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0); err != nil {
		t.Fatalf("making kthreadd SCHED_IDLE: %v", err)
	}
	end := time.Now().Add(d)
	var wg, started sync.WaitGroup
	for cpu := range runtime.NumCPU() {
		started.Add(1)
		wg.Go(func() {
			runtime.LockOSThread() // left locked: the thread is discarded with its affinity
			var set unix.CPUSet
			set.Set(cpu)
			unix.SchedSetaffinity(0, &set)
			started.Done()
			for time.Now().Before(end) {
			}
		})
	}
	started.Wait()
	t.Cleanup(func() {
		wg.Wait()
		if err := unix.SchedSetAttr(kthreadd, &unix.SchedAttr{Policy: unix.SCHED_NORMAL}, 0); err != nil {
			t.Errorf("restoring kthreadd: %v", err)
		}
	})
}

// testEveryConnectionAnswers checks that Attach has seen a reply on every
// connection before it returns (its read through each hardware queue).
func testEveryConnectionAnswers(t *testing.T) {
	d := attachT(t, newMemDevice(4<<20, 512), AttachOptions{Index: AnyIndex, Connections: runtime.NumCPU()})
	checkEveryConnectionAnswered(t, d)
}

func checkEveryConnectionAnswered(t *testing.T, d *Device) {
	t.Helper()
	for i, s := range d.Stats() {
		if s.Requests == 0 {
			t.Errorf("connection %d answered no request during Attach: %+v", i, d.Stats())
		}
	}
}

// readFromCPU reads the first 4 KiB of path with O_DIRECT from a thread
// bound to cpu.
func readFromCPU(path string, cpu int) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // left locked: the thread is discarded with its affinity
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Munmap(buf)
		_, err = unix.Pread(fd, buf, 0)
		errc <- err
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("no answer within 20s")
	}
}

func attachT(t *testing.T, dev blockdev.Device, o AttachOptions) *Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if o.Logger == nil {
		// Warnings (a reconnect during Attach) go to the console.
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	d, err := Attach(ctx, dev, o)
	if err != nil {
		t.Fatalf("Attach = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Detach(ctx); err != nil {
			t.Errorf("Detach(%s) = %v", d.Path(), err)
		}
	})
	return d
}

func ioctlU64(t *testing.T, fd int, req uint) uint64 {
	t.Helper()
	var v uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&v))); e != 0 {
		t.Fatalf("ioctl %#x: %v", req, e)
	}
	return v
}

func sysAttr(t *testing.T, d *Device, attr string) string {
	t.Helper()
	v, err := sysfs.ReadAttr(filepath.Join("/sys/block", filepath.Base(d.Path()), attr))
	if err != nil {
		t.Fatalf("read sysfs %s: %v", attr, err)
	}
	return v
}

// alignedBuf returns page-aligned memory, as O_DIRECT needs.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

func openDev(t *testing.T, path string, flags int) int {
	t.Helper()
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func testGeometry(t *testing.T) {
	tests := []struct {
		name string
		dev  func() blockdev.Device
		bs   int
		size int64
		trim bool
	}{
		{"512", func() blockdev.Device { return newMemDevice(16<<20, 512) }, 512, 16 << 20, false},
		{"4096 trim", func() blockdev.Device { m := newMemDevice(8<<20, 4096); m.canTrim = true; return m }, 4096, 8 << 20, true},
		{"odd size", func() blockdev.Device { return newMemDevice(3<<20+512, 512) }, 512, 3<<20 + 512, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := attachT(t, tt.dev(), AttachOptions{Index: AnyIndex, Connections: 2})
			fd := openDev(t, d.Path(), unix.O_RDONLY)
			if got := ioctlU64(t, fd, unix.BLKGETSIZE64); got != uint64(tt.size) {
				t.Errorf("BLKGETSIZE64(%s) = %d, want %d", d.Path(), got, tt.size)
			}
			if got, err := unix.IoctlGetUint32(fd, unix.BLKSSZGET); err != nil || got != uint32(tt.bs) {
				t.Errorf("BLKSSZGET(%s) = %d, %v, want %d", d.Path(), got, err, tt.bs)
			}
			if got := sysAttr(t, d, "queue/write_cache"); got != "write back" {
				t.Errorf("%s write_cache = %q, want \"write back\" (SEND_FLUSH)", d.Path(), got)
			}
			if got := sysAttr(t, d, "queue/fua"); got != "1" {
				t.Errorf("%s fua = %q, want 1 (SEND_FUA)", d.Path(), got)
			}
			if got := sysAttr(t, d, "queue/discard_max_bytes"); (got != "0") != tt.trim {
				t.Errorf("%s discard_max_bytes = %s, want discard enabled=%v", d.Path(), got, tt.trim)
			}
			if got := sysAttr(t, d, "ro"); got != "0" {
				t.Errorf("%s ro = %s, want 0", d.Path(), got)
			}
			st, err := Status(t.Context(), d.Index())
			if err != nil || !st.Connected {
				t.Errorf("Status(%d) = %+v, %v, want connected", d.Index(), st, err)
			}
		})
	}
}

func testDirectIO(t *testing.T) {
	mem := newMemDevice(16<<20, 512)
	d := attachT(t, mem, AttachOptions{Connections: 2})
	fd := openDev(t, d.Path(), unix.O_RDWR|unix.O_DIRECT)
	buf := alignedBuf(t, 1<<20)
	for i, tt := range []struct {
		off int64
		n   int
	}{{0, 4096}, {512, 512}, {1 << 20, 1 << 20}, {16<<20 - 4096, 4096}, {5 << 20, 128 << 10}} {
		want := pattern(tt.n, byte(i+1))
		copy(buf, want)
		if n, err := unix.Pwrite(fd, buf[:tt.n], tt.off); err != nil || n != tt.n {
			t.Fatalf("pwrite(O_DIRECT, off=%d, %d) = %d, %v", tt.off, tt.n, n, err)
		}
		data, _ := mem.snapshot()
		if !bytes.Equal(data[tt.off:tt.off+int64(tt.n)], want) {
			t.Errorf("after O_DIRECT write at %d the device does not hold the bytes", tt.off)
		}
		clear(buf)
		if n, err := unix.Pread(fd, buf[:tt.n], tt.off); err != nil || n != tt.n {
			t.Fatalf("pread(O_DIRECT, off=%d, %d) = %d, %v", tt.off, tt.n, n, err)
		}
		if !bytes.Equal(buf[:tt.n], want) {
			t.Errorf("O_DIRECT read at %d differs from what was written", tt.off)
		}
	}
}

func testBuffered(t *testing.T) {
	mem := newMemDevice(8<<20, 512)
	copy(mem.data, pattern(8<<20, 77))
	d := attachT(t, mem, AttachOptions{})
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Unaligned writes go through the page cache (read-modify-write).
	writes := []struct {
		off int64
		n   int
	}{{100, 1000}, {4095, 2}, {3 << 20, 300 << 10}}
	for i, w := range writes {
		if _, err := f.WriteAt(pattern(w.n, byte(i+10)), w.off); err != nil {
			t.Fatalf("WriteAt(%d, %d) = %v", w.off, w.n, err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync = %v", err)
	}
	want := pattern(8<<20, 77)
	for i, w := range writes {
		copy(want[w.off:], pattern(w.n, byte(i+10)))
	}
	data, _ := mem.snapshot()
	if !bytes.Equal(data, want) {
		t.Errorf("after buffered writes and fsync the device differs from the expected image")
	}
	// Drop the page cache and read everything back through the kernel.
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		t.Fatalf("BLKFLSBUF: %v", err)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatalf("ReadAt = %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("buffered read-back differs from the device image")
	}
}

func testFsyncFlushes(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	d := attachT(t, mem, AttachOptions{})
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := pattern(64<<10, 5)
	if _, err := f.WriteAt(want, 1<<20); err != nil {
		t.Fatal(err)
	}
	before := mem.flushes.Load()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync = %v", err)
	}
	if mem.flushes.Load() == before {
		t.Errorf("fsync sent no FLUSH to the device")
	}
	if _, durable := mem.snapshot(); !bytes.Equal(durable[1<<20:1<<20+len(want)], want) {
		t.Errorf("fsync returned but the written data is not durable on the device")
	}
}

func testFUA(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	d := attachT(t, fuaDevice{mem}, AttachOptions{})
	fd := openDev(t, d.Path(), unix.O_RDWR|unix.O_DIRECT|unix.O_DSYNC)
	buf := alignedBuf(t, 4096)
	copy(buf, pattern(4096, 3))
	if _, err := unix.Pwrite(fd, buf, 8192); err != nil {
		t.Fatalf("pwrite(O_DIRECT|O_DSYNC) = %v", err)
	}
	if mem.fuaWrites.Load() == 0 {
		t.Errorf("O_DSYNC direct write did not arrive as a FUA write (flushes=%d)", mem.flushes.Load())
	}
	if _, durable := mem.snapshot(); !bytes.Equal(durable[8192:12288], buf) {
		t.Errorf("O_DSYNC write returned but is not durable")
	}
}

func testPartitions(t *testing.T, write func([]byte, []testPart)) {
	mem := newMemDevice(16<<20, 512)
	copy(mem.data, pattern(16<<20, 1))
	parts := []testPart{{2048, 4096}, {8192, 16384}}
	write(mem.data, parts)
	d := attachT(t, mem, AttachOptions{Index: AnyIndex})
	want := []string{d.Path() + "p1", d.Path() + "p2"}
	if got := d.Partitions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Partitions() = %v, want %v", got, want)
	}
	for i, p := range parts {
		fd := openDev(t, want[i], unix.O_RDONLY)
		if got := ioctlU64(t, fd, unix.BLKGETSIZE64); got != p.sectors*512 {
			t.Errorf("size of %s = %d, want %d", want[i], got, p.sectors*512)
		}
		got := make([]byte, 4096)
		if _, err := unix.Pread(fd, got, 0); err != nil {
			t.Fatalf("read %s: %v", want[i], err)
		}
		if !bytes.Equal(got, mem.data[p.start*512:p.start*512+4096]) {
			t.Errorf("%s does not start at sector %d of the device", want[i], p.start)
		}
	}
}

// testConcurrent reads from goroutines pinned to each CPU: the kernel maps
// CPUs onto hardware queues, one per connection, so every connection is
// used and carries several requests at once.
func testConcurrent(t *testing.T) {
	const size = 32 << 20
	mem := newMemDevice(size, 512)
	copy(mem.data, pattern(size, 9))
	// A little latency per read, like a network disk, keeps requests in
	// flight long enough to overlap.
	mem.gate = func(op string, _ int64) {
		if op == "read" {
			time.Sleep(time.Millisecond)
		}
	}
	ncpu := runtime.NumCPU()
	d := attachT(t, mem, AttachOptions{Connections: ncpu})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 * ncpu {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(g % ncpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			fd, err := unix.Open(d.Path(), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
			if err != nil {
				errs <- err
				return
			}
			defer unix.Close(fd)
			buf, err := unix.Mmap(-1, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
			if err != nil {
				errs <- err
				return
			}
			defer unix.Munmap(buf)
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 40 {
				off := int64(r.IntN(size/4096-16)) * 4096
				if _, err := unix.Pread(fd, buf, off); err != nil {
					errs <- fmt.Errorf("pread at %d: %w", off, err)
					return
				}
				if !bytes.Equal(buf, mem.data[off:off+int64(len(buf))]) {
					errs <- fmt.Errorf("read at %d returned wrong data", off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stats := d.Stats()
	peak := 0
	for i, s := range stats {
		if s.Requests == 0 {
			t.Errorf("connection %d of %d served no request: %+v", i, len(stats), stats)
		}
		peak = max(peak, s.PeakInFlight)
	}
	if peak < 2 {
		t.Errorf("at most %d request in flight on any connection, want concurrency: %+v", peak, stats)
	}
	t.Logf("per-connection stats: %+v", stats)
}

func testReadError(t *testing.T) {
	const bad = 4 << 20
	mem := newMemDevice(8<<20, 512)
	mem.readErr = func(off int64, n int) error {
		if off < bad+4096 && off+int64(n) > bad {
			return errors.New("medium error")
		}
		return nil
	}
	d := attachT(t, mem, AttachOptions{})
	fd := openDev(t, d.Path(), unix.O_RDONLY|unix.O_DIRECT)
	buf := alignedBuf(t, 4096)
	if _, err := unix.Pread(fd, buf, bad); !errors.Is(err, unix.EIO) {
		t.Errorf("read of the failing range = %v, want EIO", err)
	}
	for _, off := range []int64{0, bad - 4096, bad + 4096, 8<<20 - 4096} {
		if _, err := unix.Pread(fd, buf, off); err != nil {
			t.Errorf("read at %d next to the failing range = %v, want success", off, err)
		}
	}
	if _, err := unix.Pread(fd, buf, bad); !errors.Is(err, unix.EIO) {
		t.Errorf("second read of the failing range = %v, want EIO again", err)
	}
}

func testReadOnly(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	mem.readOnly = true
	copy(mem.data, pattern(4<<20, 4))
	d := attachT(t, mem, AttachOptions{})
	if got := sysAttr(t, d, "ro"); got != "1" {
		t.Errorf("%s ro = %s, want 1", d.Path(), got)
	}
	if d.Flags()&FlagReadOnly == 0 {
		t.Errorf("Flags() = %v, want READ_ONLY", d.Flags())
	}
	// The kernel refuses writes itself; either the open or the write fails.
	if fd, err := unix.Open(d.Path(), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0); err == nil {
		buf := alignedBuf(t, 4096)
		_, werr := unix.Pwrite(fd, buf, 0)
		unix.Close(fd)
		if werr == nil {
			t.Errorf("write to a read-only export succeeded")
		}
	}
	if n := mem.writes.Load(); n != 0 {
		t.Errorf("read-only device saw %d writes", n)
	}
	fd := openDev(t, d.Path(), unix.O_RDONLY)
	buf := make([]byte, 4096)
	if _, err := unix.Pread(fd, buf, 4096); err != nil || !bytes.Equal(buf, mem.data[4096:8192]) {
		t.Errorf("read from the read-only export = %v", err)
	}
}

// nbdGoroutines returns the stacks of goroutines running this package's
// serving code.
func nbdGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pkg/nbd.Serve(") || strings.Contains(g, "pkg/nbd.(*server)") ||
			strings.Contains(g, "pkg/nbd.(*Device).serve") {
			out = append(out, g)
		}
	}
	return out
}

func waitNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := nbdGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d serving goroutines left after detach:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testDetach(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	writeMBR(mem.data, []testPart{{2048, 2048}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := Attach(ctx, mem, AttachOptions{Index: AnyIndex, Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Partitions()) != 1 {
		t.Fatalf("Partitions() = %v, want one", d.Partitions())
	}
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := pattern(8192, 6)
	if _, err := f.WriteAt(want, 0); err != nil { // stays in the page cache
		t.Fatal(err)
	}
	f.Close()
	if err := d.Detach(ctx); err != nil {
		t.Fatalf("Detach = %v", err)
	}
	select {
	case <-d.Done():
	default:
		t.Fatalf("Done not closed after Detach")
	}
	if err := d.Err(); err != nil {
		t.Errorf("Err() after Detach = %v, want nil", err)
	}
	if _, durable := mem.snapshot(); !bytes.Equal(durable[:8192], want) {
		t.Errorf("data written through the page cache was not flushed to the device by Detach")
	}
	sysDir := filepath.Join("/sys/block", filepath.Base(d.Path()))
	if n, err := readSysSize(sysDir); err != nil || n != 0 {
		t.Errorf("size of %s after Detach = %d, %v, want 0", d.Path(), n, err)
	}
	if st, err := Status(ctx, d.Index()); err != nil || st.Connected {
		t.Errorf("Status(%d) after Detach = %+v, %v, want disconnected", d.Index(), st, err)
	}
	if _, err := os.Stat(filepath.Join(sysDir, "pid")); err == nil {
		t.Errorf("%s/pid still present after Detach", sysDir)
	}
	if p := partitions(sysDir); len(p) != 0 {
		t.Errorf("partitions of %s after Detach = %v, want none (stale partitions left behind)", d.Path(), p)
	}
	if err := d.Detach(ctx); err != nil {
		t.Errorf("second Detach = %v, want nil", err)
	}
	waitNoGoroutines(t)
}

func testDisconnect(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := Attach(ctx, mem, AttachOptions{Index: AnyIndex})
	if err != nil {
		t.Fatal(err)
	}
	// What `lunboot detach /dev/nbdN` does from another process.
	idx, err := ParseDevice(d.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := Disconnect(ctx, idx); err != nil {
		t.Fatalf("Disconnect(%d) = %v", idx, err)
	}
	if err := d.Wait(ctx); err != nil {
		t.Errorf("Wait after an external disconnect = %v, want nil (clean NBD_CMD_DISC)", err)
	}
	if err := d.Detach(ctx); err != nil {
		t.Errorf("Detach after an external disconnect = %v, want nil", err)
	}
	if err := Disconnect(ctx, 1<<19); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Disconnect(no such device) = %v, want ErrNoDevice", err)
	}
	if _, err := Status(ctx, 1<<19); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Status(no such device) = %v, want ErrNoDevice", err)
	}
	waitNoGoroutines(t)
}

func testIndexes(t *testing.T) {
	a := attachT(t, newMemDevice(1<<20, 512), AttachOptions{Index: 5})
	if a.Index() != 5 || a.Path() != "/dev/nbd5" {
		t.Errorf("Attach(Index 5) = %d %s, want 5 /dev/nbd5", a.Index(), a.Path())
	}
	b := attachT(t, newMemDevice(1<<20, 512), AttachOptions{Index: AnyIndex})
	c := attachT(t, newMemDevice(1<<20, 512), AttachOptions{Index: AnyIndex})
	if b.Index() == c.Index() || b.Index() == 5 || c.Index() == 5 {
		t.Errorf("AnyIndex gave %d and %d next to 5, want distinct devices", b.Index(), c.Index())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := Attach(ctx, newMemDevice(1<<20, 512), AttachOptions{Index: 5}); !errors.Is(err, ErrBusy) {
		t.Errorf("Attach to the busy /dev/nbd5 = %v, want ErrBusy", err)
	}
	// Beyond nbds_max the kernel creates the device on demand.
	e := attachT(t, newMemDevice(1<<20, 512), AttachOptions{Index: 40})
	if _, err := os.Stat(e.Path()); err != nil {
		t.Errorf("Attach(Index 40) made no %s: %v", e.Path(), err)
	}
	list, err := List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	connected := map[int]bool{}
	for _, s := range list {
		connected[s.Index] = s.Connected
	}
	for _, idx := range []int{5, b.Index(), c.Index(), 40} {
		if !connected[idx] {
			t.Errorf("List() shows /dev/nbd%d not connected: %v", idx, list)
		}
	}
}

// testSyncBounded checks that Sync and Detach keep to their bound when the
// device stops answering writes (a disk whose target went away): the
// kernel, given no request timeout, would hold their fsync without end.
func testSyncBounded(t *testing.T) {
	mem := newMemDevice(4<<20, 512)
	release := make(chan struct{})
	var hang atomic.Bool
	mem.gate = func(op string, _ int64) {
		if op == "write" && hang.Load() {
			<-release
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := Attach(ctx, mem, AttachOptions{Index: AnyIndex, Connections: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The file stays open: the last close of a block device writes its
	// cache back (blkdev_put), which is not the call under test.
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hang.Store(true)
	if _, err := f.WriteAt(pattern(8192, 7), 0); err != nil { // stays in the page cache
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = Sync(sctx, d.Path())
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sync(%s) with the device not answering = %v, want context.DeadlineExceeded", d.Path(), err)
	}
	// Detach gives up on its flush and on the disconnect when its
	// context ends, closes the connections and, the device calls still
	// blocked, reports it; the device answers again later.
	time.AfterFunc(2*time.Second, func() { close(release) })
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	err = d.Detach(dctx)
	dcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Detach(%s) with the device not answering = %v, want context.DeadlineExceeded", d.Path(), err)
	}
	if want := "backing disk of " + d.Path(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Detach(%s) with the device not answering = %v, want it to name what did not answer (%q)", d.Path(), err, want)
	}
	select {
	case <-d.Done():
	case <-ctx.Done():
		t.Fatalf("connections of %s still served after Detach gave up and the device answered", d.Path())
	}
	// With its connections closed and the last opener gone, the kernel
	// drops the device's configuration.
	f.Close()
	var st DeviceStatus
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if err := poll(pctx, func() bool {
		st, err = Status(pctx, d.Index())
		return err == nil && !st.Connected
	}); err != nil {
		t.Errorf("Status(%d) after Detach and close = %+v, %v, want disconnected", d.Index(), st, err)
	}
}
