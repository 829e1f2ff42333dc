package scsi

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hx turns "70 00 06" into bytes, for vectors written as a spec shows them.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	var b []byte
	for _, f := range strings.Fields(s) {
		var v byte
		if len(f) != 2 {
			t.Fatalf("hx: bad byte %q", f)
		}
		for _, c := range []byte(f) {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			default:
				t.Fatalf("hx: bad byte %q", f)
			}
		}
		b = append(b, v)
	}
	return b
}

func TestCDBs(t *testing.T) {
	for _, tt := range []struct {
		name string
		got  []byte
		want string
	}{
		{"TestUnitReadyCDB()", TestUnitReadyCDB(), "00 00 00 00 00 00"},
		{"RequestSenseCDB(true, 252)", RequestSenseCDB(true, 252), "03 01 00 00 fc 00"},
		{"InquiryCDB(false, 0, 96)", InquiryCDB(false, 0, 96), "12 00 00 00 60 00"},
		{"InquiryCDB(true, 0x83, 256)", InquiryCDB(true, 0x83, 256), "12 01 83 01 00 00"},
		{"ReportLUNsCDB(0, 2056)", ReportLUNsCDB(0, 2056), "a0 00 00 00 00 00 00 00 08 08 00 00"},
		{"ReadCapacity10CDB()", ReadCapacity10CDB(), "25 00 00 00 00 00 00 00 00 00"},
		{"ReadCapacity16CDB(32)", ReadCapacity16CDB(32), "9e 10 00 00 00 00 00 00 00 00 00 00 00 20 00 00"},
		{"Read10CDB(0x01020304, 8, false)", Read10CDB(0x01020304, 8, false), "28 00 01 02 03 04 00 00 08 00"},
		{"Write10CDB(5, 1, true)", Write10CDB(5, 1, true), "2a 08 00 00 00 05 00 00 01 00"},
		{"Read16CDB(1<<32, 0x10000, false)", Read16CDB(1<<32, 0x10000, false), "88 00 00 00 00 01 00 00 00 00 00 01 00 00 00 00"},
		{"Write16CDB(1, 2, true)", Write16CDB(1, 2, true), "8a 08 00 00 00 00 00 00 00 01 00 00 00 02 00 00"},
		{"SynchronizeCache10CDB(0, 0)", SynchronizeCache10CDB(0, 0), "35 00 00 00 00 00 00 00 00 00"},
		{"SynchronizeCache16CDB(7, 9)", SynchronizeCache16CDB(7, 9), "91 00 00 00 00 00 00 00 00 07 00 00 00 09 00 00"},
		{"UnmapCDB(24)", UnmapCDB(24), "42 00 00 00 00 00 00 00 18 00"},
		{"ModeSense10CDB(true, 0x3f, 0, 8)", ModeSense10CDB(true, 0x3f, 0, 8), "5a 08 3f 00 00 00 00 00 08 00"},
		{"ModeSense6CDB(true, 0x3f, 0, 4)", ModeSense6CDB(true, 0x3f, 0, 4), "1a 08 3f 00 04 00"},
		{"UnmapParameters({0x10, 0x20})", UnmapParameters([]UnmapDescriptor{{LBA: 0x10, Blocks: 0x20}}),
			"00 16 00 10 00 00 00 00 00 00 00 00 00 00 00 10 00 00 00 20 00 00 00 00"},
	} {
		if want := hx(t, tt.want); !bytes.Equal(tt.got, want) {
			t.Errorf("%s = % x, want % x", tt.name, tt.got, want)
		}
	}
}

func TestRWCDBChoice(t *testing.T) {
	for _, tt := range []struct {
		lba    uint64
		blocks uint32
		op     string
	}{
		{0, 1, "READ(10)"},
		{0xffffffff, 1, "READ(10)"},
		{0xffffffff, 2, "READ(16)"},
		{1 << 32, 1, "READ(16)"},
		{0, 0xffff, "READ(10)"},
		{0, 0x10000, "READ(16)"},
	} {
		if _, op := putRWCDB(make([]byte, 16), false, tt.lba, tt.blocks, false); op != tt.op {
			t.Errorf("putRWCDB(read, %#x, %#x) = %s, want %s", tt.lba, tt.blocks, op, tt.op)
		}
	}
}

