package nbd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRequestWire(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Request
	}{
		{
			// A kernel WRITE with REQ_FUA: type word 0x00010001
			// (NBD_CMD_FLAG_FUA is 1<<16 of it).
			name: "write FUA",
			wire: "25609513" + "0001" + "0001" + "0100000007000000" + "0000000000100000" + "00020000",
			want: Request{Flags: CmdFlagFUA, Type: CmdWrite, Handle: 0x0100000007000000, Offset: 0x100000, Length: 0x20000},
		},
		{
			name: "flush",
			wire: "25609513" + "0000" + "0003" + "ffffffffffffffff" + "0000000000000000" + "00000000",
			want: Request{Type: CmdFlush, Handle: ^uint64(0)},
		},
		{
			name: "read at the top of a 2^64 range",
			wire: "25609513" + "0000" + "0000" + "0000000000000001" + "fffffffffffffe00" + "00000200",
			want: Request{Type: CmdRead, Handle: 1, Offset: 0xfffffffffffffe00, Length: 512},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := unhex(t, tt.wire)
			var got Request
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary(%s) = %v", tt.wire, err)
			}
			if got != tt.want {
				t.Errorf("UnmarshalBinary(%s) = %+v, want %+v", tt.wire, got, tt.want)
			}
			enc, _ := tt.want.MarshalBinary()
			if !bytes.Equal(enc, b) {
				t.Errorf("MarshalBinary(%+v) = %x, want %s", tt.want, enc, tt.wire)
			}
		})
	}
}

func TestReplyWire(t *testing.T) {
	wire := "67446698" + "00000005" + "0102030405060708"
	want := Reply{Error: EIO, Handle: 0x0102030405060708}
	var got Reply
	if err := got.UnmarshalBinary(unhex(t, wire)); err != nil || got != want {
		t.Errorf("UnmarshalBinary(%s) = %+v, %v, want %+v", wire, got, err, want)
	}
	enc, _ := want.MarshalBinary()
	if hex.EncodeToString(enc) != wire {
		t.Errorf("MarshalBinary(%+v) = %x, want %s", want, enc, wire)
	}
	var put [ReplySize]byte
	putReply(put[:], want)
	if !bytes.Equal(put[:], enc) {
		t.Errorf("putReply(%+v) = %x, want %x", want, put, enc)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := Request{Type: CmdRead, Length: 512}.MarshalBinary()
	goodReply, _ := Reply{}.MarshalBinary()
	tests := []struct {
		name string
		b    []byte
		rep  bool
		want error
	}{
		{"empty request", nil, false, ErrShortHeader},
		{"short request", good[:27], false, ErrShortHeader},
		{"long request", append(good, 0), false, ErrShortHeader},
		{"reply magic in request", append(unhex(t, "67446698"), good[4:]...), false, ErrBadMagic},
		{"old request magic", append(unhex(t, "12560953"), good[4:]...), false, ErrBadMagic},
		{"short reply", goodReply[:15], true, ErrShortHeader},
		{"request magic in reply", append(unhex(t, "25609513"), goodReply[4:]...), true, ErrBadMagic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.rep {
				err = new(Reply).UnmarshalBinary(tt.b)
			} else {
				err = new(Request).UnmarshalBinary(tt.b)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("UnmarshalBinary(%x) = %v, want %v", tt.b, err, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{CmdWriteZeroes.String(), "WRITE_ZEROES"},
		{Command(99).String(), "CMD(99)"},
		{(CmdFlagFUA | CmdFlagNoHole).String(), "FUA|NO_HOLE"},
		{CommandFlags(0).String(), "0"},
		{CommandFlags(1 << 15).String(), "0x8000"},
		{(FlagHasFlags | FlagSendFlush | FlagCanMultiConn).String(), "HAS_FLAGS|SEND_FLUSH|CAN_MULTI_CONN"},
		{EPERM.String(), "EPERM"},
		{Errno(7).String(), "errno(7)"},
		{ENOSPC.Error(), "nbd: ENOSPC"},
		{Request{Type: CmdWrite, Flags: CmdFlagFUA, Offset: 4096, Length: 512, Handle: 3}.String(),
			"WRITE|FUA off=4096 len=512 handle=0x0000000000000003"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		err  error
		want Errno
	}{
		{nil, 0},
		{errors.New("boom"), EIO},
		{ENOSPC, ENOSPC},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", EOVERFLOW)), EOVERFLOW},
		{Errno(0), EIO}, // a zero Errno is not an answer
		{&os.PathError{Op: "open", Path: "/x", Err: fs.ErrPermission}, EPERM},
	}
	for _, tt := range tests {
		if got := ErrnoOf(tt.err); got != tt.want {
			t.Errorf("ErrnoOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBufPool(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 4097, 128 << 10, 1<<20 + 1, 32 << 20, 32<<20 + 1} {
		b := getBuf(n)
		if len(b) != n {
			t.Fatalf("getBuf(%d) has length %d", n, len(b))
		}
		if n <= 32<<20 && cap(b)&(cap(b)-1) != 0 {
			t.Errorf("getBuf(%d) has capacity %d, want a power of two", n, cap(b))
		}
		putBuf(b)
	}
	putBuf(make([]byte, 5000)) // not a class size: dropped, not reused
	if b := getBuf(5000); cap(b) != 8192 {
		t.Errorf("getBuf(5000) capacity = %d, want 8192", cap(b))
	}
}
