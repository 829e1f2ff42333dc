package iscsitest

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func cdb10(op byte, lba uint32, n uint16) []byte {
	b := make([]byte, 10)
	b[0] = op
	binary.BigEndian.PutUint32(b[2:], lba)
	binary.BigEndian.PutUint16(b[7:], n)
	return b
}

func cdb16(op byte, lba uint64, n uint32) []byte {
	b := make([]byte, 16)
	b[0] = op
	binary.BigEndian.PutUint64(b[2:], lba)
	binary.BigEndian.PutUint32(b[10:], n)
	return b
}

// TestExecute checks the memory LUN's answers: other packages' tests
// (pkg/scsi's block device) rely on them.
func TestExecute(t *testing.T) {
	tg := NewTarget(Options{LUNs: []LUNOptions{{ID: 0, Size: 1 << 20}, {ID: 2, Size: 64 << 10, BlockSize: 4096, ReadOnly: true}, {ID: 300, Size: 4096}}})
	lun := func(id int) (l [8]byte) {
		if id > 255 {
			l[0] = 0x40 | byte(id>>8)
		}
		l[1] = byte(id)
		return l
	}
	data := bytes.Repeat([]byte{0xab}, 1024)
	checks := []struct {
		name      string
		lun       int
		cdb       []byte
		out       []byte
		status    byte
		senseKey  byte
		asc       byte
		wantData  []byte
		checkData func([]byte) bool
	}{
		{name: "TEST UNIT READY", lun: 0, cdb: []byte{0, 0, 0, 0, 0, 0}},
		{name: "WRITE(10)", lun: 0, cdb: cdb10(0x2a, 10, 2), out: data},
		{name: "READ(10)", lun: 0, cdb: cdb10(0x28, 10, 2), wantData: data},
		{name: "READ(16)", lun: 0, cdb: cdb16(0x88, 10, 2), wantData: data},
		{name: "WRITE(16)", lun: 0, cdb: cdb16(0x8a, 2047, 1), out: data[:512]},
		{name: "READ beyond the end", lun: 0, cdb: cdb10(0x28, 2047, 2), status: 2, senseKey: 5, asc: 0x21},
		{name: "READ CAPACITY(10)", lun: 2, cdb: cdb10(0x25, 0, 0), wantData: []byte{0, 0, 0, 15, 0, 0, 0x10, 0}},
		{name: "READ CAPACITY(16)", lun: 0, cdb: []byte{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
			checkData: func(b []byte) bool {
				return len(b) == 32 && binary.BigEndian.Uint64(b) == 2047 && binary.BigEndian.Uint32(b[8:]) == 512
			}},
		{name: "write to a read-only LUN", lun: 2, cdb: cdb10(0x2a, 0, 1), out: make([]byte, 4096), status: 2, senseKey: 7, asc: 0x27},
		{name: "MODE SENSE(6) write protect", lun: 2, cdb: []byte{0x1a, 0, 0x3f, 0, 255, 0}, wantData: []byte{3, 0, 0x80, 0}},
		{name: "SYNCHRONIZE CACHE", lun: 0, cdb: cdb10(0x35, 0, 0)},
		{name: "INQUIRY", lun: 0, cdb: []byte{0x12, 0, 0, 0, 36, 0},
			checkData: func(b []byte) bool { return len(b) == 36 && b[0] == 0 && string(b[8:16]) == "LUNBOOT " }},
		{name: "INQUIRY no LUN", lun: 7, cdb: []byte{0x12, 0, 0, 0, 36, 0}, checkData: func(b []byte) bool { return b[0] == 0x7f }},
		{name: "INQUIRY VPD 0x83", lun: 0, cdb: []byte{0x12, 1, 0x83, 0, 255, 0}, checkData: func(b []byte) bool { return b[1] == 0x83 && b[4] == 1 }},
		{name: "INQUIRY VPD unknown", lun: 0, cdb: []byte{0x12, 1, 0x99, 0, 255, 0}, status: 2, senseKey: 5, asc: 0x24},
		{name: "REPORT LUNS", lun: 5, cdb: []byte{0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
			checkData: func(b []byte) bool {
				return binary.BigEndian.Uint32(b) == 24 && b[9] == 0 && b[17] == 2 && b[24] == 0x41 && b[25] == 0x2c
			}},
		{name: "LUN 300 (flat addressing)", lun: 300, cdb: []byte{0, 0, 0, 0, 0, 0}},
		{name: "missing LUN", lun: 9, cdb: []byte{0, 0, 0, 0, 0, 0}, status: 2, senseKey: 5, asc: 0x25},
		{name: "unknown opcode", lun: 0, cdb: []byte{0xc7, 0, 0, 0, 0, 0}, status: 2, senseKey: 5, asc: 0x20},
		{name: "UNMAP", lun: 0, cdb: []byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0},
			out: append([]byte{0, 22, 0, 16, 0, 0, 0, 0}, append(binary.BigEndian.AppendUint64(nil, 10), 0, 0, 0, 1, 0, 0, 0, 0)...)},
		{name: "READ after UNMAP", lun: 0, cdb: cdb10(0x28, 10, 1), wantData: make([]byte, 512)},
	}
	for _, c := range checks {
		res := tg.execute(lun(c.lun), c.cdb, c.out)
		if res.status != c.status {
			t.Errorf("%s: status %#x, want %#x (sense %x)", c.name, res.status, c.status, res.sense)
			continue
		}
		if c.status == 2 && (len(res.sense) < 14 || res.sense[2] != c.senseKey || res.sense[12] != c.asc) {
			t.Errorf("%s: sense %x, want key %x asc %x", c.name, res.sense, c.senseKey, c.asc)
		}
		if c.wantData != nil && !bytes.Equal(res.data, c.wantData) {
			t.Errorf("%s: data %x, want %x", c.name, res.data, c.wantData)
		}
		if c.checkData != nil && !c.checkData(res.data) {
			t.Errorf("%s: unexpected data %x", c.name, res.data)
		}
	}
	got := make([]byte, 512)
	tg.LUN(0).ReadAt(got, 2047*512)
	if !bytes.Equal(got, data[:512]) {
		t.Errorf("LUN.ReadAt does not show what WRITE(16) stored")
	}
}