func TestParseSense(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want SenseError
		msg  string // substring of Error()
		is   []error
		not  []error
	}{
		{
			name: "fixed unit attention power on",
			in:   "70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00",
			want: SenseError{Key: SenseUnitAttention, ASC: 0x29},
			msg:  "UNIT ATTENTION: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29/00)",
			is:   []error{ErrUnitAttention, ErrPowerOnReset, ErrCheckCondition},
			not:  []error{ErrNotReady, ErrBusy, ErrCapacityChanged},
		},
		{
			name: "fixed medium error with information",
			in:   "f0 00 03 00 00 12 34 0a 00 00 00 00 11 00 00 00 00 00",
			want: SenseError{Key: SenseMediumError, ASC: 0x11, InformationValid: true, Information: 0x1234},
			msg:  "MEDIUM ERROR: UNRECOVERED READ ERROR (11/00), at LBA 4660",
			is:   []error{ErrMediumError},
		},
		{
			name: "fixed illegal request with field pointer",
			in:   "70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02",
			want: SenseError{Key: SenseIllegalRequest, ASC: 0x24, SenseKeySpecificValid: true, SenseKeySpecific: [3]byte{0x40, 0, 2}},
			msg:  "ILLEGAL REQUEST: INVALID FIELD IN CDB (24/00), CDB byte 2",
			is:   []error{ErrIllegalRequest, ErrInvalidField},
			not:  []error{ErrLBAOutOfRange},
		},
		{
			name: "fixed truncated after the key",
			in:   "70 00 02",
			want: SenseError{Key: SenseNotReady},
			is:   []error{ErrNotReady},
			not:  []error{ErrBecomingReady},
		},
		{
			name: "fixed additional length bounds the fields",
			in:   "70 00 05 00 00 00 00 00 00 00 00 00 24 00 00 00 00 00",
			want: SenseError{Key: SenseIllegalRequest},
		},
		{
			name: "fixed deferred write error",
			in:   "71 00 03 00 00 00 00 0a 00 00 00 00 0c 00 00 00 00 00",
			want: SenseError{Key: SenseMediumError, ASC: 0x0c, Deferred: true},
			msg:  "MEDIUM ERROR (deferred error): WRITE ERROR (0c/00)",
		},
		{
			name: "fixed becoming ready",
			in:   "70 00 02 00 00 00 00 0a 00 00 00 00 04 01 00 00 00 00",
			want: SenseError{Key: SenseNotReady, ASC: 0x04, ASCQ: 0x01},
			is:   []error{ErrNotReady, ErrBecomingReady},
		},
		{
			name: "fixed write protected",
			in:   "70 00 07 00 00 00 00 0a 00 00 00 00 27 00 00 00 00 00",
			want: SenseError{Key: SenseDataProtect, ASC: 0x27},
			msg:  "DATA PROTECT: WRITE PROTECTED (27/00)",
			is:   []error{ErrDataProtect, ErrWriteProtected},
		},
		{
			name: "descriptor capacity changed",
			in:   "72 06 2a 09 00 00 00 00",
			want: SenseError{Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x09, Descriptor: true},
			msg:  "CAPACITY DATA HAS CHANGED (2a/09)",
			is:   []error{ErrUnitAttention, ErrCapacityChanged},
		},
		{
			name: "descriptor information past 32 bits",
			in:   "72 03 11 00 00 00 00 0c 00 0a 80 00 00 00 00 01 00 00 00 00",
			want: SenseError{Key: SenseMediumError, ASC: 0x11, Descriptor: true, InformationValid: true, Information: 1 << 32},
			msg:  "at LBA 4294967296",
		},
		{
			name: "descriptor sense key specific, FRU, block ILI",
			in:   "73 05 21 00 00 00 00 10 02 06 00 00 80 00 09 00 03 02 00 07 05 02 00 20",
			want: SenseError{Key: SenseIllegalRequest, ASC: 0x21, Descriptor: true, Deferred: true,
				SenseKeySpecificValid: true, SenseKeySpecific: [3]byte{0, 0, 9}, FRU: 0x07, ILI: true},
			msg: "LOGICAL BLOCK ADDRESS OUT OF RANGE (21/00), parameter data byte 9",
			is:  []error{ErrLBAOutOfRange},
		},
		{
			name: "descriptor cut in the middle of a descriptor",
			in:   "72 05 24 00 00 00 00 0c 00 0a 80",
			want: SenseError{Key: SenseIllegalRequest, ASC: 0x24, Descriptor: true},
		},
		{
			name: "unknown ASC keeps its numbers",
			in:   "70 00 04 00 00 00 00 0a 00 00 00 00 5e 01 00 00 00 00",
			want: SenseError{Key: SenseHardwareError, ASC: 0x5e, ASCQ: 0x01},
			msg:  "HARDWARE ERROR: ASC/ASCQ 5e/01",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSense(hx(t, tt.in))
			if err != nil {
				t.Fatalf("ParseSense(%s) = %v", tt.in, err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("ParseSense(%s) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if !strings.Contains(got.Error(), tt.msg) {
				t.Errorf("Error() = %q, want it to contain %q", got.Error(), tt.msg)
			}
			for _, e := range tt.is {
				if !errors.Is(got, e) {
					t.Errorf("errors.Is(%v, %v) = false, want true", got, e)
				}
			}
			for _, e := range tt.not {
				if errors.Is(got, e) {
					t.Errorf("errors.Is(%v, %v) = true, want false", got, e)
				}
			}
		})
	}
}

