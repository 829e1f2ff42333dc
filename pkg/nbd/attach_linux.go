package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/sysfs"
	"github.com/lunboot/lunboot/pkg/blockdev"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds one netlink exchange when ctx has no deadline.
const netlinkTimeout = 15 * time.Second

// sysBlock is where the kernel publishes block devices.
const sysBlock = "/sys/block"

// genlConn is one generic netlink socket with the nbd family resolved.
type genlConn struct {
	c      *genetlink.Conn
	family uint16
}

func dialNBD() (*genlConn, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("nbd: open generic netlink socket: %w", err)
	}
	f, err := c.GetFamily(genlFamily)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: generic netlink family %q not registered", ErrModuleNotLoaded, genlFamily)
		}
		return nil, fmt.Errorf("nbd: look up generic netlink family %q: %w", genlFamily, err)
	}
	return &genlConn{c: c, family: f.ID}, nil
}

func (g *genlConn) Close() error { return g.c.Close() }

// execute sends one command and returns the replies, bounded by ctx (or
// netlinkTimeout when ctx has no deadline).
func (g *genlConn) execute(ctx context.Context, cmd uint8, body []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(netlinkTimeout)
	}
	if err := g.c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { g.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msgs, err := g.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: genlVersion},
		Data:   body,
	}, g.family, flags)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return msgs, err
}

// explain turns the kernel's bare errno into what to check.
func explain(op string, index int, err error) error {
	name := "an NBD device"
	if index != AnyIndex {
		name = DevicePath(index)
	}
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %s %s: connected or held open by another process (pick another index, or nbd.AnyIndex): %w", ErrBusy, op, name, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("nbd: %s %s: needs CAP_SYS_ADMIN (run as root): %w", op, name, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("nbd: %s %s: the kernel rejected the request (see dmesg): %w", op, name, err)
	}
	return fmt.Errorf("nbd: %s %s: %w", op, name, err)
}

// attachAttempts bounds the connects Attach makes when the kernel leaves a
// connection unread (ErrStalled).
const attachAttempts = 3

func attach(ctx context.Context, dev blockdev.Device, o AttachOptions) (*Device, error) {
	o = o.withDefaults(dev)
	if err := o.validate(dev, os.Getpagesize()); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		d, err := attachOnce(ctx, dev, o)
		if err == nil || !errors.Is(err, ErrStalled) || ctx.Err() != nil {
			return d, err
		}
		if attempt == attachAttempts {
			return nil, fmt.Errorf("%w (tried %d times)", err, attempt)
		}
		// The workers the kernel started for the failed attempt stay
		// idle in its pool for minutes (IDLE_WORKER_TIMEOUT), so the next
		// connect's receive work items find threads waiting for them.
		o.Logger.Warn("nbd: the kernel is not reading one of the connections; connecting again",
			"attempt", attempt, "err", err)
		if o.Index != AnyIndex {
			if err := waitReleased(ctx, o.Index); err != nil {
				return nil, err
			}
		}
	}
}

// waitReleased waits (bounded) until the kernel has dropped the
// configuration of /dev/nbd<index>, so that it can be connected again.
func waitReleased(ctx context.Context, index int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var last DeviceStatus
	err := poll(ctx, func() bool {
		st, err := Status(ctx, index)
		last = st
		return err == nil && !st.Connected
	})
	if err != nil {
		return fmt.Errorf("%w: %s still held after the disconnect (connected=%v): %w", ErrBusy, DevicePath(index), last.Connected, err)
	}
	return nil
}

