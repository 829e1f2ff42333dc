package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lunboot/lunboot/internal/testenv"
)

// TestCRC32CVectors checks the digest against RFC 3720 appendix B.4, whose
// results are written as the bytes that travel on the wire.
func TestCRC32CVectors(t *testing.T) {
	seq := func(f func(i int) byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = f(i)
		}
		return b
	}
	// The 48-byte SCSI Read(10) command PDU of the same appendix.
	readPDU, _ := hex.DecodeString("01c00000000000000000000000000000" +
		"14000000000004000000001400000018" + "28000000000000000200000000000000")
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"32 zeros", make([]byte, 32), "aa36918a"},
		{"32 ones", seq(func(int) byte { return 0xff }), "43aba862"},
		{"incrementing", seq(func(i int) byte { return byte(i) }), "4e79dd46"},
		{"decrementing", seq(func(i int) byte { return byte(31 - i) }), "5cdb3f11"},
		{"SCSI Read(10) PDU", readPDU, "563a96d9"},
	}
	for _, tt := range tests {
		var got [4]byte
		PutDigest(got[:], CRC32C(tt.in))
		if hex.EncodeToString(got[:]) != tt.want {
			t.Errorf("CRC32C(%s) on the wire = %x, want %s", tt.name, got, tt.want)
		}
	}
	// Chaining must equal one pass.
	all := seq(func(i int) byte { return byte(i * 7) })
	if got, want := UpdateCRC32C(CRC32C(all[:13]), all[13:]), CRC32C(all); got != want {
		t.Errorf("UpdateCRC32C chained = %08x, want %08x", got, want)
	}
}

