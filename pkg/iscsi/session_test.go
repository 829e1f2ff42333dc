package iscsi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func TestSessionReadWrite(t *testing.T) {
	tests := []struct {
		name string
		o    iscsitest.Options
		cfg  func(*Config)
	}{
		{"defaults", iscsitest.Options{}, nil},
		{"InitialR2T=Yes ImmediateData=No", iscsitest.Options{InitialR2T: true, NoImmediateData: true}, nil},
		{"small target MRDSL", iscsitest.Options{MaxRecvDataSegmentLength: 512, MaxBurstLength: 4096, FirstBurstLength: 2048}, nil},
		{"MaxOutstandingR2T=4", iscsitest.Options{InitialR2T: true, MaxOutstandingR2T: 4, MaxBurstLength: 8192}, func(c *Config) {
			p := DefaultParams()
			p.MaxOutstandingR2T = 8
			c.Params = &p
		}},
		{"digests", iscsitest.Options{}, func(c *Config) { c.HeaderDigest, c.DataDigest = DigestRequire, DigestRequire }},
		{"no phase collapse, small Data-In", iscsitest.Options{NoPhaseCollapse: true, DataInSegment: 1000}, nil},
		{"our small MRDSL", iscsitest.Options{}, func(c *Config) {
			p := DefaultParams()
			p.MaxRecvDataSegmentLength = 4096
			c.Params = &p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.LUNs = []iscsitest.LUNOptions{{ID: 0, Size: 8 << 20}, {ID: 3, Size: 1 << 20}}
			tg := startTarget(t, tt.o)
			cfg := config(t, tg)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := mustLogin(t, cfg)
			for _, n := range []int{512, 4096, 64 << 10, 300 << 10, 1 << 20} {
				writeRead(t, s, 0, uint32(n/512), randBytes(n))
			}
			writeRead(t, s, 3, 7, randBytes(8192))
			// What the target holds is what we wrote.
			data := randBytes(65536)
			writeRead(t, s, 0, 1000, data)
			got := make([]byte, len(data))
			tg.LUN(0).ReadAt(got, 1000*512)
			if !bytes.Equal(got, data) {
				t.Errorf("LUN contents differ from the data written")
			}
			info := s.Info()
			if cfg.HeaderDigest == DigestRequire && (!info.HeaderDigest || !info.DataDigest) {
				t.Errorf("Info() digests = %v/%v, want both on", info.HeaderDigest, info.DataDigest)
			}
			if err := s.Logout(tctx(t)); err != nil {
				t.Errorf("Logout = %v", err)
			}
			if n := tg.Sessions(); n != 0 {
				t.Errorf("target sessions after logout = %d, want 0", n)
			}
			noViolations(t, tg)
		})
	}
}

func TestSessionUnsolicitedData(t *testing.T) {
	tests := []struct {
		name              string
		o                 iscsitest.Options
		size              int
		imm, unsol, solic int
	}{
		// Target MRDSL 8192, FirstBurstLength 65536: 8 KiB immediate,
		// 56 KiB unsolicited Data-Out, the rest by R2T.
		{"immediate+unsolicited+R2T", iscsitest.Options{}, 128 << 10, 8192, 65536 - 8192, 64 << 10},
		{"all unsolicited", iscsitest.Options{}, 32 << 10, 8192, 24 << 10, 0},
		{"immediate only", iscsitest.Options{InitialR2T: true}, 32 << 10, 8192, 0, 24 << 10},
		{"no unsolicited data", iscsitest.Options{InitialR2T: true, NoImmediateData: true}, 32 << 10, 0, 0, 32 << 10},
		{"unsolicited without immediate", iscsitest.Options{NoImmediateData: true}, 32 << 10, 0, 32 << 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := startTarget(t, tt.o)
			s := mustLogin(t, config(t, tg))
			data := randBytes(tt.size)
			res, err := s.Execute(tctx(t), &scsi.Command{CDB: write10(0, uint16(tt.size/512)), DataOut: data})
			if err != nil || res.Status != 0 {
				t.Fatalf("WRITE = %+v, %v", res, err)
			}
			st := tg.Stats()
			if st.ImmediateBytes != tt.imm || st.UnsolicitedBytes != tt.unsol || st.SolicitedBytes != tt.solic {
				t.Errorf("immediate/unsolicited/solicited = %d/%d/%d, want %d/%d/%d",
					st.ImmediateBytes, st.UnsolicitedBytes, st.SolicitedBytes, tt.imm, tt.unsol, tt.solic)
			}
			noViolations(t, tg)
		})
	}
}