// attachOnce connects the kernel to fresh socket pairs and waits until the
// device works, or undoes the connect.
func attachOnce(ctx context.Context, dev blockdev.Device, o AttachOptions) (*Device, error) {
	g, err := dialNBD()
	if err != nil {
		if _, serr := os.Stat("/dev/nbd0"); serr != nil && errors.Is(err, ErrModuleNotLoaded) {
			err = fmt.Errorf("%w (and /dev/nbd0 does not exist)", err)
		}
		return nil, err
	}
	defer g.Close()

	d := &Device{
		index:   o.Index,
		dev:     dev,
		log:     o.Logger,
		flags:   exportFlags(dev, o),
		counter: make([]*Counters, o.Connections),
		done:    make(chan struct{}),
	}
	conns := make([]io.ReadWriteCloser, 0, o.Connections)
	kernelFDs := make([]int, 0, o.Connections)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
		for _, fd := range kernelFDs {
			unix.Close(fd)
		}
	}
	for i := range o.Connections {
		d.counter[i] = new(Counters)
		c, kfd, err := socketPair()
		if err != nil {
			closeAll()
			return nil, err
		}
		conns = append(conns, c)
		kernelFDs = append(kernelFDs, kfd)
	}

	// The servers run before the kernel knows the sockets: a host's udev
	// probes the device the moment it appears.
	serveCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.serve(serveCtx, conns, o)
	stopServers := func() {
		cancel()
		<-d.done // Serve returns once its device calls return
	}

	body, err := connectRequest{
		index:           o.Index,
		size:            uint64(dev.Size()),
		blockSize:       uint64(o.BlockSize),
		timeout:         o.Timeout,
		deadConnTimeout: o.DeadConnTimeout,
		flags:           d.flags,
		fds:             kernelFDs,
		backend:         o.Backend,
	}.encode()
	if err != nil {
		closeAll()
		stopServers()
		return nil, err
	}
	msgs, err := g.execute(ctx, genlCmdConnect, body, netlink.Request)
	// The kernel holds its own references to the sockets it accepted
	// (nbd_add_socket); ours are no longer needed either way.
	for _, fd := range kernelFDs {
		unix.Close(fd)
	}
	kernelFDs = nil
	if err != nil {
		stopServers()
		return nil, explain("connect", o.Index, err)
	}
	if len(msgs) == 0 {
		stopServers()
		return nil, errors.New("nbd: connect: the kernel sent no reply")
	}
	index, err := decodeConnectReply(msgs[0].Data)
	if err != nil {
		stopServers()
		return nil, err
	}
	d.index = index
	d.path = DevicePath(index)
	o.Logger.Debug("nbd: kernel accepted the connection", "dev", d.path, "conns", o.Connections, "flags", d.flags)

	var reads sync.WaitGroup
	if err := d.settle(ctx, o, conns, &reads); err != nil {
		dctx, dcancel := context.WithTimeout(context.Background(), DefaultDetachTimeout)
		defer dcancel()
		// The disconnect shuts the kernel's sockets down, which ends
		// every receive work item (and with it a rescuer's hold on the
		// others) and fails what is still queued: the reads settle
		// started return.
		if derr := disconnect(dctx, index); derr != nil {
			o.Logger.Warn("nbd: disconnect after failed attach", "dev", d.path, "err", derr)
		}
		if !waitGroup(&reads, 5*time.Second) {
			// Closing our ends makes the kernel's sends and
			// receives fail too.
			stopServers()
			if !waitGroup(&reads, DefaultDetachTimeout) {
				o.Logger.Warn("nbd: reads through the device still blocked after the disconnect", "dev", d.path)
			}
		}
		stopServers()
		return nil, fmt.Errorf("nbd: attach %s: %w", d.path, err)
	}
	o.Logger.Info("nbd: attached", "dev", d.path, "size", dev.Size(), "block_size", o.BlockSize,
		"conns", o.Connections, "flags", d.flags, "partitions", d.parts)
	return d, nil
}

// waitGroup waits for wg at most d and reports whether it finished.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// socketPair returns our end of an AF_UNIX stream pair as a net.Conn (so
// reads and writes go through the runtime poller and Close interrupts
// them) and the kernel's end as a raw descriptor.
func socketPair() (io.ReadWriteCloser, int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("nbd: socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "nbd-server")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, -1, fmt.Errorf("nbd: socketpair: %w", err)
	}
	return c, fds[1], nil
}