func TestSerial(t *testing.T) {
	tests := []struct {
		a, b uint32
		less bool
	}{
		{0, 1, true},
		{1, 0, false},
		{5, 5, false},
		{0xffffffff, 0, true},
		{0xfffffff0, 0x10, true},
		{0x10, 0xfffffff0, false},
		{0, 0x7fffffff, true},
		{0x7fffffff, 0, false},
	}
	for _, tt := range tests {
		if got := SerialLess(tt.a, tt.b); got != tt.less {
			t.Errorf("SerialLess(%#x, %#x) = %v, want %v", tt.a, tt.b, got, tt.less)
		}
		if got := SerialGreater(tt.b, tt.a); got != tt.less {
			t.Errorf("SerialGreater(%#x, %#x) = %v, want %v", tt.b, tt.a, got, tt.less)
		}
		if got := SerialLessEq(tt.a, tt.b); got != (tt.less || tt.a == tt.b) {
			t.Errorf("SerialLessEq(%#x, %#x) = %v", tt.a, tt.b, got)
		}
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		in      string
		want    []KV
		wantErr bool
	}{
		{"A=1\x00B=two\x00", []KV{{"A", "1"}, {"B", "two"}}, false},
		{"A=\x00", []KV{{"A", ""}}, false},
		{"A=1\x00\x00\x00", []KV{{"A", "1"}}, false},
		{"TargetAddress=[::1]:3260,1\x00", []KV{{"TargetAddress", "[::1]:3260,1"}}, false},
		{"A=b=c\x00", []KV{{"A", "b=c"}}, false},
		{"", nil, false},
		{"A=1", nil, true},       // not terminated
		{"A\x00", nil, true},     // no '='
		{"=1\x00", nil, true},    // empty key
		{"A B=1\x00", nil, true}, // bad key character
		{strings.Repeat("k", 64) + "=1\x00", nil, true},
		{"K=" + strings.Repeat("v", MaxValueLen+1) + "\x00", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseText([]byte(tt.in), 100)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseText(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrText) {
			t.Errorf("ParseText(%q) error %v does not wrap ErrText", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
			t.Errorf("ParseText(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
	if _, err := ParseText([]byte("A=1\x00B=2\x00C=3\x00"), 2); err == nil {
		t.Errorf("ParseText with 3 pairs and limit 2 = nil error, want error")
	}
	kvs := []KV{{"InitiatorName", "iqn.2026-01.org.lunboot:x"}, {"AuthMethod", "CHAP,None"}}
	back, err := ParseText(AppendText(nil, kvs...), 10)
	if err != nil || !cmp.Equal(back, kvs) {
		t.Errorf("ParseText(AppendText(%v)) = %v, %v", kvs, back, err)
	}
}

func TestDecodeBinary(t *testing.T) {
	tests := []struct {
		in      string
		want    string // hex
		wantErr bool
	}{
		{"0x0102ff", "0102ff", false},
		{"0X0102FF", "0102ff", false},
		{"0x102", "0102", false}, // odd: implied leading zero
		{"0bAQL/", "0102ff", false},
		{"0BAQI=", "0102", false},
		{"0x", "", true},
		{"0b", "", true},
		{"0xzz", "", true},
		{"0b!!!!", "", true},
		{"1234", "", true},
		{"0q12", "", true},
		{"0x" + strings.Repeat("ab", MaxBinaryLen), strings.Repeat("ab", MaxBinaryLen), false},
		{"0x" + strings.Repeat("ab", MaxBinaryLen+1), "", true},
		{"0b" + strings.Repeat("AAAA", MaxBinaryLen/3+2), "", true},
	}
	for _, tt := range tests {
		got, err := DecodeBinary(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("DecodeBinary(%.20q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && hex.EncodeToString(got) != tt.want {
			t.Errorf("DecodeBinary(%.20q) = %x, want %s", tt.in, got, tt.want)
		}
	}
	for _, b := range [][]byte{{0}, {1, 2, 3}, bytes.Repeat([]byte{0xa5}, 33)} {
		for _, enc := range []string{EncodeHex(b), EncodeBase64(b)} {
			got, err := DecodeBinary(enc)
			if err != nil || !bytes.Equal(got, b) {
				t.Errorf("DecodeBinary(%q) = %x, %v; want %x", enc, got, err, b)
			}
		}
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in      string
		max     uint64
		want    uint64
		wantErr bool
	}{
		{"8192", 1 << 24, 8192, false},
		{"0", 10, 0, false},
		{"0x10", 100, 16, false},
		{"256", 255, 0, true},
		{"-1", 255, 0, true},
		{"+1", 255, 0, true},
		{"", 255, 0, true},
		{"12a", 255, 0, true},
		{"99999999999999999999999", 1 << 62, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseNumber(tt.in, tt.max)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseNumber(%q, %d) = %d, %v; want %d, error %v", tt.in, tt.max, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestPDURoundTrip encodes each typed PDU, decodes it back and compares.
func TestPDURoundTrip(t *testing.T) {
	lun := [8]byte{0, 1, 0, 0, 0, 0, 0, 0}
	var b BHS
	check := func(name string, in, out any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("decode %s: %v", name, err)
			return
		}
		if diff := cmp.Diff(in, out); diff != "" {
			t.Errorf("%s round trip (-in +out):\n%s", name, diff)
		}
	}
	lr := LoginRequest{Transit: true, CSG: StageOperational, NSG: StageFullFeature, ISID: [6]byte{0x80, 1, 2, 3, 4, 5}, TSIH: 7, ITT: 9, CID: 1, CmdSN: 10, ExpStatSN: 11, DataLen: 100}
	lr.Encode(&b)
	if !b.Immediate() {
		t.Errorf("Login Request without the I bit")
	}
	got1, err := DecodeLoginRequest(&b)
	check("LoginRequest", lr, got1, err)
	lp := LoginResponse{Continue: true, CSG: StageSecurity, NSG: StageOperational, ISID: lr.ISID, TSIH: 3, ITT: 9, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, StatusClass: 2, StatusDetail: 1, DataLen: 5}
	lp.Encode(&b)
	got2, err := DecodeLoginResponse(&b)
	check("LoginResponse", lp, got2, err)
	sc := SCSICommand{Final: true, Read: true, Attr: AttrSimple, LUN: lun, ITT: 5, ExpectedDataTransferLength: 4096, CmdSN: 6, ExpStatSN: 7, CDB: [16]byte{0x28}, DataLen: 0}
	sc.Encode(&b)
	got3, err := DecodeSCSICommand(&b)
	check("SCSICommand", sc, got3, err)
	sr := SCSIResponse{Underflow: true, Status: 2, ITT: 5, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, ExpDataSN: 4, Residual: 512, DataLen: 20}
	sr.Encode(&b)
	got4, err := DecodeSCSIResponse(&b)
	check("SCSIResponse", sr, got4, err)
	di := DataIn{Final: true, HasStatus: true, Overflow: true, Status: 0, LUN: lun, ITT: 1, TTT: ReservedTag, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4, DataSN: 5, BufferOffset: 8192, Residual: 1, DataLen: 512}
	di.Encode(&b)
	got5, err := DecodeDataIn(&b)
	check("DataIn", di, got5, err)
	do := DataOut{Final: true, LUN: lun, ITT: 1, TTT: 2, ExpStatSN: 3, DataSN: 4, BufferOffset: 5, DataLen: 6}
	do.Encode(&b)
	got6, err := DecodeDataOut(&b)
	check("DataOut", do, got6, err)
	r2t := R2T{LUN: lun, ITT: 1, TTT: 2, StatSN: 3, ExpCmdSN: 4, MaxCmdSN: 5, R2TSN: 6, BufferOffset: 7, DesiredLength: 8}
	r2t.Encode(&b)
	got7, err := DecodeR2T(&b)
	check("R2T", r2t, got7, err)
	no := NOPOut{Immediate: true, ITT: ReservedTag, TTT: 5, CmdSN: 1, ExpStatSN: 2, DataLen: 4}
	no.Encode(&b)
	got8, err := DecodeNOPOut(&b)
	check("NOPOut", no, got8, err)
	ni := NOPIn{ITT: 1, TTT: ReservedTag, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3}
	ni.Encode(&b)
	got9, err := DecodeNOPIn(&b)
	check("NOPIn", ni, got9, err)
	tr := TextRequest{Immediate: true, Final: true, ITT: 1, TTT: ReservedTag, CmdSN: 4, ExpStatSN: 5, DataLen: 16}
	tr.Encode(&b)
	got10, err := DecodeTextRequest(&b)
	check("TextRequest", tr, got10, err)
	tp := TextResponse{Continue: true, ITT: 1, TTT: 9, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, DataLen: 8}
	tp.Encode(&b)
	got11, err := DecodeTextResponse(&b)
	check("TextResponse", tp, got11, err)
	lo := LogoutRequest{Immediate: true, Reason: LogoutCloseSession, ITT: 3, CID: 1, CmdSN: 4, ExpStatSN: 5}
	lo.Encode(&b)
	got12, err := DecodeLogoutRequest(&b)
	check("LogoutRequest", lo, got12, err)
	lrsp := LogoutResponse{Response: 0, ITT: 3, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, Time2Wait: 2, Time2Retain: 20}
	lrsp.Encode(&b)
	got13, err := DecodeLogoutResponse(&b)
	check("LogoutResponse", lrsp, got13, err)
	am := AsyncMessage{LUN: lun, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, Event: AsyncDropConnection, Param1: 1, Param2: 2, Param3: 20}
	am.Encode(&b)
	got14, err := DecodeAsyncMessage(&b)
	check("AsyncMessage", am, got14, err)
	rj := Reject{Reason: RejectProtocolError, StatSN: 1, ExpCmdSN: 2, MaxCmdSN: 3, DataLen: 48}
	rj.Encode(&b)
	got15, err := DecodeReject(&b)
	check("Reject", rj, got15, err)
	tm := TaskMgmtRequest{Immediate: true, Function: TMFAbortTask, LUN: lun, ITT: 1, RTT: 2, CmdSN: 3, ExpStatSN: 4, RefCmdSN: 5}
	tm.Encode(&b)
	got16, err := DecodeTaskMgmtRequest(&b)
	check("TaskMgmtRequest", tm, got16, err)
	tmr := TaskMgmtResponse{Response: 1, ITT: 1, StatSN: 2, ExpCmdSN: 3, MaxCmdSN: 4}
	tmr.Encode(&b)
	got17, err := DecodeTaskMgmtResponse(&b)
	check("TaskMgmtResponse", tmr, got17, err)

	if _, err := DecodeDataIn(&b); !errors.Is(err, ErrOpcode) {
		t.Errorf("DecodeDataIn(Task Mgmt Response) error = %v, want ErrOpcode", err)
	}
}

// TestReaderDigests frames PDUs with digests and reads them back, then
// corrupts each part and expects the matching error.
func TestReaderDigests(t *testing.T) {
	var h BHS
	(&DataIn{ITT: 1, DataLen: 5}).Encode(&h)
	data := []byte("hello")
	frame := AppendPDU(nil, &h, data, true, true)
	if want := 48 + 4 + 8 + 4; len(frame) != want {
		t.Fatalf("AppendPDU length = %d, want %d", len(frame), want)
	}
	read := func(f []byte, maxData int) ([]byte, error) {
		r := &Reader{R: bufio.NewReader(bytes.NewReader(f)), HeaderDigest: true, DataDigest: true, MaxData: maxData}
		var got BHS
		if err := r.ReadHeader(&got); err != nil {
			return nil, err
		}
		buf := make([]byte, got.DataLen())
		return buf, r.ReadData(&got, buf)
	}
	got, err := read(frame, 100)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read back = %q, %v; want hello", got, err)
	}
	bad := bytes.Clone(frame)
	bad[20] ^= 1
	if _, err := read(bad, 100); !errors.Is(err, ErrHeaderDigest) {
		t.Errorf("corrupt header: error = %v, want ErrHeaderDigest", err)
	}
	bad = bytes.Clone(frame)
	bad[53] ^= 1
	if _, err := read(bad, 100); !errors.Is(err, ErrDataDigest) {
		t.Errorf("corrupt data: error = %v, want ErrDataDigest", err)
	}
	if _, err := read(frame, 4); !errors.Is(err, ErrDataTooLong) {
		t.Errorf("limit 4: error = %v, want ErrDataTooLong", err)
	}
	if _, err := read(frame[:30], 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: error = %v, want io.ErrUnexpectedEOF", err)
	}
	// Discarding also checks the digest.
	r := &Reader{R: bufio.NewReader(bytes.NewReader(frame)), HeaderDigest: true, DataDigest: true, MaxData: 100}
	var hh BHS
	if err := r.ReadHeader(&hh); err != nil {
		t.Fatal(err)
	}
	if err := r.DiscardData(&hh); err != nil {
		t.Errorf("DiscardData = %v", err)
	}
}

// TestReaderLargeSegments reads a stream mixing large and small data
// segments over a real socket (the readv path) and over a plain reader:
// every segment arrives intact, and the header after a segment that went
// straight to the caller's buffer is read on its own, so that the next
// segment can too.
func TestReaderLargeSegments(t *testing.T) {
	sizes := []int{64 << 10, 128 << 10, 100, 0, 3, 64<<10 + 1, 9000, 8 << 10}
	for _, digests := range []bool{false, true} {
		var stream []byte
		var want [][]byte
		for i, n := range sizes {
			var h BHS
			(&DataIn{ITT: uint32(i), DataLen: n}).Encode(&h)
			data := make([]byte, n)
			for j := range data {
				data[j] = byte(i + j*7)
			}
			want = append(want, data)
			stream = AppendPDU(stream, &h, data, digests, digests)
		}
		readAll := func(name string, src io.Reader) {
			r := &Reader{R: src, HeaderDigest: digests, DataDigest: digests, MaxData: 1 << 20}
			direct := 0
			for i := range sizes {
				var h BHS
				after := r.large
				if err := r.ReadHeader(&h); err != nil {
					t.Fatalf("%s, digests %v: ReadHeader #%d = %v", name, digests, i, err)
				}
				if after {
					direct++
					if r.Buffered() != 0 {
						t.Errorf("%s, digests %v: after segment #%d went to the caller's buffer, ReadHeader buffered %d bytes, want 0", name, digests, i-1, r.Buffered())
					}
				}
				got := make([]byte, h.DataLen())
				if err := r.ReadData(&h, got); err != nil {
					t.Fatalf("%s, digests %v: ReadData #%d = %v", name, digests, i, err)
				}
				if h.ITT() != uint32(i) || !bytes.Equal(got, want[i]) {
					t.Fatalf("%s, digests %v: PDU #%d = ITT %d, %d bytes, want ITT %d with its %d bytes", name, digests, i, h.ITT(), len(got), i, len(want[i]))
				}
			}
			if direct == 0 {
				t.Errorf("%s, digests %v: no segment went straight to the caller's buffer", name, digests)
			}
		}
		readAll("bytes.Reader", bytes.NewReader(stream))

		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			testenv.Missing(t, fmt.Sprintf("no loopback TCP: %v", err))
		}
		go func() {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return
			}
			defer c.Close()
			// Small writes, so that reads see every kind of boundary.
			for b := stream; len(b) > 0; {
				n := min(len(b), 1000+len(b)%7000)
				if _, err := c.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
		}()
		c, err := l.Accept()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		readAll("TCP", c)
		c.Close()
	}
}
