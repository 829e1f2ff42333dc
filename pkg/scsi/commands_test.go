package scsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/sam"
)

var lun1 = LUN{0, 1}

func TestInquiryFunctions(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 2048)
	ctx := context.Background()

	inq, err := Inquiry(ctx, tgt, lun1)
	if err != nil || inq.Vendor != "LUNBOOT" || inq.Product != "MEMDISK" || inq.Type != TypeDisk {
		t.Errorf("Inquiry = %+v, %v, want LUNBOOT MEMDISK disk", inq, err)
	}
	pages, err := SupportedVPDPages(ctx, tgt, lun1)
	if err != nil || !bytes.Equal(pages, []byte{0, 0x80, 0x83}) {
		t.Errorf("SupportedVPDPages = % x, %v, want 00 80 83", pages, err)
	}
	serial, err := UnitSerialNumber(ctx, tgt, lun1)
	if err != nil || serial != "mem1" {
		t.Errorf("UnitSerialNumber = %q, %v, want mem1", serial, err)
	}
	ids, err := DeviceIdentification(ctx, tgt, lun1)
	if err != nil || len(ids) != 1 || ids[0].String() != "naa.6001405000000001" {
		t.Errorf("DeviceIdentification = %v, %v, want [naa.6001405000000001]", ids, err)
	}
	if _, err := ReadBlockLimits(ctx, tgt, lun1); !errors.Is(err, ErrInvalidField) {
		t.Errorf("ReadBlockLimits on a LUN without page 0xb0 = %v, want ErrInvalidField", err)
	}

	// An absent LUN answers INQUIRY with qualifier 3 and everything else
	// with LOGICAL UNIT NOT SUPPORTED.
	inq, err = Inquiry(ctx, tgt, LUN{0, 9})
	if err != nil || inq.Present() {
		t.Errorf("Inquiry(absent LUN) = %+v, %v, want not present", inq, err)
	}
	err = TestUnitReady(ctx, tgt, LUN{0, 9})
	if !errors.Is(err, ErrLUNNotSupported) || !strings.Contains(err.Error(), "TEST UNIT READY lun 9") {
		t.Errorf("TestUnitReady(absent LUN) = %v, want ErrLUNNotSupported naming the command and LUN", err)
	}
}

func TestInquiryVPDReallocates(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 8)
	// A page longer than the first 256-byte allocation.
	body := bytes.Repeat([]byte{0x01, 0x03, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}, 50)
	page := vpd(0x83, body...)
	var allocs []int
	tgt.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
		if cmd.CDB[0] == OpInquiry && cmd.CDB[2] == 0x83 {
			allocs = append(allocs, int(binary.BigEndian.Uint16(cmd.CDB[3:])))
			return dataIn(cmd, page[:min(len(page), len(cmd.DataIn))]), nil, true
		}
		return nil, nil, false
	}
	ids, err := DeviceIdentification(context.Background(), tgt, lun1)
	if err != nil || len(ids) != 50 {
		t.Fatalf("DeviceIdentification = %d designators, %v, want 50", len(ids), err)
	}
	if want := []int{256, len(page)}; len(allocs) != 2 || allocs[0] != want[0] || allocs[1] != want[1] {
		t.Errorf("INQUIRY allocation lengths = %v, want %v", allocs, want)
	}
}

func TestReportLUNs(t *testing.T) {
	tgt := newMemTarget()
	for i := range 300 {
		tgt.addDisk(sam.LUNFromLinux(uint64(i)), 512, 8)
	}
	luns, err := ReportLUNs(context.Background(), tgt, LUN{})
	if err != nil || len(luns) != 300 || luns[299] != sam.LUNFromLinux(299) {
		t.Fatalf("ReportLUNs = %d LUNs, %v, want 300 ending with 299", len(luns), err)
	}
	if n := tgt.countOp(OpReportLUNs); n != 2 {
		t.Errorf("REPORT LUNS sent %d times, want 2 (the first allocation holds 256)", n)
	}

	// A target claiming an absurd list length: bounded allocation, no loop.
	hostile := newMemTarget()
	hostile.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
		b := cmd.DataIn
		binary.BigEndian.PutUint32(b, 0xfffffff8)
		return &Result{N: len(b)}, nil, true
	}
	luns, err = ReportLUNs(context.Background(), hostile, LUN{})
	if err != nil || len(luns) != 65536 {
		t.Errorf("ReportLUNs(hostile) = %d LUNs, %v, want 65536 (the cap)", len(luns), err)
	}
	if n := hostile.countOp(OpReportLUNs); n != 2 {
		t.Errorf("ReportLUNs(hostile) sent %d commands, want 2", n)
	}
}