func TestParseSenseErrors(t *testing.T) {
	for _, in := range []string{"", "00 01 02", "70 00", "72", "7f 00 00 00"} {
		if got, err := ParseSense(hx(t, in)); !errors.Is(err, ErrSenseFormat) {
			t.Errorf("ParseSense(%s) = %v, %v, want ErrSenseFormat", in, got, err)
		}
	}
}

func TestResultErr(t *testing.T) {
	ua := hx(t, "70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00")
	recovered := hx(t, "70 00 01 00 00 00 00 0a 00 00 00 00 17 00 00 00 00 00")
	for _, tt := range []struct {
		name string
		res  Result
		is   error // nil: success
		msg  string
	}{
		{"good", Result{Status: 0}, nil, ""},
		{"condition met", Result{Status: 4}, nil, ""},
		{"recovered error", Result{Status: 2, Sense: recovered}, nil, ""},
		{"check condition with sense", Result{Status: 2, Sense: ua}, ErrUnitAttention, "UNIT ATTENTION"},
		{"check condition without sense", Result{Status: 2}, ErrCheckCondition, "without sense data"},
		{"check condition bad sense", Result{Status: 2, Sense: []byte{1, 2, 3}}, ErrCheckCondition, "undecodable sense data (01 02 03)"},
		{"busy", Result{Status: 8}, ErrBusy, "status BUSY"},
		{"reservation conflict", Result{Status: 0x18}, ErrReservationConflict, "RESERVATION CONFLICT"},
		{"task set full", Result{Status: 0x28}, ErrTaskSetFull, "TASK SET FULL"},
		{"task aborted", Result{Status: 0x40}, ErrTaskAborted, "TASK ABORTED"},
		{"unknown status", Result{Status: 0x22}, nil, "status 0x22"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.res.Err()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Result%+v.Err() = %v, want nil", tt.res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Result%+v.Err() = nil, want an error", tt.res)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Result%+v.Err() = %v, want errors.Is %v", tt.res, err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Result%+v.Err() = %q, want it to contain %q", tt.res, err, tt.msg)
			}
		})
	}
}

