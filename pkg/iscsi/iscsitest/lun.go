package iscsitest

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// LUNOptions describes a memory-backed logical unit.
type LUNOptions struct {
	// ID is the LUN number (single-level addressing, 0..16383).
	ID int
	// Size in bytes; rounded down to whole blocks. Default 16 MiB.
	Size int64
	// BlockSize in bytes; default 512.
	BlockSize int
	// ReadOnly makes writes fail with DATA PROTECT and sets the WP bit in
	// MODE SENSE.
	ReadOnly bool
	// NAA is the 8-byte NAA designator VPD page 0x83 reports; default
	// 60014050 0000 <ID>, the same for every target (so two targets
	// sharing storage look like one logical unit, Options.LUNsFrom).
	NAA []byte
}

// LUN is a memory-backed logical unit. Tests read and write its contents
// directly to check what the initiator did.
type LUN struct {
	id       int
	bs       int
	readOnly bool
	naa      []byte
	mu       sync.RWMutex
	data     []byte
}

func newLUN(o LUNOptions) *LUN {
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	if o.Size == 0 {
		o.Size = 16 << 20
	}
	o.Size -= o.Size % int64(o.BlockSize)
	naa := o.NAA
	if len(naa) != 8 {
		naa = []byte{0x60, 0x01, 0x40, 0x50, 0x00, 0x00, byte(o.ID >> 8), byte(o.ID)}
	}
	return &LUN{id: o.ID, bs: o.BlockSize, readOnly: o.ReadOnly, naa: naa, data: make([]byte, o.Size)}
}

// ID returns the LUN number.
func (l *LUN) ID() int { return l.id }

// Size returns the capacity in bytes.
func (l *LUN) Size() int64 { return int64(len(l.data)) }

// BlockSize returns the logical block size.
func (l *LUN) BlockSize() int { return l.bs }

// ReadAt copies the LUN's contents at off into p.
func (l *LUN) ReadAt(p []byte, off int64) (int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if off < 0 || off > int64(len(l.data)) {
		return 0, fmt.Errorf("iscsitest: offset %d outside the %d-byte LUN", off, len(l.data))
	}
	n := copy(p, l.data[off:])
	if n < len(p) {
		return n, fmt.Errorf("iscsitest: short read at %d", off)
	}
	return n, nil
}

// WriteAt stores p at off.
func (l *LUN) WriteAt(p []byte, off int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(l.data)) {
		return 0, fmt.Errorf("iscsitest: write of %d bytes at %d outside the %d-byte LUN", len(p), off, len(l.data))
	}
	return copy(l.data[off:], p), nil
}

// SCSI status and sense (SAM-5, SPC-4 fixed-format sense).
const (
	statusGood           = 0x00
	statusCheckCondition = 0x02
)

type senseCode struct{ key, asc, ascq byte }

var (
	senseInvalidOpcode  = senseCode{0x05, 0x20, 0x00}
	senseInvalidField   = senseCode{0x05, 0x24, 0x00}
	senseLBAOutOfRange  = senseCode{0x05, 0x21, 0x00}
	senseLUNNotSupport  = senseCode{0x05, 0x25, 0x00}
	senseWriteProtected = senseCode{0x07, 0x27, 0x00}
	sensePowerOn        = senseCode{0x06, 0x29, 0x00}
)

func (s senseCode) bytes() []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	b[2] = s.key
	b[7] = 10
	b[12], b[13] = s.asc, s.ascq
	return b
}

// scsiResult is what executing a CDB produced.
type scsiResult struct {
	status byte
	sense  []byte
	data   []byte // Data-In, possibly longer than the initiator asked for
}

func check(s senseCode) scsiResult { return scsiResult{status: statusCheckCondition, sense: s.bytes()} }

// lunID decodes a single-level LUN (peripheral or flat addressing).
func lunID(l [8]byte) (int, bool) {
	if l[2]|l[3]|l[4]|l[5]|l[6]|l[7] != 0 {
		return 0, false
	}
	switch l[0] >> 6 {
	case 0, 1:
		return int(l[0]&0x3f)<<8 | int(l[1]), true
	}
	return 0, false
}