// settle waits for the device node and its size, reads once through each
// of the device's hardware queues (the first of those opens runs the
// partition scan), and waits for the partition nodes, all within
// o.ScanTimeout. Meanwhile it watches the connections: a reply the kernel
// leaves unread ends the wait with ErrStalled. The reads it starts are
// counted in reads; some may still be blocked in the kernel when it fails.
//
// Linux sends the requests of hardware queue i on socket i
// (nbd_queue_rq: hctx->queue_num), and a request enters the queue of the CPU
// that submits it. Reading once from a CPU of every queue is thus the one
// way to see each connection answer before the device is handed out: the
// kernel's receive work for a socket may never have started (ErrStalled),
// and the first request on it would otherwise wait 30 seconds for the
// kernel's timeout.
func (d *Device) settle(ctx context.Context, o AttachOptions, conns []io.ReadWriteCloser, reads *sync.WaitGroup) error {
	ctx, cancel := context.WithTimeout(ctx, o.ScanTimeout)
	defer cancel()
	sysDir := filepath.Join(sysBlock, filepath.Base(d.path))
	want := d.dev.Size() &^ 511
	var size int64
	err := poll(ctx, func() bool {
		if _, err := os.Stat(d.path); err != nil {
			return false
		}
		size, _ = readSysSize(sysDir)
		return size == want
	})
	if err != nil {
		if _, serr := os.Stat(d.path); serr != nil {
			return fmt.Errorf("device node %s did not appear (is devtmpfs mounted on /dev?): %w", d.path, err)
		}
		return fmt.Errorf("kernel reports %d bytes for %s, want %d: %w", size, d.path, want, err)
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	stalled := make(chan error, 1)
	w := stallWatch{
		conns:    len(conns),
		unread:   func(i int) (int, bool) { return unreadBytes(conns[i]) },
		answered: func(i int) uint64 { return d.counter[i].requests.Load() },
		after:    stallAfter,
		every:    stallSample,
	}
	go func() { stalled <- w.run(wctx) }()

	queues := queueCPUs(sysDir)
	if len(queues) == 0 {
		queues = []hwQueue{{}} // no map in sysfs: one read from anywhere
	}
	for _, q := range queues {
		done := make(chan error, 1)
		reads.Go(func() { done <- readPinned(d.path, q.cpus, o.BlockSize) })
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("read through hardware queue %d: %w", q.index, err)
			}
			o.Logger.Debug("nbd: read through hardware queue", "dev", d.path, "queue", q.index, "cpus", q.cpus)
		case err := <-stalled:
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("read through hardware queue %d: %w", q.index, err)
		case <-ctx.Done():
			return fmt.Errorf("read through hardware queue %d: %w", q.index, ctx.Err())
		}
	}
	stopWatch()

	d.parts = partitions(sysDir)
	err = poll(ctx, func() bool {
		for _, p := range d.parts {
			if _, err := os.Stat(p); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("partition nodes %v did not all appear: %w", d.parts, err)
	}
	return nil
}

// readPinned opens the block device at path and reads its first block with
// O_DIRECT, so that the request reaches the driver, from one of cpus (any
// CPU when none of them is allowed). Opening the whole disk runs a pending
// partition scan (blkdev_get_whole → bdev_disk_changed), from the same CPU;
// its partitions are registered, and their devtmpfs nodes made, before the
// open returns.
func readPinned(path string, cpus []int, blockSize int) error {
	// The thread stays locked to this goroutine: its affinity is
	// narrowed below, and the runtime ends a thread whose goroutine exits
	// locked instead of reusing it.
	runtime.LockOSThread()
	for _, c := range cpus {
		var set unix.CPUSet
		set.Set(c)
		if unix.SchedSetaffinity(0, &set) == nil {
			break // an offline or forbidden CPU fails; try the next
		}
	}
	fd, err := retryEINTR(func() (int, error) { return unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0) })
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	// O_DIRECT wants an aligned buffer: a page from mmap is.
	buf, err := unix.Mmap(-1, 0, max(os.Getpagesize(), blockSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("buffer for %s: %w", path, err)
	}
	defer unix.Munmap(buf)
	if _, err := retryEINTR(func() (int, error) { return unix.Pread(fd, buf[:blockSize], 0) }); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// hwQueue is one blk-mq hardware queue and the CPUs whose requests enter it.
type hwQueue struct {
	index int
	cpus  []int
}

// queueCPUs returns the hardware queues of the disk at sysDir that have
// CPUs (/sys/block/nbdN/mq/<queue>/cpu_list, "0, 2"), in queue order, or
// nil when sysfs has no map. A queue without CPUs gets no requests.
func queueCPUs(sysDir string) []hwQueue {
	ents, err := os.ReadDir(filepath.Join(sysDir, "mq"))
	if err != nil {
		return nil
	}
	var out []hwQueue
	for _, e := range ents {
		q, err := strconv.Atoi(e.Name())
		if err != nil || q < 0 {
			continue
		}
		list, err := sysfs.ReadAttr(filepath.Join(sysDir, "mq", e.Name(), "cpu_list"))
		if err != nil {
			continue
		}
		if cpus := parseCPUList(list); len(cpus) > 0 {
			out = append(out, hwQueue{q, cpus})
		}
	}
	slices.SortFunc(out, func(a, b hwQueue) int { return a.index - b.index })
	return out
}

// parseCPUList parses blk-mq's "0, 1, 5" (blk_mq_hw_sysfs_cpus_show).
func parseCPUList(s string) []int {
	var cpus []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		if c, err := strconv.Atoi(f); err == nil && c >= 0 {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// unreadBytes returns the bytes written on c that the peer has not read yet
// (SIOCOUTQ; for AF_UNIX the memory of the queued buffers), or false when c
// is not a socket or is closed.
func unreadBytes(c io.ReadWriteCloser) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}

// poll calls cond every 10 ms until it holds or ctx is done.
func poll(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// readSysSize returns a block device's size in bytes from sysfs (which
// counts 512-byte sectors whatever the block size).
func readSysSize(sysDir string) (int64, error) {
	v, err := sysfs.ReadAttr(filepath.Join(sysDir, "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * 512, nil
}

// partitions lists /dev/<disk>pN for the partitions sysfs shows under the
// disk, ordered by N.
func partitions(sysDir string) []string {
	disk := filepath.Base(sysDir)
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return nil
	}
	type part struct {
		n    int
		name string
	}
	var ps []part
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), disk+"p")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil {
			ps = append(ps, part{n, e.Name()})
		}
	}
	slices.SortFunc(ps, func(a, b part) int { return a.n - b.n })
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "/dev/" + p.name
	}
	return out
}

// syncBlockDevice writes back the kernel's cached pages of the device and
// makes it send a FLUSH (fsync on a block device, blkdev_fsync). It returns
// when ctx is done even if the fsync has not: without NBD_ATTR_TIMEOUT the
// kernel waits for a server that stopped answering without end. The fsync
// then returns in the background once the device is disconnected, which
// fails what is still queued.
func syncBlockDevice(ctx context.Context, path string) error {
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		done <- f.Sync()
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// Who serves the device differs by caller (this process, or
		// another one for Sync): each says what to check.
		return fmt.Errorf("unfinished when the time ran out: %w", ctx.Err())
	}
}