func TestIsTransient(t *testing.T) {
	sense := func(k SenseKey, asc, ascq byte) error { return &SenseError{Key: k, ASC: asc, ASCQ: ascq} }
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{sense(SenseUnitAttention, 0x29, 0), true},
		{sense(SenseNotReady, 0x04, 0x01), true},
		{sense(SenseNotReady, 0x04, 0x0a), true},
		{sense(SenseNotReady, 0x3a, 0), false},
		{sense(SenseNotReady, 0x04, 0x03), false},
		{sense(SenseAbortedCommand, 0x47, 0), true},
		{sense(SenseIllegalRequest, 0x24, 0), false},
		{sense(SenseMediumError, 0x11, 0), false},
		{&StatusError{Status: StatusBusy}, true},
		{&StatusError{Status: StatusTaskSetFull}, true},
		{&StatusError{Status: StatusReservationConflict}, false},
		{errors.New("connection reset"), false},
	} {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestParseInquiry(t *testing.T) {
	// A disk as tgtd describes one, built byte by byte from SPC-4 table 145.
	b := make([]byte, 74)
	b[2] = 0x06             // SPC-4
	b[3] = 0x12             // HISUP, response data format 2
	b[4] = 74 - 5           // additional length
	b[5] = 0x18             // TPGS 1, 3PC
	b[7] = 0x02             // CMDQUE
	copy(b[8:], "IET     ") // vendor
	copy(b[16:], "VIRTUAL-DISK    ")
	copy(b[32:], "0001")
	copy(b[58:], []byte{0x09, 0x60, 0x03, 0x00, 0x00, 0x00, 0x04, 0x60})
	want := &InquiryData{Type: TypeDisk, Version: 6, HiSup: true, ResponseDataFormat: 2, TPGS: 1,
		ThreePC: true, CmdQue: true, Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001",
		VersionDescriptors: []uint16{0x0960, 0x0300, 0x0460}}
	got, err := ParseInquiry(b)
	if err != nil {
		t.Fatalf("ParseInquiry = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseInquiry mismatch (-want +got):\n%s", diff)
	}
	if !got.Present() || !got.Type.IsBlockDevice() {
		t.Errorf("Present, IsBlockDevice = %v, %v, want true, true", got.Present(), got.Type.IsBlockDevice())
	}

	// An absent LUN: qualifier 3, type 0x1f, truncated after the header.
	absent, err := ParseInquiry(hx(t, "7f 00 06 02 1f"))
	if err != nil {
		t.Fatalf("ParseInquiry(absent) = %v", err)
	}
	if absent.Present() || absent.Type != TypeUnknown || absent.Vendor != "" {
		t.Errorf("ParseInquiry(absent) = %+v, want qualifier 3, type unknown, no vendor", absent)
	}
	// Additional length shorter than the buffer: fields past it are not read.
	cut := append([]byte(nil), b...)
	cut[4] = 11 // up to byte 15: vendor only
	got, err = ParseInquiry(cut)
	if err != nil || got.Vendor != "IET" || got.Product != "" {
		t.Errorf("ParseInquiry(additional length 11) = %+v, %v, want vendor only", got, err)
	}
	// Control characters from a hostile target are not passed through.
	esc := append([]byte(nil), b...)
	copy(esc[16:], "\x1b[2Jevil")
	got, _ = ParseInquiry(esc)
	if strings.ContainsRune(got.Product, 0x1b) {
		t.Errorf("ParseInquiry(escape) product = %q, want no escape byte", got.Product)
	}
	if _, err := ParseInquiry([]byte{0, 0, 0, 0}); !errors.Is(err, ErrShortData) {
		t.Errorf("ParseInquiry(4 bytes) = %v, want ErrShortData", err)
	}
}

func vpd(page byte, body ...byte) []byte {
	return append([]byte{0, page, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestParseVPD(t *testing.T) {
	pages, err := ParseSupportedPages(vpd(0, 0x00, 0x80, 0x83, 0xb0, 0xb2))
	if want := []byte{0, 0x80, 0x83, 0xb0, 0xb2}; err != nil || !bytes.Equal(pages, want) {
		t.Errorf("ParseSupportedPages = % x, %v, want % x", pages, err, want)
	}
	if _, err := ParseSupportedPages(vpd(0x80, 1)); err == nil {
		t.Errorf("ParseSupportedPages(page 0x80) = nil error, want page mismatch")
	}
	serial, err := ParseUnitSerialNumber(vpd(0x80, []byte("  beaf11  \x00")...))
	if err != nil || serial != "beaf11" {
		t.Errorf("ParseUnitSerialNumber = %q, %v, want beaf11", serial, err)
	}

	name := []byte("iqn.2024-01.test:disk\x00\x00\x00")
	body := []byte{
		0x01, 0x03, 0x00, 0x08, 0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12, // NAA, binary, LU
		0x01, 0x02, 0x00, 0x08, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, // EUI-64
		0x02, 0x01, 0x00, 0x0c, 'I', 'E', 'T', ' ', ' ', ' ', ' ', ' ', 0, 1, 0, 1, // T10 vendor ID
		0x53, 0xa8, 0x00, byte(len(name)), // SCSI name, iSCSI, UTF-8, PIV, target
	}
	body = append(body, name...)
	body = append(body, 0x01, 0x94, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01) // relative port 1
	ids, err := ParseDeviceIdentification(vpd(0x83, body...))
	if err != nil {
		t.Fatalf("ParseDeviceIdentification = %v", err)
	}
	var strs []string
	for _, d := range ids {
		strs = append(strs, d.Type.String()+"/"+d.Association.String()+"="+d.String())
	}
	want := []string{
		"naa/lun=naa.6001405abcdef012",
		"eui-64/lun=eui.0011223344556677",
		"t10/lun=t10.IET     ????",
		"scsi-name/target=iqn.2024-01.test:disk",
		"relative-target-port/port=1",
	}
	if diff := cmp.Diff(want, strs); diff != "" {
		t.Errorf("ParseDeviceIdentification designators mismatch (-want +got):\n%s", diff)
	}
	if !ids[3].PIV || ids[3].ProtocolID != 5 || ids[3].CodeSet != 3 {
		t.Errorf("SCSI name designator = %+v, want PIV, protocol 5 (iSCSI), code set 3", ids[3])
	}
	// A designator whose length overruns the page.
	if ids, err := ParseDeviceIdentification(vpd(0x83, 0x01, 0x03, 0x00, 0x08, 0x60, 0x01)); err == nil || len(ids) != 0 {
		t.Errorf("ParseDeviceIdentification(overrun) = %v, %v, want error and none", ids, err)
	}

	b0 := make([]byte, 0x3c)
	copy(b0, hx(t, "00 01 00 08 00 00 04 00 00 00 00 80 00 00 00 00 00 40 00 00 00 00 00 01 00 00 00 08 80 00 00 00 00 00 00 00 00 00 ff ff"))
	lim, err := ParseBlockLimits(vpd(0xb0, b0...))
	wantLim := &BlockLimits{MaxCompareAndWriteLength: 1, OptimalTransferGranularity: 8, MaxTransferLength: 1024,
		OptimalTransferLength: 128, MaxUnmapLBACount: 0x400000, MaxUnmapBlockDescriptorCount: 1,
		OptimalUnmapGranularity: 8, UnmapGranularityAlignmentValid: true, MaxWriteSameLength: 0xffff}
	if err != nil {
		t.Fatalf("ParseBlockLimits = %v", err)
	}
	if diff := cmp.Diff(wantLim, lim); diff != "" {
		t.Errorf("ParseBlockLimits mismatch (-want +got):\n%s", diff)
	}
	// An SBC-2 era page: 12 bytes, no unmap fields.
	lim, err = ParseBlockLimits(vpd(0xb0, b0[:12]...))
	if err != nil || lim.MaxTransferLength != 1024 || lim.MaxUnmapLBACount != 0 {
		t.Errorf("ParseBlockLimits(short) = %+v, %v, want max transfer 1024, no unmap", lim, err)
	}

	lbp, err := ParseLogicalBlockProvisioning(hx(t, "00 b2 00 04 00 e4 02 00"))
	wantLBP := &LogicalBlockProvisioning{LBPU: true, LBPWS: true, LBPWS10: true, LBPRZ: 1, ProvisioningType: 2}
	if err != nil {
		t.Fatalf("ParseLogicalBlockProvisioning = %v", err)
	}
	if diff := cmp.Diff(wantLBP, lbp); diff != "" {
		t.Errorf("ParseLogicalBlockProvisioning mismatch (-want +got):\n%s", diff)
	}
	if _, err := ParseLogicalBlockProvisioning(hx(t, "00 b2 00 01 00")); !errors.Is(err, ErrShortData) {
		t.Errorf("ParseLogicalBlockProvisioning(short) = %v, want ErrShortData", err)
	}
}

func TestParseReadCapacity(t *testing.T) {
	c, err := ParseReadCapacity10(hx(t, "00 1f ff ff 00 00 02 00"))
	if err != nil || c.Blocks() != 0x200000 || c.BlockSize != 512 || c.Long {
		t.Fatalf("ParseReadCapacity10 = %+v, %v, want 0x200000 blocks of 512", c, err)
	}
	if n, err := c.Bytes(); err != nil || n != 1<<30 {
		t.Errorf("Bytes() = %d, %v, want 1 GiB", n, err)
	}
	c, err = ParseReadCapacity16(hx(t, "00 00 00 05 ff ff ff ff 00 00 10 00 00 03 c0 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"))
	want := &Capacity{LastLBA: 0x5ffffffff, BlockSize: 4096, Long: true, PhysicalExponent: 3, LBPME: true, LBPRZ: true, LowestAlignedLBA: 8}
	if err != nil {
		t.Fatalf("ParseReadCapacity16 = %v", err)
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("ParseReadCapacity16 mismatch (-want +got):\n%s", diff)
	}
	if got := c.PhysicalBlockSize(); got != 32768 {
		t.Errorf("PhysicalBlockSize() = %d, want 32768", got)
	}
	if _, err := (&Capacity{LastLBA: 1 << 62, BlockSize: 4096}).Bytes(); err == nil {
		t.Errorf("Bytes() of 2^62 4K blocks = nil error, want overflow")
	}
	if _, err := (&Capacity{LastLBA: 1<<64 - 1, BlockSize: 512}).Bytes(); err == nil {
		t.Errorf("Bytes() of LastLBA 2^64-1 = nil error, want overflow")
	}
	if _, err := ParseReadCapacity16(make([]byte, 11)); !errors.Is(err, ErrShortData) {
		t.Errorf("ParseReadCapacity16(11 bytes) = %v, want ErrShortData", err)
	}
}

func TestParseReportLUNs(t *testing.T) {
	full := hx(t, "00 00 00 18 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 40 01 00 00 00 00 00 00")
	for _, tt := range []struct {
		name    string
		in      []byte
		want    []LUN
		listLen uint32
	}{
		{"complete", full, []LUN{{}, {0, 1}, {0x40, 1}}, 24},
		{"cut by allocation length", full[:24], []LUN{{}, {0, 1}}, 24},
		{"list length shorter than data", append(hx(t, "00 00 00 08 00 00 00 00"), full[8:]...), []LUN{{}}, 8},
		{"huge list length", append(hx(t, "ff ff ff f8 00 00 00 00"), full[8:16]...), []LUN{{}}, 0xfffffff8},
		{"empty", hx(t, "00 00 00 00 00 00 00 00"), []LUN{}, 0},
	} {
		luns, n, err := ParseReportLUNs(tt.in)
		if err != nil || n != tt.listLen || !cmp.Equal(luns, tt.want) {
			t.Errorf("ParseReportLUNs(%s) = %v, %d, %v, want %v, %d", tt.name, luns, n, err, tt.want, tt.listLen)
		}
	}
}

func TestParseModeSense(t *testing.T) {
	h, err := ParseModeSense10(hx(t, "00 06 00 90 00 00 00 00"))
	if err != nil || !h.WriteProtect || !h.DPOFUA {
		t.Errorf("ParseModeSense10 = %+v, %v, want WP and DPOFUA", h, err)
	}
	h, err = ParseModeSense6(hx(t, "03 00 10 08"))
	if err != nil || h.WriteProtect || !h.DPOFUA || h.BlockDescriptorLength != 8 {
		t.Errorf("ParseModeSense6 = %+v, %v, want DPOFUA, 8-byte block descriptor", h, err)
	}
}
