package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lunboot/lunboot/pkg/blockdev"
)

// AnyIndex asks the kernel to pick an unused /dev/nbdN (or create one).
const AnyIndex = -1

// Defaults for AttachOptions.
const (
	// MaxDefaultConnections caps the default connection count. The kernel
	// gives each socket its own hardware queue and maps CPUs onto queues,
	// so more connections than CPUs leave queues idle.
	MaxDefaultConnections = 8
	// DefaultScanTimeout bounds the wait for the device node and its
	// partitions after the kernel accepted the connection.
	DefaultScanTimeout = 10 * time.Second
	// DefaultDetachTimeout bounds Detach when its context has no deadline.
	DefaultDetachTimeout = 30 * time.Second
)

// Errors callers may branch on.
var (
	// ErrNotSupported is returned off Linux: only Linux has the driver.
	ErrNotSupported = errors.New("nbd: the kernel NBD driver needs Linux")
	// ErrModuleNotLoaded means the generic netlink family "nbd" is absent.
	ErrModuleNotLoaded = errors.New("nbd: kernel NBD driver not available: load the nbd module (modprobe nbd)")
	// ErrNoDevice means no /dev/nbdN exists with the given index.
	ErrNoDevice = errors.New("nbd: no such NBD device")
	// ErrBusy means the requested device is connected or held open.
	ErrBusy = errors.New("nbd: device busy")
)

// AttachOptions configures Attach. The zero value attaches /dev/nbd0.
type AttachOptions struct {
	// Index selects /dev/nbd<Index>; AnyIndex lets the kernel choose.
	Index int
	// Connections is the number of sockets, each served by its own Serve
	// (default: the CPU count, at most MaxDefaultConnections).
	Connections int
	// BlockSize is the logical block size the kernel uses (default
	// dev.BlockSize()); Linux 6.1 accepts powers of two from 512 to the
	// page size (blk_validate_block_size).
	BlockSize int
	// Timeout is the kernel's per-request timeout (NBD_ATTR_TIMEOUT,
	// rounded up to seconds). Zero leaves it unset: Linux then never fails
	// a request on its own, it only logs "Possible stuck request" every 30
	// s (nbd_xmit_timeout) — right for a boot disk whose device layer
	// bounds and retries each command itself.
	Timeout time.Duration
	// DeadConnTimeout is how long the kernel holds I/O when every
	// connection is dead, waiting for a reconnect (NBD_ATTR_DEAD_CONN_TIMEOUT).
	// Zero leaves it unset.
	DeadConnTimeout time.Duration
	// ReadOnly exports the device read-only even if it is writable.
	ReadOnly bool
	// Rotational tells the kernel the device seeks (NBD_FLAG_ROTATIONAL).
	Rotational bool
	// Backend is an optional identifier the kernel shows in
	// /sys/block/nbdN/backend (NBD_ATTR_BACKEND_IDENTIFIER).
	Backend string
	// ScanTimeout bounds the wait for /dev/nbdN and its partitions
	// (DefaultScanTimeout when zero).
	ScanTimeout time.Duration
	// Server configures each connection's Serve. Its Logger and Counters
	// are set by Attach.
	Server Options
	// Logger receives attach, detach and connection events. Nil discards.
	Logger *slog.Logger
}

