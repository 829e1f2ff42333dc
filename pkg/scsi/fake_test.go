package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// memTarget is an in-memory SCSI target for tests: a set of logical units
// that answer the commands this package sends, decoding CDBs by hand (not
// with this package's builders) so that a builder bug shows up as a wrong
// answer. Hooks inject faults.
type memTarget struct {
	mu   sync.Mutex
	luns map[LUN]*memLUN
	// before, if set, runs first for every command and may answer it.
	before func(ctx context.Context, cmd *Command) (*Result, error, bool)
	// cdbs records every CDB received, in order.
	cdbs [][]byte
	// yield makes data commands give up the processor between their read
	// and write phases, to shake out races in callers.
	yield bool
}

type memLUN struct {
	bs     int
	blocks uint64
	data   map[uint64][]byte // sparse: absent blocks read as zero
	inq    InquiryData
	serial string
	ids    []Designator
	limits *BlockLimits
	lbp    *LogicalBlockProvisioning
	lbpme  bool
	wp     bool // MODE SENSE WP bit and DATA PROTECT on writes
	wpHide bool // refuse writes as write-protected without saying so in MODE SENSE
	dpofua bool
	prot   byte // READ CAPACITY(16) byte 12: P_TYPE and PROT_EN
	// no16 makes READ CAPACITY(16) an invalid opcode; noMS10 likewise
	// MODE SENSE(10); noSync SYNCHRONIZE CACHE.
	no16, noMS10, noSync bool
	ua                   []SenseError // pending unit attentions, reported one per command
	unmapped             uint64       // blocks unmapped so far
}

func newMemTarget() *memTarget { return &memTarget{luns: map[LUN]*memLUN{}} }

func (t *memTarget) addDisk(lun LUN, bs int, blocks uint64) *memLUN {
	l := &memLUN{
		bs: bs, blocks: blocks, data: map[uint64][]byte{},
		inq: InquiryData{Type: TypeDisk, Version: 6, ResponseDataFormat: 2, CmdQue: true,
			Vendor: "LUNBOOT", Product: "MEMDISK", Revision: "0001"},
		serial: fmt.Sprintf("mem%s", lun),
		ids: []Designator{{CodeSet: 1, Type: DesigNAA, Association: AssocLogicalUnit,
			Value: []byte{0x60, 0x01, 0x40, 0x50, 0, 0, 0, lun[1]}}},
		dpofua: true,
	}
	t.luns[lun] = l
	return l
}

func (t *memTarget) commands() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.cdbs)
}

func (t *memTarget) countOp(op byte) int {
	n := 0
	for _, c := range t.commands() {
		if c[0] == op {
			n++
		}
	}
	return n
}

func checkCondition(key SenseKey, asc, ascq byte) *Result {
	e := &SenseError{Key: key, ASC: asc, ASCQ: ascq}
	return &Result{Status: byte(StatusCheckCondition), Sense: e.Marshal()}
}

func dataIn(cmd *Command, b []byte) *Result {
	n := copy(cmd.DataIn, b)
	return &Result{N: n, Residual: int64(len(cmd.DataIn) - n)}
}

