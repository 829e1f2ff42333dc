package nbd

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func FuzzRequest(f *testing.F) {
	for _, r := range []Request{
		{Type: CmdRead, Length: 512},
		{Type: CmdWrite, Flags: CmdFlagFUA, Handle: 1 << 40, Offset: 1 << 30, Length: 128 << 10},
		{Type: CmdDisc},
		{Type: CmdWriteZeroes, Flags: CmdFlagNoHole, Length: ^uint32(0)},
		{Type: 0xffff, Flags: 0xffff, Offset: ^uint64(0)},
	} {
		b, _ := r.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, RequestSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := r.UnmarshalBinary(b); err != nil {
			return
		}
		_ = r.String()
		enc, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("MarshalBinary(UnmarshalBinary(%x)) = %x, %v, want the input back", b, enc, err)
		}
	})
}

func FuzzReply(f *testing.F) {
	b, _ := Reply{Error: EIO, Handle: 7}.MarshalBinary()
	f.Add(b)
	f.Add([]byte{0x67, 0x44, 0x66, 0x98})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reply
		if err := r.UnmarshalBinary(b); err != nil {
			return
		}
		enc, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("MarshalBinary(UnmarshalBinary(%x)) = %x, %v, want the input back", b, enc, err)
		}
	})
}

// fuzzConn feeds a fixed byte stream to Serve and swallows its replies.
type fuzzConn struct{ r io.Reader }

func (c fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c fuzzConn) Write(p []byte) (int, error) { return len(p), nil }
func (c fuzzConn) Close() error                { return nil }

// FuzzServe feeds arbitrary request streams to Serve: it must neither panic
// nor hang, and must stop at the end of the stream.
func FuzzServe(f *testing.F) {
	var seed []byte
	for _, r := range []struct {
		req  Request
		data []byte
	}{
		{Request{Type: CmdWrite, Offset: 512, Length: 4}, []byte{1, 2, 3, 4}},
		{Request{Type: CmdRead, Offset: 0, Length: 1024}, nil},
		{Request{Type: CmdTrim, Offset: 0, Length: 512}, nil},
		{Request{Type: CmdWriteZeroes, Flags: CmdFlagFUA, Offset: 1024, Length: 3000}, nil},
		{Request{Type: CmdFlush}, nil},
		{Request{Type: CmdRead, Offset: ^uint64(0), Length: ^uint32(0)}, nil},
		{Request{Type: CmdDisc}, nil},
	} {
		b, _ := r.req.MarshalBinary()
		seed = append(append(seed, b...), r.data...)
	}
	f.Add(seed)
	huge, _ := Request{Type: CmdWrite, Length: 1 << 31}.MarshalBinary()
	f.Add(huge)
	f.Fuzz(func(t *testing.T, stream []byte) {
		dev := newMemDevice(8192, 512)
		dev.canTrim = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Small limits keep every allocation tiny whatever the input says.
		err := Serve(ctx, fuzzConn{bytes.NewReader(stream)}, dev, Options{Workers: 4, MaxRequestBytes: 4096, MaxInFlightBytes: 8192})
		if ctx.Err() != nil {
			t.Fatalf("Serve did not stop at the end of a %d-byte stream", len(stream))
		}
		_ = err
	})
}

func FuzzStatusReply(f *testing.F) {
	f.Add(statusReplySeed(DeviceStatus{0, true}, DeviceStatus{1, false}))
	f.Add([]byte{4, 0, 9, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeStatusReply(b)
		if err != nil {
			return
		}
		for _, s := range st {
			if s.Index < 0 {
				t.Fatalf("decodeStatusReply(%x) returned index %d", b, s.Index)
			}
		}
	})
}

func FuzzConnectReply(f *testing.F) {
	f.Add([]byte{8, 0, 1, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if idx, err := decodeConnectReply(b); err == nil && idx < 0 {
			t.Fatalf("decodeConnectReply(%x) = %d", b, idx)
		}
	})
}