// TestSessionConcurrent runs many commands at once through a small command
// window with a slow target: all must complete, in the window.
func TestSessionConcurrent(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{Window: 8, CommandDelay: 5 * time.Millisecond, LUNs: []iscsitest.LUNOptions{{Size: 32 << 20}}})
	s := mustLogin(t, config(t, tg))
	ctx := tctx(t)
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{byte(i)}, 16384)
			lba := uint32(i * 32)
			if res, err := s.Execute(ctx, &scsi.Command{CDB: write10(lba, 32), DataOut: data}); err != nil || res.Status != 0 {
				errs <- fmt.Errorf("write %d: %+v, %v", i, res, err)
				return
			}
			back := make([]byte, len(data))
			if res, err := s.Execute(ctx, &scsi.Command{CDB: read10(lba, 32), DataIn: back}); err != nil || res.Status != 0 {
				errs <- fmt.Errorf("read %d: %+v, %v", i, res, err)
				return
			}
			if !bytes.Equal(back, data) {
				errs <- fmt.Errorf("read %d: wrong data", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := tg.Stats()
	if st.MaxInFlight < 2 || st.MaxInFlight > 8 {
		t.Errorf("target saw at most %d commands in flight, want 2..8 (window 8)", st.MaxInFlight)
	}
	noViolations(t, tg)
}

func TestSessionStatusAndSense(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{LUNs: []iscsitest.LUNOptions{{Size: 1 << 20}}})
	s := mustLogin(t, config(t, tg))
	ctx := tctx(t)
	// Beyond the end: CHECK CONDITION, ILLEGAL REQUEST / LBA OUT OF RANGE.
	buf := make([]byte, 512)
	res, err := s.Execute(ctx, &scsi.Command{CDB: read10(1<<20, 1), DataIn: buf})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 2 || len(res.Sense) < 14 || res.Sense[2]&0xf != 5 || res.Sense[12] != 0x21 {
		t.Errorf("READ beyond end = status %#x sense %x, want CHECK CONDITION 05/21", res.Status, res.Sense)
	}
	// READ CAPACITY with a larger buffer: underflow residual.
	big := make([]byte, 16)
	res, err = s.Execute(ctx, &scsi.Command{CDB: readCapacity10(), DataIn: big})
	if err != nil || res.Status != 0 || res.N != 8 || res.Residual != 8 {
		t.Errorf("READ CAPACITY(10) into 16 bytes = %+v, %v; want N 8 residual 8", res, err)
	}
	if last := binary.BigEndian.Uint32(big); last != (1<<20)/512-1 {
		t.Errorf("last LBA = %d, want %d", last, (1<<20)/512-1)
	}
	// INQUIRY with a 5-byte allocation: overflow reported as negative residual.
	small := make([]byte, 5)
	res, err = s.Execute(ctx, &scsi.Command{CDB: []byte{0x12, 0, 0, 0, 36, 0}, DataIn: small})
	if err != nil || res.Status != 0 || res.N != 5 || res.Residual != -31 {
		t.Errorf("INQUIRY(alloc 36) into 5 bytes = %+v, %v; want N 5 residual -31", res, err)
	}
	// Unknown LUN.
	res, err = s.Execute(ctx, &scsi.Command{LUN: lunN(9), CDB: []byte{0, 0, 0, 0, 0, 0}})
	if err != nil || res.Status != 2 || res.Sense[12] != 0x25 {
		t.Errorf("TEST UNIT READY on LUN 9 = %+v, %v; want CHECK CONDITION 05/25", res, err)
	}
	// Commands the transport refuses.
	for _, cmd := range []*scsi.Command{
		{CDB: nil},
		{CDB: make([]byte, 17)},
		{CDB: []byte{0x28}, DataIn: buf, DataOut: buf},
	} {
		if _, err := s.Execute(ctx, cmd); err == nil {
			t.Errorf("Execute(CDB %d bytes, in %d, out %d) = nil error", len(cmd.CDB), len(cmd.DataIn), len(cmd.DataOut))
		}
	}
	noViolations(t, tg)
}

func TestSessionClosed(t *testing.T) {
	tg := startTarget(t, iscsitest.Options{})
	s := mustLogin(t, config(t, tg))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Execute(context.Background(), &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}})
	if !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Execute after Close = %v, want ErrSessionClosed", err)
	}
	if err := s.Logout(context.Background()); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("Logout after Close = %v, want ErrSessionClosed", err)
	}
}
