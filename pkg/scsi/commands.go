package scsi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// RetryPolicy bounds how a command is reissued after a transient condition
// (see IsTransient). Zero fields take the defaults noted.
type RetryPolicy struct {
	// Attempts is the total number of times a command is sent, at least 1.
	// Default 10: iPXE's SCSI layer and sanboot use the same bound for the
	// unit attentions a target reports after login.
	Attempts int
	// Backoff is the first wait before reissuing after BUSY, TASK SET FULL,
	// ABORTED COMMAND or NOT READY (becoming ready); it doubles up to
	// MaxBackoff. A UNIT ATTENTION is reissued at once. Default 10ms.
	Backoff time.Duration
	// MaxBackoff caps the wait. Default 1s.
	MaxBackoff time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 10
	}
	if p.Backoff <= 0 {
		p.Backoff = 10 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = time.Second
	}
	if p.MaxBackoff < p.Backoff {
		p.MaxBackoff = p.Backoff
	}
	return p
}

// IsTransient reports whether err is a SCSI condition after which the same
// command may simply be sent again: the device server did not run it, or
// asks to be asked later. Those are UNIT ATTENTION (SAM-5 §5.14: reported
// once, then cleared), BUSY, TASK SET FULL, ABORTED COMMAND, and NOT READY
// with ASC 04 qualifiers 01 (becoming ready), 07 (operation in progress) or
// 0A (asymmetric access state transition). Transport errors are not
// transient here: the session layer owns their recovery.
func IsTransient(err error) bool {
	if errors.Is(err, ErrUnitAttention) || errors.Is(err, ErrBusy) ||
		errors.Is(err, ErrTaskSetFull) || errors.Is(err, ErrAbortedCommand) {
		return true
	}
	var se *SenseError
	if errors.As(err, &se) && se.Key == SenseNotReady && se.ASC == 0x04 {
		switch se.ASCQ {
		case 0x01, 0x07, 0x0a:
			return true
		}
	}
	return false
}

// runner sends commands to one logical unit with a retry policy; the
// exported functions use the default policy, Disk its own.
type runner struct {
	ex  Executor
	lun LUN
	pol RetryPolicy
	log *slog.Logger
}

func newRunner(ex Executor, lun LUN) *runner {
	return &runner{ex: ex, lun: lun, pol: RetryPolicy{}.withDefaults(), log: slog.New(slog.DiscardHandler)}
}