func TestReadCapacity(t *testing.T) {
	tgt := newMemTarget()
	small := tgt.addDisk(lun1, 512, 1<<21)
	big := tgt.addDisk(LUN{0, 2}, 512, 3<<31) // 3 TiB
	old := tgt.addDisk(LUN{0, 3}, 4096, 100)
	old.no16 = true
	ctx := context.Background()
	for _, tt := range []struct {
		lun    LUN
		long   bool
		blocks uint64
		bs     uint32
		ops    []byte
	}{
		{lun1, false, small.blocks, 512, []byte{OpReadCapacity10}},
		{LUN{0, 2}, false, big.blocks, 512, []byte{OpReadCapacity10, OpServiceActionIn16}},
		{lun1, true, small.blocks, 512, []byte{OpServiceActionIn16}},
		{LUN{0, 3}, true, 100, 4096, []byte{OpServiceActionIn16, OpReadCapacity10}},
	} {
		tgt.cdbs = nil
		c, err := ReadCapacity(ctx, tgt, tt.lun, tt.long)
		if err != nil || c.Blocks() != tt.blocks || c.BlockSize != tt.bs {
			t.Errorf("ReadCapacity(lun %s, long=%v) = %+v, %v, want %d blocks of %d", tt.lun, tt.long, c, err, tt.blocks, tt.bs)
		}
		var ops []byte
		for _, cdb := range tgt.commands() {
			ops = append(ops, cdb[0])
		}
		if !bytes.Equal(ops, tt.ops) {
			t.Errorf("ReadCapacity(lun %s, long=%v) sent opcodes % x, want % x", tt.lun, tt.long, ops, tt.ops)
		}
	}
}

func TestTestUnitReadyUnitAttention(t *testing.T) {
	for _, tt := range []struct {
		uas     int
		wantErr bool
		sent    int
	}{
		{0, false, 1},
		{3, false, 4},
		{9, false, 10},
		{10, true, 10},
		{50, true, 10},
	} {
		tgt := newMemTarget()
		l := tgt.addDisk(lun1, 512, 8)
		for range tt.uas {
			l.ua = append(l.ua, SenseError{Key: SenseUnitAttention, ASC: 0x29})
		}
		err := TestUnitReady(context.Background(), tgt, lun1)
		if (err != nil) != tt.wantErr || tgt.countOp(OpTestUnitReady) != tt.sent {
			t.Errorf("TestUnitReady after %d unit attentions = %v with %d commands, want error %v with %d", tt.uas, err, tgt.countOp(OpTestUnitReady), tt.wantErr, tt.sent)
		}
		if tt.wantErr && (!errors.Is(err, ErrUnitAttention) || !strings.Contains(err.Error(), "after 10 attempts")) {
			t.Errorf("TestUnitReady error = %v, want a unit attention after 10 attempts", err)
		}
	}
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tgt := newMemTarget()
		tgt.addDisk(lun1, 512, 8)
		answers := []*Result{
			{Status: byte(StatusBusy)},
			{Status: byte(StatusTaskSetFull)},
			checkCondition(SenseNotReady, 0x04, 0x01),
		}
		tgt.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
			if len(answers) == 0 {
				return nil, nil, false
			}
			r := answers[0]
			answers = answers[1:]
			return r, nil, true
		}
		start := time.Now()
		if err := TestUnitReady(context.Background(), tgt, lun1); err != nil {
			t.Fatalf("TestUnitReady after BUSY, TASK SET FULL, becoming ready = %v", err)
		}
		if got, want := time.Since(start), 70*time.Millisecond; got != want {
			t.Errorf("TestUnitReady waited %v, want %v (10+20+40ms backoff)", got, want)
		}

		// A context that ends during the backoff stops the retries.
		tgt.before = func(context.Context, *Command) (*Result, error, bool) {
			return &Result{Status: byte(StatusBusy)}, nil, true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Millisecond)
		defer cancel()
		err := TestUnitReady(ctx, tgt, lun1)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "BUSY") {
			t.Errorf("TestUnitReady(busy, 35ms) = %v, want deadline exceeded mentioning BUSY", err)
		}
	})
}

func TestTransportErrorNotRetried(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 8)
	boom := errors.New("connection reset by peer")
	tgt.before = func(context.Context, *Command) (*Result, error, bool) { return nil, boom, true }
	err := Read(context.Background(), tgt, lun1, 0, 512, make([]byte, 512))
	if !errors.Is(err, boom) || tgt.countOp(OpRead10) != 1 {
		t.Errorf("Read over a broken transport = %v after %d commands, want the transport error after 1", err, tgt.countOp(OpRead10))
	}
}