func (t *memTarget) Execute(ctx context.Context, cmd *Command) (*Result, error) {
	t.mu.Lock()
	t.cdbs = append(t.cdbs, slices.Clone(cmd.CDB))
	hook := t.before
	t.mu.Unlock()
	if hook != nil {
		if res, err, ok := hook(ctx, cmd); ok {
			return res, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := cmd.CDB
	if len(c) < 6 {
		return checkCondition(SenseIllegalRequest, 0x20, 0), nil
	}
	t.mu.Lock()
	l := t.luns[cmd.LUN]
	t.mu.Unlock()

	switch c[0] {
	case OpReportLUNs:
		var luns []LUN
		t.mu.Lock()
		for k := range t.luns {
			luns = append(luns, k)
		}
		t.mu.Unlock()
		slices.SortFunc(luns, func(a, b LUN) int { return slices.Compare(a[:], b[:]) })
		b := make([]byte, 8+8*len(luns))
		binary.BigEndian.PutUint32(b, uint32(8*len(luns)))
		for i, x := range luns {
			copy(b[8+8*i:], x[:])
		}
		alloc := int(binary.BigEndian.Uint32(c[6:]))
		return dataIn(cmd, b[:min(len(b), alloc)]), nil
	case OpInquiry:
		alloc := int(binary.BigEndian.Uint16(c[3:]))
		if l == nil {
			if c[1]&1 != 0 {
				return checkCondition(SenseIllegalRequest, 0x25, 0), nil
			}
			b := make([]byte, 36)
			b[0] = 0x7f // qualifier 3, type 0x1f
			b[4] = 31
			return dataIn(cmd, b[:min(36, alloc)]), nil
		}
		var b []byte
		if c[1]&1 == 0 {
			b = l.inq.Marshal()
		} else {
			switch c[2] {
			case 0x00:
				pages := []byte{0x00, 0x80, 0x83}
				if l.limits != nil {
					pages = append(pages, 0xb0)
				}
				if l.lbp != nil {
					pages = append(pages, 0xb2)
				}
				b = append([]byte{0, 0, 0, byte(len(pages))}, pages...)
			case 0x80:
				b = append([]byte{0, 0x80, 0, byte(len(l.serial))}, l.serial...)
			case 0x83:
				var body []byte
				for _, d := range l.ids {
					body = append(body, d.ProtocolID<<4|d.CodeSet, byte(d.Association)<<4|byte(d.Type), 0, byte(len(d.Value)))
					body = append(body, d.Value...)
				}
				b = append([]byte{0, 0x83, byte(len(body) >> 8), byte(len(body))}, body...)
			case 0xb0:
				if l.limits == nil {
					return checkCondition(SenseIllegalRequest, 0x24, 0), nil
				}
				b = make([]byte, 64)
				b[1], b[3] = 0xb0, 0x3c
				binary.BigEndian.PutUint32(b[8:], l.limits.MaxTransferLength)
				binary.BigEndian.PutUint32(b[20:], l.limits.MaxUnmapLBACount)
				binary.BigEndian.PutUint32(b[24:], l.limits.MaxUnmapBlockDescriptorCount)
			case 0xb2:
				if l.lbp == nil {
					return checkCondition(SenseIllegalRequest, 0x24, 0), nil
				}
				b = []byte{0, 0xb2, 0, 4, 0, 0, 2, 0}
				if l.lbp.LBPU {
					b[5] |= 0x80
				}
			default:
				return checkCondition(SenseIllegalRequest, 0x24, 0), nil
			}
		}
		return dataIn(cmd, b[:min(len(b), alloc)]), nil
	}

	if l == nil {
		return checkCondition(SenseIllegalRequest, 0x25, 0), nil
	}
	t.mu.Lock()
	if len(l.ua) > 0 {
		ua := l.ua[0]
		l.ua = l.ua[1:]
		t.mu.Unlock()
		return &Result{Status: byte(StatusCheckCondition), Sense: ua.Marshal()}, nil
	}
	t.mu.Unlock()

	switch c[0] {
	case OpTestUnitReady:
		return &Result{}, nil
	case OpReadCapacity10:
		b := make([]byte, 8)
		binary.BigEndian.PutUint32(b, uint32(min(l.blocks-1, 0xffffffff)))
		binary.BigEndian.PutUint32(b[4:], uint32(l.bs))
		return dataIn(cmd, b), nil
	case OpServiceActionIn16:
		if l.no16 || c[1]&0x1f != 0x10 {
			return checkCondition(SenseIllegalRequest, 0x20, 0), nil
		}
		b := make([]byte, 32)
		binary.BigEndian.PutUint64(b, l.blocks-1)
		binary.BigEndian.PutUint32(b[8:], uint32(l.bs))
		if l.lbpme {
			b[14] = 0x80
		}
		b[12] = l.prot
		alloc := int(binary.BigEndian.Uint32(c[10:]))
		return dataIn(cmd, b[:min(32, alloc)]), nil
	case OpModeSense10, OpModeSense6:
		if c[0] == OpModeSense10 && l.noMS10 {
			return checkCondition(SenseIllegalRequest, 0x20, 0), nil
		}
		var dsp byte
		if l.wp {
			dsp |= 0x80
		}
		if l.dpofua {
			dsp |= 0x10
		}
		if c[0] == OpModeSense6 {
			return dataIn(cmd, []byte{3, 0, dsp, 0}[:min(4, int(c[4]))]), nil
		}
		b := []byte{0, 6, 0, dsp, 0, 0, 0, 0}
		return dataIn(cmd, b[:min(8, int(binary.BigEndian.Uint16(c[7:])))]), nil
	case OpSynchronizeCache10, OpSynchronizeCache16:
		if l.noSync {
			return checkCondition(SenseIllegalRequest, 0x20, 0), nil
		}
		return &Result{}, nil
	case OpRead10, OpRead16, OpWrite10, OpWrite16:
		var lba, n uint64
		if c[0] == OpRead10 || c[0] == OpWrite10 {
			lba, n = uint64(binary.BigEndian.Uint32(c[2:])), uint64(binary.BigEndian.Uint16(c[7:]))
		} else {
			lba, n = binary.BigEndian.Uint64(c[2:]), uint64(binary.BigEndian.Uint32(c[10:]))
		}
		if lba+n > l.blocks || lba+n < lba {
			return checkCondition(SenseIllegalRequest, 0x21, 0), nil
		}
		write := c[0] == OpWrite10 || c[0] == OpWrite16
		if write {
			if l.wp || l.wpHide {
				return checkCondition(SenseDataProtect, 0x27, 0), nil
			}
			if uint64(len(cmd.DataOut)) != n*uint64(l.bs) {
				return checkCondition(SenseIllegalRequest, 0x24, 0), nil
			}
			if t.yield {
				runtime.Gosched()
			}
			t.mu.Lock()
			for i := uint64(0); i < n; i++ {
				l.data[lba+i] = slices.Clone(cmd.DataOut[int(i)*l.bs : int(i+1)*l.bs])
			}
			t.mu.Unlock()
			return &Result{}, nil
		}
		out := make([]byte, n*uint64(l.bs))
		t.mu.Lock()
		for i := uint64(0); i < n; i++ {
			if b, ok := l.data[lba+i]; ok {
				copy(out[int(i)*l.bs:], b)
			}
		}
		t.mu.Unlock()
		if t.yield {
			runtime.Gosched()
		}
		return dataIn(cmd, out), nil
	case OpUnmap:
		if !l.lbpme {
			return checkCondition(SenseIllegalRequest, 0x20, 0), nil
		}
		p := cmd.DataOut
		if len(p) < 8 {
			return checkCondition(SenseIllegalRequest, 0x1a, 0), nil
		}
		n := int(binary.BigEndian.Uint16(p[2:]))
		t.mu.Lock()
		defer t.mu.Unlock()
		for o := 8; o+16 <= 8+n && o+16 <= len(p); o += 16 {
			lba := binary.BigEndian.Uint64(p[o:])
			cnt := uint64(binary.BigEndian.Uint32(p[o+8:]))
			if lba+cnt > l.blocks {
				return checkCondition(SenseIllegalRequest, 0x21, 0), nil
			}
			if l.limits != nil && cnt > uint64(l.limits.MaxUnmapLBACount) {
				return checkCondition(SenseIllegalRequest, 0x24, 0), nil
			}
			for i := uint64(0); i < cnt; i++ {
				delete(l.data, lba+i)
			}
			l.unmapped += cnt
		}
		return &Result{}, nil
	}
	return checkCondition(SenseIllegalRequest, 0x20, 0), nil
}