// do sends cmd, reissuing it on transient conditions within the policy and
// ctx, and returns the result of the last attempt with its status as an
// error (see Result.Err). op names the command in errors and logs.
func (r *runner) do(ctx context.Context, op string, cmd *Command) (*Result, error) {
	cmd.LUN = r.lun
	wait := r.pol.Backoff
	for attempt := 1; ; attempt++ {
		res, err := r.ex.Execute(ctx, cmd)
		if err != nil {
			return nil, fmt.Errorf("%s lun %s: %w", op, r.lun, err)
		}
		err = res.Err()
		if err == nil {
			return res, nil
		}
		if !IsTransient(err) || attempt >= r.pol.Attempts {
			if attempt > 1 {
				return res, fmt.Errorf("%s lun %s (after %d attempts): %w", op, r.lun, attempt, err)
			}
			return res, fmt.Errorf("%s lun %s: %w", op, r.lun, err)
		}
		if errors.Is(err, ErrUnitAttention) {
			r.log.Debug("scsi: unit attention, reissuing", "op", op, "lun", r.lun.String(), "attempt", attempt, "err", err)
			if errors.Is(err, ErrCapacityChanged) {
				r.log.Warn("scsi: target reports capacity change; the size read at open is kept", "lun", r.lun.String())
			}
			continue
		}
		r.log.Debug("scsi: transient condition, retrying", "op", op, "lun", r.lun.String(), "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, fmt.Errorf("%s lun %s: %w (while retrying after: %v)", op, r.lun, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, r.pol.MaxBackoff)
	}
}

// dataIn runs a command that returns data into a buffer of alloc bytes and
// returns the filled part.
func (r *runner) dataIn(ctx context.Context, op string, cdb []byte, alloc int) ([]byte, error) {
	buf := make([]byte, alloc)
	res, err := r.do(ctx, op, &Command{CDB: cdb, DataIn: buf})
	if err != nil {
		return nil, err
	}
	return buf[:max(0, min(res.N, alloc))], nil
}

// TestUnitReady asks whether the logical unit is ready (SPC-4 §6.47),
// reissuing it after unit attentions (normal right after login or a target
// restart) and while the unit is becoming ready, within the default
// RetryPolicy.
func TestUnitReady(ctx context.Context, ex Executor, lun LUN) error {
	return newRunner(ex, lun).testUnitReady(ctx)
}

func (r *runner) testUnitReady(ctx context.Context) error {
	_, err := r.do(ctx, "TEST UNIT READY", &Command{CDB: TestUnitReadyCDB()})
	return err
}

// Inquiry reads the standard INQUIRY data of lun.
func Inquiry(ctx context.Context, ex Executor, lun LUN) (*InquiryData, error) {
	return newRunner(ex, lun).inquiry(ctx)
}

func (r *runner) inquiry(ctx context.Context) (*InquiryData, error) {
	// 96 bytes covers the version descriptors; SPC-4 §6.6.1 lets the target
	// truncate to the allocation length.
	b, err := r.dataIn(ctx, "INQUIRY", InquiryCDB(false, 0, 96), 96)
	if err != nil {
		return nil, err
	}
	d, err := ParseInquiry(b)
	if err != nil {
		return nil, fmt.Errorf("INQUIRY lun %s: %w", r.lun, err)
	}
	return d, nil
}

// InquiryVPD reads VPD page of lun and returns the whole page, header
// included, as the Parse* functions for VPD pages take it. It asks again
// with a larger allocation length if the first answer was cut short.
func InquiryVPD(ctx context.Context, ex Executor, lun LUN, page byte) ([]byte, error) {
	return newRunner(ex, lun).inquiryVPD(ctx, page)
}

func (r *runner) inquiryVPD(ctx context.Context, page byte) ([]byte, error) {
	op := fmt.Sprintf("INQUIRY VPD %#02x", page)
	alloc := 256
	for {
		b, err := r.dataIn(ctx, op, InquiryCDB(true, page, uint16(alloc)), alloc)
		if err != nil {
			return nil, err
		}
		if len(b) < 4 {
			return nil, fmt.Errorf("%s lun %s: %w", op, r.lun, errShort("VPD page", 4, len(b)))
		}
		need := 4 + (int(b[2])<<8 | int(b[3]))
		if need <= len(b) || alloc == math.MaxUint16 || len(b) < alloc {
			return b, nil
		}
		alloc = min(need, math.MaxUint16)
	}
}

// SupportedVPDPages reads VPD page 0x00 of lun.
func SupportedVPDPages(ctx context.Context, ex Executor, lun LUN) ([]byte, error) {
	b, err := InquiryVPD(ctx, ex, lun, VPDSupportedPages)
	if err != nil {
		return nil, err
	}
	return ParseSupportedPages(b)
}

// UnitSerialNumber reads VPD page 0x80 of lun.
func UnitSerialNumber(ctx context.Context, ex Executor, lun LUN) (string, error) {
	b, err := InquiryVPD(ctx, ex, lun, VPDUnitSerialNumber)
	if err != nil {
		return "", err
	}
	return ParseUnitSerialNumber(b)
}

// DeviceIdentification reads VPD page 0x83 of lun.
func DeviceIdentification(ctx context.Context, ex Executor, lun LUN) ([]Designator, error) {
	b, err := InquiryVPD(ctx, ex, lun, VPDDeviceIdentification)
	if err != nil {
		return nil, err
	}
	return ParseDeviceIdentification(b)
}

// ReadBlockLimits reads VPD page 0xB0 of lun.
func ReadBlockLimits(ctx context.Context, ex Executor, lun LUN) (*BlockLimits, error) {
	b, err := InquiryVPD(ctx, ex, lun, VPDBlockLimits)
	if err != nil {
		return nil, err
	}
	return ParseBlockLimits(b)
}

// ReadLogicalBlockProvisioning reads VPD page 0xB2 of lun.
func ReadLogicalBlockProvisioning(ctx context.Context, ex Executor, lun LUN) (*LogicalBlockProvisioning, error) {
	b, err := InquiryVPD(ctx, ex, lun, VPDLogicalBlockProvisioning)
	if err != nil {
		return nil, err
	}
	return ParseLogicalBlockProvisioning(b)
}

// maxReportLUNs bounds the REPORT LUNS allocation: 64K LUNs of 8 bytes, far
// more than any target exports, so a hostile LUN LIST LENGTH cannot make us
// allocate without bound.
const maxReportLUNs = 8 + 8*65536

// ReportLUNs lists the logical units of the target (SPC-4 §6.33), sent to
// lun, usually LUN 0 (SPC-4 requires every target to answer it there). If
// the list does not fit the first allocation it asks again with the length
// the target reported, up to 64K LUNs.
func ReportLUNs(ctx context.Context, ex Executor, lun LUN) ([]LUN, error) {
	r := newRunner(ex, lun)
	alloc := 8 + 8*256
	for {
		b, err := r.dataIn(ctx, "REPORT LUNS", ReportLUNsCDB(0, uint32(alloc)), alloc)
		if err != nil {
			return nil, err
		}
		luns, listLen, err := ParseReportLUNs(b)
		if err != nil {
			return nil, fmt.Errorf("REPORT LUNS: %w", err)
		}
		if uint64(listLen)+8 <= uint64(alloc) || alloc == maxReportLUNs || len(b) < alloc {
			return luns, nil
		}
		alloc = int(min(uint64(listLen)+8, maxReportLUNs))
	}
}

// ReadCapacity reads the capacity of lun. It sends READ CAPACITY(10) and,
// when that reports 0xFFFFFFFF (more than 2^32 blocks, SBC-4 §5.19.2),
// READ CAPACITY(16). With long set it starts with READ CAPACITY(16) (which
// also reports provisioning and physical block size) and falls back to (10)
// if the device rejects it.
func ReadCapacity(ctx context.Context, ex Executor, lun LUN, long bool) (*Capacity, error) {
	return newRunner(ex, lun).readCapacity(ctx, long)
}

func (r *runner) readCapacity(ctx context.Context, long bool) (*Capacity, error) {
	if !long {
		b, err := r.dataIn(ctx, "READ CAPACITY(10)", ReadCapacity10CDB(), 8)
		if err != nil {
			return nil, err
		}
		c, err := ParseReadCapacity10(b)
		if err != nil {
			return nil, fmt.Errorf("READ CAPACITY(10) lun %s: %w", r.lun, err)
		}
		if c.LastLBA != math.MaxUint32 {
			return c, nil
		}
	}
	b, err := r.dataIn(ctx, "READ CAPACITY(16)", ReadCapacity16CDB(32), 32)
	if err != nil {
		if long && errors.Is(err, ErrIllegalRequest) {
			return r.readCapacity(ctx, false)
		}
		return nil, err
	}
	c, err := ParseReadCapacity16(b)
	if err != nil {
		return nil, fmt.Errorf("READ CAPACITY(16) lun %s: %w", r.lun, err)
	}
	return c, nil
}

// modeSense reads the mode parameter header (write protection, FUA
// support): MODE SENSE(10), or MODE SENSE(6) if the device rejects (10).
// Only the header is requested; SPC-4 §4.2.5.6 lets the device truncate
// to the allocation length.
func (r *runner) modeSense(ctx context.Context) (*ModeHeader, error) {
	b, err := r.dataIn(ctx, "MODE SENSE(10)", ModeSense10CDB(true, 0x3f, 0, 8), 8)
	if err == nil {
		return ParseModeSense10(b)
	}
	if !errors.Is(err, ErrIllegalRequest) {
		return nil, err
	}
	b, err = r.dataIn(ctx, "MODE SENSE(6)", ModeSense6CDB(true, 0x3f, 0, 4), 4)
	if err != nil {
		return nil, err
	}
	return ParseModeSense6(b)
}

// putRWCDB encodes into b, which has room for 16 bytes, READ/WRITE(10)
// when the range fits its 32-bit LBA and 16-bit length (every target
// implements it), (16) otherwise.
func putRWCDB(b []byte, write bool, lba uint64, blocks uint32, fua bool) ([]byte, string) {
	if lba+uint64(blocks) <= math.MaxUint32+1 && blocks <= math.MaxUint16 {
		if write {
			return putRW10(b, OpWrite10, uint32(lba), uint16(blocks), fua), "WRITE(10)"
		}
		return putRW10(b, OpRead10, uint32(lba), uint16(blocks), fua), "READ(10)"
	}
	if write {
		return putRW16(b, OpWrite16, lba, blocks, fua), "WRITE(16)"
	}
	return putRW16(b, OpRead16, lba, blocks, fua), "READ(16)"
}

// rwCommand is a READ or WRITE command with room for its CDB. The data
// path takes them from rwCommands: a Command and its CDB per request were
// two of the few allocations left on it.
type rwCommand struct {
	cmd Command
	cdb [16]byte
}

var rwCommands = sync.Pool{New: func() any { return new(rwCommand) }}

// rw runs one READ or WRITE of p at lba.
func (r *runner) rw(ctx context.Context, write bool, lba uint64, blocks uint32, p []byte, fua bool) (*Result, string, error) {
	c := rwCommands.Get().(*rwCommand)
	cdb, op := putRWCDB(c.cdb[:], write, lba, blocks, fua)
	c.cmd = Command{CDB: cdb}
	if write {
		c.cmd.DataOut = p
	} else {
		c.cmd.DataIn = p
	}
	res, err := r.do(ctx, op, &c.cmd)
	if err == nil {
		// The command completed: the Executor is done with it (see
		// Executor). After an error it may not be (a transport that gave
		// up waiting can still refer to the CDB): leave it to the GC.
		c.cmd = Command{}
		rwCommands.Put(c)
	}
	return res, op, err
}

// ErrShortTransfer is wrapped when a target completes a READ with GOOD
// status but fewer bytes than asked for.
var ErrShortTransfer = errors.New("scsi: target returned less data than requested")

// Read reads len(p)/blockSize logical blocks starting at lba into p, with
// READ(10) or, for LBAs past 2^32 or long transfers, READ(16). len(p) must
// be a multiple of blockSize and at most 2^32-1 blocks; callers split large
// transfers to the device's limit (Disk does).
func Read(ctx context.Context, ex Executor, lun LUN, lba uint64, blockSize int, p []byte) error {
	return newRunner(ex, lun).read(ctx, lba, blockSize, p)
}

func (r *runner) read(ctx context.Context, lba uint64, blockSize int, p []byte) error {
	blocks, err := blockCount(len(p), blockSize)
	if err != nil || blocks == 0 {
		return err
	}
	res, op, err := r.rw(ctx, false, lba, blocks, p, false)
	if err != nil {
		return err
	}
	if res.N < len(p) {
		return fmt.Errorf("%s lun %s lba %d: %w (%d of %d bytes)", op, r.lun, lba, ErrShortTransfer, res.N, len(p))
	}
	return nil
}

// Write writes p, a whole number of blockSize blocks, at lba with WRITE(10)
// or (16); fua asks the device to complete only once the data is on
// non-volatile media.
func Write(ctx context.Context, ex Executor, lun LUN, lba uint64, blockSize int, p []byte, fua bool) error {
	return newRunner(ex, lun).write(ctx, lba, blockSize, p, fua)
}

func (r *runner) write(ctx context.Context, lba uint64, blockSize int, p []byte, fua bool) error {
	blocks, err := blockCount(len(p), blockSize)
	if err != nil || blocks == 0 {
		return err
	}
	_, _, err = r.rw(ctx, true, lba, blocks, p, fua)
	return err
}

func blockCount(n, blockSize int) (uint32, error) {
	if blockSize <= 0 || n%blockSize != 0 {
		return 0, fmt.Errorf("scsi: transfer of %d bytes is not a whole number of %d-byte blocks", n, blockSize)
	}
	if uint64(n/blockSize) > math.MaxUint32 {
		return 0, fmt.Errorf("scsi: transfer of %d blocks exceeds one command's limit", n/blockSize)
	}
	return uint32(n / blockSize), nil
}

// SynchronizeCache asks lun to write its whole volatile cache to
// non-volatile media (SYNCHRONIZE CACHE(10) with LBA 0 and 0 blocks, which
// SBC-4 §5.24 defines as "to the end of the medium"). A device without a
// cache may not implement the command: like Linux's sd driver
// (sd_sync_cache), an INVALID COMMAND OPERATION CODE or INVALID FIELD IN CDB
// answer counts as success.
func SynchronizeCache(ctx context.Context, ex Executor, lun LUN) error {
	return newRunner(ex, lun).synchronizeCache(ctx, 0, 0)
}

func (r *runner) synchronizeCache(ctx context.Context, lba uint64, blocks uint32) error {
	var err error
	if lba+uint64(blocks) <= math.MaxUint32 && blocks <= math.MaxUint16 {
		_, err = r.do(ctx, "SYNCHRONIZE CACHE(10)", &Command{CDB: SynchronizeCache10CDB(uint32(lba), uint16(blocks))})
	} else {
		_, err = r.do(ctx, "SYNCHRONIZE CACHE(16)", &Command{CDB: SynchronizeCache16CDB(lba, blocks)})
	}
	if errors.Is(err, ErrIllegalRequest) && (errors.Is(err, ErrInvalidOpcode) || errors.Is(err, ErrInvalidField)) {
		r.log.Debug("scsi: device does not implement SYNCHRONIZE CACHE; assuming no volatile cache", "lun", r.lun.String())
		return nil
	}
	return err
}

// Unmap deallocates the given ranges of lun (SBC-4 §5.30). Send it only to
// a logical unit that advertises UNMAP: READ CAPACITY(16) LBPME and VPD
// page 0xB2 LBPU (Disk.CanTrim checks). At most 4095 ranges per call.
func Unmap(ctx context.Context, ex Executor, lun LUN, descs []UnmapDescriptor) error {
	return newRunner(ex, lun).unmap(ctx, descs)
}

func (r *runner) unmap(ctx context.Context, descs []UnmapDescriptor) error {
	if len(descs) == 0 {
		return nil
	}
	if len(descs) > 4095 {
		return fmt.Errorf("UNMAP lun %s: %d ranges exceed the parameter list's 4095", r.lun, len(descs))
	}
	params := UnmapParameters(descs)
	_, err := r.do(ctx, "UNMAP", &Command{CDB: UnmapCDB(uint16(len(params))), DataOut: params})
	return err
}