func TestReadWrite(t *testing.T) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 3<<31)
	ctx := context.Background()
	data := bytes.Repeat([]byte("lunboot!"), 128) // 2 blocks
	for _, tt := range []struct {
		lba     uint64
		wantOps []byte
	}{
		{0, []byte{OpWrite10, OpRead10}},
		{1<<32 - 2, []byte{OpWrite10, OpRead10}},
		{1<<32 - 1, []byte{OpWrite16, OpRead16}},
		{5 << 30, []byte{OpWrite16, OpRead16}},
	} {
		tgt.cdbs = nil
		if err := Write(ctx, tgt, lun1, tt.lba, 512, data, false); err != nil {
			t.Fatalf("Write(lba %d) = %v", tt.lba, err)
		}
		got := make([]byte, len(data))
		if err := Read(ctx, tgt, lun1, tt.lba, 512, got); err != nil || !bytes.Equal(got, data) {
			t.Errorf("Read(lba %d) = %v, equal %v, want the written data", tt.lba, err, bytes.Equal(got, data))
		}
		cmds := tgt.commands()
		if len(cmds) != 2 || cmds[0][0] != tt.wantOps[0] || cmds[1][0] != tt.wantOps[1] {
			t.Errorf("Write+Read at lba %d sent % x, want opcodes % x", tt.lba, cmds, tt.wantOps)
		}
	}
	if err := Read(ctx, tgt, lun1, 0, 512, make([]byte, 100)); err == nil {
		t.Errorf("Read of 100 bytes with 512-byte blocks = nil, want an error")
	}
	err := Read(ctx, tgt, lun1, 3<<31, 512, make([]byte, 512))
	if !errors.Is(err, ErrLBAOutOfRange) || !errors.Is(err, ErrIllegalRequest) {
		t.Errorf("Read past the end = %v, want LBA out of range", err)
	}

	tgt.before = func(_ context.Context, cmd *Command) (*Result, error, bool) {
		return &Result{N: len(cmd.DataIn) / 2}, nil, true
	}
	if err := Read(ctx, tgt, lun1, 0, 512, make([]byte, 1024)); !errors.Is(err, ErrShortTransfer) {
		t.Errorf("Read with a short answer = %v, want ErrShortTransfer", err)
	}
}

func TestSynchronizeCacheAndUnmap(t *testing.T) {
	tgt := newMemTarget()
	l := tgt.addDisk(lun1, 512, 1024)
	ctx := context.Background()
	if err := SynchronizeCache(ctx, tgt, lun1); err != nil {
		t.Errorf("SynchronizeCache = %v", err)
	}
	l.noSync = true
	if err := SynchronizeCache(ctx, tgt, lun1); err != nil {
		t.Errorf("SynchronizeCache on a device without it = %v, want nil (as Linux sd does)", err)
	}
	if err := Unmap(ctx, tgt, lun1, []UnmapDescriptor{{LBA: 0, Blocks: 8}}); !errors.Is(err, ErrInvalidOpcode) {
		t.Errorf("Unmap on a thick LUN = %v, want ErrInvalidOpcode", err)
	}
	l.lbpme = true
	if err := Write(ctx, tgt, lun1, 8, 512, bytes.Repeat([]byte{1}, 512), false); err != nil {
		t.Fatal(err)
	}
	if err := Unmap(ctx, tgt, lun1, []UnmapDescriptor{{LBA: 0, Blocks: 16}, {LBA: 100, Blocks: 4}}); err != nil || l.unmapped != 20 {
		t.Errorf("Unmap = %v, %d blocks unmapped, want nil, 20", err, l.unmapped)
	}
	got := make([]byte, 512)
	if err := Read(ctx, tgt, lun1, 8, 512, got); err != nil || !bytes.Equal(got, make([]byte, 512)) {
		t.Errorf("Read of an unmapped block = %v, want zeros", err)
	}
	if err := Unmap(ctx, tgt, lun1, make([]UnmapDescriptor, 4096)); err == nil {
		t.Errorf("Unmap of 4096 ranges = nil, want an error")
	}
}

func TestIdentitySame(t *testing.T) {
	naa := func(v ...byte) Designator { return Designator{CodeSet: 1, Type: DesigNAA, Value: v} }
	t10 := Designator{CodeSet: 2, Type: DesigT10VendorID, Value: []byte("IET     disk1")}
	tests := []struct {
		a, b Identity
		want bool
	}{
		{Identity{[]Designator{naa(1, 2)}}, Identity{[]Designator{naa(1, 2)}}, true},
		{Identity{[]Designator{naa(1, 2), t10}}, Identity{[]Designator{t10}}, true},
		{Identity{[]Designator{naa(1, 2)}}, Identity{[]Designator{naa(1, 3)}}, false},
		{Identity{[]Designator{naa(1, 2)}}, Identity{[]Designator{{CodeSet: 1, Type: DesigEUI64, Value: []byte{1, 2}}}}, false},
		{Identity{}, Identity{}, false},
		// tgtd: the same NAA values, another scsi_id (T10 designator).
		{Identity{[]Designator{naa(1, 2), t10}}, Identity{[]Designator{naa(1, 2), {CodeSet: 2, Type: DesigT10VendorID, Value: []byte("IET     disk2")}}}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Same(tt.b); got != tt.want {
			t.Errorf("(%s).Same(%s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