// dropPartitions opens and closes a disconnected device: the open finds
// the disk marked for a partition scan (nbd_open sets GD_NEED_PART_SCAN on
// a disconnected device) and, the capacity being zero, removes the old
// partitions without reading anything.
func dropPartitions(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

func disconnect(ctx context.Context, index int) error {
	g, err := dialNBD()
	if err != nil {
		return err
	}
	defer g.Close()
	body, err := encodeIndex(index)
	if err != nil {
		return err
	}
	// The kernel sends no reply to DISCONNECT, only the acknowledgement
	// asked for here; without it Execute would wait for nothing.
	if _, err := g.execute(ctx, genlCmdDisconnect, body, netlink.Request|netlink.Acknowledge); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w: disconnect %s: the kernel has no such device: %w", ErrNoDevice, DevicePath(index), err)
		}
		return explain("disconnect", index, err)
	}
	return nil
}

func status(ctx context.Context, index int) ([]DeviceStatus, error) {
	g, err := dialNBD()
	if err != nil {
		return nil, err
	}
	defer g.Close()
	body, err := encodeIndex(index)
	if err != nil {
		return nil, err
	}
	msgs, err := g.execute(ctx, genlCmdStatus, body, netlink.Request)
	if err != nil {
		return nil, explain("status", index, err)
	}
	var out []DeviceStatus
	for _, m := range msgs {
		st, err := decodeStatusReply(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, st...)
	}
	return out, nil
}