func (o AttachOptions) withDefaults(dev blockdev.Device) AttachOptions {
	if o.Connections <= 0 {
		o.Connections = min(runtime.NumCPU(), MaxDefaultConnections)
	}
	if o.BlockSize <= 0 {
		o.BlockSize = dev.BlockSize()
	}
	if o.ScanTimeout <= 0 {
		o.ScanTimeout = DefaultScanTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate checks what the kernel would otherwise reject with a bare EINVAL.
func (o AttachOptions) validate(dev blockdev.Device, pageSize int) error {
	if o.Index < AnyIndex {
		return fmt.Errorf("nbd: invalid device index %d", o.Index)
	}
	if dev.Size() <= 0 {
		return fmt.Errorf("nbd: device size %d: nothing to export", dev.Size())
	}
	bs := o.BlockSize
	if bs < 512 || bs > pageSize || bs&(bs-1) != 0 {
		return fmt.Errorf("nbd: block size %d: the kernel takes a power of two from 512 to %d (the page size)", bs, pageSize)
	}
	return nil
}

// exportFlags computes the transmission flags advertised for dev.
// SEND_FUA is always set: without a FUAWriter, Serve turns a FUA write into
// WriteAt and Flush, which costs what the kernel's own emulation would, minus
// a round trip. WRITE_ZEROES is not advertised: Linux 6.1 ignores it, and
// newer kernels would then send whole-range zeroing that a network disk
// serves no faster than ordinary writes.
func exportFlags(dev blockdev.Device, o AttachOptions) TransmissionFlags {
	f := FlagHasFlags | FlagSendFlush | FlagSendFUA
	ro := o.ReadOnly
	if r, ok := dev.(blockdev.ReadOnly); ok && r.ReadOnly() {
		ro = true
	}
	if ro {
		f |= FlagReadOnly
	}
	if t, ok := dev.(blockdev.Trimmer); ok && t.CanTrim() && !ro {
		f |= FlagSendTrim
	}
	if o.Rotational {
		f |= FlagRotational
	}
	if o.Connections > 1 {
		f |= FlagCanMultiConn
	}
	return f
}

// DevicePath returns "/dev/nbd<index>".
func DevicePath(index int) string { return "/dev/nbd" + strconv.Itoa(index) }

// ParseDevice accepts "/dev/nbd3", "nbd3" or "3" and returns 3.
func ParseDevice(s string) (int, error) {
	t := strings.TrimPrefix(s, "/dev/")
	t = strings.TrimPrefix(t, "nbd")
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || t == "" || t[0] == '+' || t[0] == '-' {
		return 0, fmt.Errorf("nbd: %q is not an NBD device (want /dev/nbdN, nbdN or N)", s)
	}
	return n, nil
}

// DeviceStatus is one device as NBD_CMD_STATUS reports it.
type DeviceStatus struct {
	Index int
	// Connected is the kernel's view: the device holds a configuration
	// (nbd_genl_status reports config_refs != 0). An unconnected device
	// that someone holds open also counts.
	Connected bool
}

// Device is a kernel NBD device served by this process.
type Device struct {
	index   int
	path    string
	parts   []string
	flags   TransmissionFlags
	dev     blockdev.Device
	log     *slog.Logger
	cancel  context.CancelFunc // stops the servers
	counter []*Counters
	done    chan struct{}
	err     error // set before done is closed

	detachMu sync.Mutex
	detached bool
}

// Index returns N of /dev/nbdN.
func (d *Device) Index() int { return d.index }

// Path returns "/dev/nbdN".
func (d *Device) Path() string { return d.path }

// Partitions returns the partition device paths ("/dev/nbd0p1", …) the
// kernel found when the device was attached, in partition order.
func (d *Device) Partitions() []string { return slices.Clone(d.parts) }

// Flags returns the transmission flags given to the kernel.
func (d *Device) Flags() TransmissionFlags { return d.flags }

// Stats returns one snapshot per connection.
func (d *Device) Stats() []Stats {
	out := make([]Stats, len(d.counter))
	for i, c := range d.counter {
		out[i] = c.Snapshot()
	}
	return out
}

// Done is closed when every connection has ended: after Detach, after a
// disconnect from elsewhere (`lunboot detach`), or when the kernel dropped
// the connections.
func (d *Device) Done() <-chan struct{} { return d.done }

// Err returns nil while the device is served and after a clean disconnect
// (NBD_CMD_DISC on every connection); otherwise why the connections ended.
func (d *Device) Err() error {
	select {
	case <-d.done:
		return d.err
	default:
		return nil
	}
}

// Wait blocks until Done is closed or ctx is done, and returns Err or the
// context's error.
func (d *Device) Wait(ctx context.Context) error {
	select {
	case <-d.done:
		return d.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve runs one Serve per connection and closes done when all returned.
func (d *Device) serve(ctx context.Context, conns []io.ReadWriteCloser, o AttachOptions) {
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		so := o.Server
		so.Logger = o.Logger.With("conn", i)
		so.Counters = d.counter[i]
		wg.Go(func() {
			err := Serve(ctx, c, d.dev, so)
			if err != nil && ctx.Err() == nil {
				o.Logger.Warn("nbd: connection ended", "conn", i, "err", err)
				errs[i] = fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	go func() {
		wg.Wait()
		d.err = errors.Join(errs...)
		close(d.done)
	}()
}

// Detach flushes the kernel's cache for the device, disconnects it
// (NBD_CMD_DISCONNECT), waits for the connections to finish the requests in
// flight, and flushes the block device. Without a deadline on ctx it is
// bounded by DefaultDetachTimeout; when the bound passes, the connections
// are closed from this side. A flush that takes all of ctx (a server that
// stopped answering) still leaves the disconnect and the wait for the
// connections afterDeadlineGrace each. A second call returns nil.
func (d *Device) Detach(ctx context.Context) error {
	d.detachMu.Lock()
	defer d.detachMu.Unlock()
	if d.detached {
		return nil
	}
	d.detached = true
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDetachTimeout)
		defer cancel()
	}
	var errs []error
	select {
	case <-d.done:
		d.log.Info("nbd: device already disconnected", "dev", d.path, "err", d.err)
	default:
		// fsync on the block device writes back its page cache and sends
		// a FLUSH (blkdev_fsync), while the connections still serve.
		if err := syncBlockDevice(ctx, d.path); err != nil {
			if ctx.Err() != nil {
				// This process serves the device: what did not
				// answer is the disk behind it.
				err = fmt.Errorf("%w (the backing disk of %s, which this process serves, did not complete the writes and flush in time)", err, d.path)
			}
			errs = append(errs, fmt.Errorf("flush kernel cache: %w", err))
		}
		// The disconnect is what fails the requests the kernel still
		// holds (nbd_disconnect_and_put clears the queue), a flush left
		// waiting above among them: it is sent even when ctx ran out.
		nctx, ncancel := afterDeadline(ctx)
		defer ncancel()
		if err := disconnect(nctx, d.index); err != nil {
			errs = append(errs, err)
		}
	}
	// The connections then finish the requests they are serving; that too
	// gets its short bound when a flush took all of ctx.
	wctx, wcancel := afterDeadline(ctx)
	defer wcancel()
	select {
	case <-d.done:
	case <-wctx.Done():
		d.log.Warn("nbd: connections did not end after disconnect; closing them", "dev", d.path)
		d.cancel()
		errs = append(errs, fmt.Errorf("wait for connections to end: %w", wctx.Err()))
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			errs = append(errs, errors.New("device calls still running after the connections were closed"))
		}
	}
	d.cancel()
	// Linux 6.1 keeps a disconnected disk's partitions (nbdNp1…, now
	// empty) until its next partition scan; opening the disk runs one.
	if err := dropPartitions(d.path); err != nil {
		d.log.Warn("nbd: could not clear stale partitions", "dev", d.path, "err", err)
	}
	if d.flags&FlagReadOnly == 0 {
		if err := d.dev.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush device: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nbd: detach %s: %w", d.path, err)
	}
	d.log.Info("nbd: detached", "dev", d.path)
	return nil
}

// afterDeadlineGrace is how long a step of Detach that must run still gets
// once ctx has run out.
const afterDeadlineGrace = 5 * time.Second

// afterDeadline returns ctx while it is live, else a context of its own that
// ends afterDeadlineGrace from now: for the steps of Detach that must run
// even when an earlier one used up ctx.
func afterDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), afterDeadlineGrace)
}

// Attach serves dev to the kernel as /dev/nbdN: it creates
// opts.Connections socket pairs, serves one end of each with Serve, hands
// the other ends to the kernel with NBD_CMD_CONNECT, waits until /dev/nbdN
// has its size, and opens it once so the kernel reads the partition table
// (Linux only marks the disk for a scan on connect, GD_NEED_PART_SCAN in
// nbd_set_size, and scans on the next open). ctx bounds the attach; the
// device is served until Detach, a disconnect from elsewhere, or the kernel
// dropping it. Needs CAP_SYS_ADMIN.
//
// An attach that fails after the kernel took the sockets is undone before
// Attach returns, and that undo has bounds of its own rather than ctx's
// (ctx may be what ran out): the disconnect waits up to
// DefaultDetachTimeout, then the reads Attach started through the device
// up to 5 s, and, if the kernel still holds them, another
// DefaultDetachTimeout after our socket ends are closed. With a kernel that
// does not let go, Attach can thus return up to about 65 s after ctx is
// done, and logs a warning when the disconnect fails or the reads stay
// blocked.
func Attach(ctx context.Context, dev blockdev.Device, opts AttachOptions) (*Device, error) {
	return attach(ctx, dev, opts)
}

// Disconnect asks the kernel to disconnect /dev/nbd<index>, whichever
// process serves it (NBD_CMD_DISCONNECT). The kernel sends NBD_CMD_DISC on
// each connection and fails the requests still queued; data the kernel has
// cached but not written is lost, so sync first. Needs CAP_SYS_ADMIN.
func Disconnect(ctx context.Context, index int) error {
	if index < 0 {
		return fmt.Errorf("nbd: disconnect: invalid device index %d", index)
	}
	return disconnect(ctx, index)
}

// Sync writes back the kernel's cached writes for the block device at path
// and makes it send a FLUSH (fsync on a block device, blkdev_fsync): what to
// do before Disconnect. It returns ctx's error when ctx is done first (a
// server that stopped answering holds the fsync for as long as the kernel
// waits, which without AttachOptions.Timeout is forever); the cached writes
// are then still pending.
func Sync(ctx context.Context, path string) error {
	if err := syncBlockDevice(ctx, path); err != nil {
		return fmt.Errorf("nbd: sync %s: %w", path, err)
	}
	return nil
}

// Status returns the kernel's view of /dev/nbd<index>, or ErrNoDevice.
func Status(ctx context.Context, index int) (DeviceStatus, error) {
	if index < 0 {
		return DeviceStatus{}, fmt.Errorf("nbd: status: invalid device index %d", index)
	}
	st, err := status(ctx, index)
	if err != nil {
		return DeviceStatus{}, err
	}
	for _, s := range st {
		if s.Index == index {
			return s, nil
		}
	}
	return DeviceStatus{}, fmt.Errorf("%w: %s", ErrNoDevice, DevicePath(index))
}

// List returns every NBD device the kernel knows, connected or not.
func List(ctx context.Context) ([]DeviceStatus, error) {
	return status(ctx, AnyIndex)
}