// execute runs one CDB against the target's LUNs. dataOut is the data the
// initiator wrote; edtl is its expected transfer length.
func (t *Target) execute(lunBytes [8]byte, cdb []byte, dataOut []byte) scsiResult {
	id, ok := lunID(lunBytes)
	var l *LUN
	if ok {
		l = t.luns[id]
	}
	op := cdb[0]
	switch op {
	case 0xa0: // REPORT LUNS works without a LUN (SPC-4 §6.33).
		return t.reportLUNs()
	case 0x12: // INQUIRY
		return inquiry(l, cdb)
	case 0x03: // REQUEST SENSE
		return scsiResult{data: senseCode{}.bytes()}
	}
	if l == nil {
		return check(senseLUNNotSupport)
	}
	switch op {
	case 0x00, 0x1b, 0x1e: // TEST UNIT READY, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL
		return scsiResult{}
	case 0x35, 0x91: // SYNCHRONIZE CACHE (10)/(16)
		return scsiResult{}
	case 0x25: // READ CAPACITY (10)
		b := make([]byte, 8)
		last := uint64(len(l.data)/l.bs) - 1
		binary.BigEndian.PutUint32(b, uint32(min(last, 0xffffffff)))
		binary.BigEndian.PutUint32(b[4:], uint32(l.bs))
		return scsiResult{data: b}
	case 0x9e: // SERVICE ACTION IN (16)
		if cdb[1]&0x1f != 0x10 || len(cdb) < 16 {
			return check(senseInvalidField)
		}
		b := make([]byte, 32)
		binary.BigEndian.PutUint64(b, uint64(len(l.data)/l.bs)-1)
		binary.BigEndian.PutUint32(b[8:], uint32(l.bs))
		b[14] = 0x80 // LBPME: UNMAP supported
		return scsiResult{data: clip(b, int(binary.BigEndian.Uint32(cdb[10:])))}
	case 0x28, 0x88, 0x2a, 0x8a: // READ/WRITE (10)/(16)
		var lba uint64
		var blocks uint32
		if op == 0x28 || op == 0x2a {
			lba, blocks = uint64(binary.BigEndian.Uint32(cdb[2:])), uint32(binary.BigEndian.Uint16(cdb[7:]))
		} else {
			if len(cdb) < 16 {
				return check(senseInvalidField)
			}
			lba, blocks = binary.BigEndian.Uint64(cdb[2:]), binary.BigEndian.Uint32(cdb[10:])
		}
		nblocks := uint64(len(l.data) / l.bs)
		if lba > nblocks || uint64(blocks) > nblocks-lba {
			return check(senseLBAOutOfRange)
		}
		off, n := int(lba)*l.bs, int(blocks)*l.bs
		if op == 0x28 || op == 0x88 {
			b := make([]byte, n)
			l.mu.RLock()
			copy(b, l.data[off:off+n])
			l.mu.RUnlock()
			return scsiResult{data: b}
		}
		if l.readOnly {
			return check(senseWriteProtected)
		}
		l.mu.Lock()
		copy(l.data[off:off+n], dataOut)
		l.mu.Unlock()
		return scsiResult{}
	case 0x42: // UNMAP
		if l.readOnly {
			return check(senseWriteProtected)
		}
		if len(dataOut) < 8 {
			return scsiResult{}
		}
		descs := dataOut[8:]
		for len(descs) >= 16 {
			lba, n := binary.BigEndian.Uint64(descs), uint64(binary.BigEndian.Uint32(descs[8:]))
			nblocks := uint64(len(l.data) / l.bs)
			if lba > nblocks || n > nblocks-lba {
				return check(senseLBAOutOfRange)
			}
			l.mu.Lock()
			clear(l.data[int(lba)*l.bs : int(lba+n)*l.bs])
			l.mu.Unlock()
			descs = descs[16:]
		}
		return scsiResult{}
	case 0x1a, 0x5a: // MODE SENSE (6)/(10): header only, WP bit.
		var wp byte
		if l.readOnly {
			wp = 0x80
		}
		if op == 0x1a {
			return scsiResult{data: clip([]byte{3, 0, wp, 0}, int(cdb[4]))}
		}
		return scsiResult{data: clip([]byte{0, 6, 0, wp, 0, 0, 0, 0}, int(binary.BigEndian.Uint16(cdb[7:])))}
	}
	return check(senseInvalidOpcode)
}

func clip(b []byte, n int) []byte {
	if n < len(b) {
		return b[:n]
	}
	return b
}

func (t *Target) reportLUNs() scsiResult {
	ids := t.lunIDs()
	b := make([]byte, 8+8*len(ids))
	binary.BigEndian.PutUint32(b, uint32(8*len(ids)))
	for i, id := range ids {
		e := b[8+8*i:]
		if id > 255 {
			e[0] = 0x40 | byte(id>>8) // flat space addressing
		}
		e[1] = byte(id)
	}
	return scsiResult{data: b}
}

// inquiry answers standard INQUIRY data and VPD pages 00, 80, 83, b0, b2.
func inquiry(l *LUN, cdb []byte) scsiResult {
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	if cdb[1]&1 == 0 {
		if cdb[2] != 0 {
			return check(senseInvalidField)
		}
		b := make([]byte, 36)
		b[0] = 0x00 // direct-access block device
		if l == nil {
			b[0] = 0x7f // no logical unit here
		}
		b[2] = 0x06 // SPC-4
		b[3] = 0x02 // response data format
		b[4] = 31
		b[7] = 0x02 // CMDQUE
		copy(b[8:16], "LUNBOOT ")
		copy(b[16:32], "iscsitest disk  ")
		copy(b[32:36], "0001")
		return scsiResult{data: clip(b, alloc)}
	}
	if l == nil {
		return check(senseLUNNotSupport)
	}
	var page []byte
	switch cdb[2] {
	case 0x00:
		page = []byte{0, 0x00, 0, 5, 0x00, 0x80, 0x83, 0xb0, 0xb2}
	case 0x80:
		sn := fmt.Sprintf("ISCSITEST%04d", l.id)
		page = append([]byte{0, 0x80, 0, byte(len(sn))}, sn...)
	case 0x83:
		// One NAA IEEE Registered designator (type 3), binary.
		d := append([]byte{0x01, 0x03, 0x00, 0x08}, l.naa...)
		page = append([]byte{0, 0x83, 0, byte(len(d))}, d...)
	case 0xb0:
		page = make([]byte, 64)
		page[1], page[3] = 0xb0, 60
		binary.BigEndian.PutUint32(page[20:], 0xffffffff) // MAXIMUM UNMAP LBA COUNT
		binary.BigEndian.PutUint32(page[24:], 16)         // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
	case 0xb2:
		page = []byte{0, 0xb2, 0, 4, 0, 0x80, 0, 0} // LBPU: UNMAP supported
	default:
		return check(senseInvalidField)
	}
	return scsiResult{data: clip(page, alloc)}
}
