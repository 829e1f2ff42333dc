package wire

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzBHS decodes arbitrary headers with every typed decoder, re-encodes
// what decoded and checks the second decode agrees (round trip).
func FuzzBHS(f *testing.F) {
	var b BHS
	(&DataIn{Final: true, HasStatus: true, ITT: 1, DataLen: 512}).Encode(&b)
	f.Add(b[:])
	(&LoginResponse{Transit: true, CSG: 1, NSG: 3, StatusClass: 1, StatusDetail: 1, DataLen: 30}).Encode(&b)
	f.Add(b[:])
	(&R2T{ITT: 1, TTT: 2, DesiredLength: 1 << 20}).Encode(&b)
	f.Add(b[:])
	f.Add(bytes.Repeat([]byte{0xff}, 48))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < BHSLen {
			return
		}
		var h BHS
		copy(h[:], in)
		_ = h.DataLen()
		_ = h.AHSLen()
		_, _, _, _ = h.StatusSeq()
		rt := func(name string, decode func(*BHS) (any, error), encode func(any, *BHS)) {
			v, err := decode(&h)
			if err != nil {
				return
			}
			var e BHS
			encode(v, &e)
			v2, err := decode(&e)
			if err != nil {
				t.Fatalf("%s: re-decode failed: %v", name, err)
			}
			if v != v2 {
				t.Fatalf("%s: round trip %+v != %+v", name, v, v2)
			}
		}
		rt("LoginResponse", func(b *BHS) (any, error) { return DecodeLoginResponse(b) },
			func(v any, b *BHS) { p := v.(LoginResponse); p.Encode(b) })
		rt("LoginRequest", func(b *BHS) (any, error) { return DecodeLoginRequest(b) },
			func(v any, b *BHS) { p := v.(LoginRequest); p.Encode(b) })
		rt("DataIn", func(b *BHS) (any, error) { return DecodeDataIn(b) },
			func(v any, b *BHS) { p := v.(DataIn); p.Encode(b) })
		rt("SCSIResponse", func(b *BHS) (any, error) { return DecodeSCSIResponse(b) },
			func(v any, b *BHS) { p := v.(SCSIResponse); p.Encode(b) })
		rt("R2T", func(b *BHS) (any, error) { return DecodeR2T(b) },
			func(v any, b *BHS) { p := v.(R2T); p.Encode(b) })
		rt("NOPIn", func(b *BHS) (any, error) { return DecodeNOPIn(b) },
			func(v any, b *BHS) { p := v.(NOPIn); p.Encode(b) })
		rt("TextResponse", func(b *BHS) (any, error) { return DecodeTextResponse(b) },
			func(v any, b *BHS) { p := v.(TextResponse); p.Encode(b) })
		rt("LogoutResponse", func(b *BHS) (any, error) { return DecodeLogoutResponse(b) },
			func(v any, b *BHS) { p := v.(LogoutResponse); p.Encode(b) })
		rt("AsyncMessage", func(b *BHS) (any, error) { return DecodeAsyncMessage(b) },
			func(v any, b *BHS) { p := v.(AsyncMessage); p.Encode(b) })
		rt("Reject", func(b *BHS) (any, error) { return DecodeReject(b) },
			func(v any, b *BHS) { p := v.(Reject); p.Encode(b) })
		rt("SCSICommand", func(b *BHS) (any, error) { return DecodeSCSICommand(b) },
			func(v any, b *BHS) { p := v.(SCSICommand); p.Encode(b) })
		rt("DataOut", func(b *BHS) (any, error) { return DecodeDataOut(b) },
			func(v any, b *BHS) { p := v.(DataOut); p.Encode(b) })
	})
}

// FuzzReader feeds arbitrary streams (with and without digests, i.e. the
// AHS, header digest, data and padding paths) to the PDU reader: it must
// fail cleanly and never read a segment beyond MaxData.
func FuzzReader(f *testing.F) {
	var h BHS
	(&DataIn{ITT: 1, DataLen: 3}).Encode(&h)
	f.Add(AppendPDU(nil, &h, []byte("abc"), true, true), true)
	f.Add(AppendPDU(nil, &h, []byte("abc"), false, false), false)
	big := h
	big[4] = 2 // an AHS of 8 bytes
	big.SetDataLen(MaxDataSegment)
	f.Add(big[:], false)
	f.Fuzz(func(t *testing.T, in []byte, digests bool) {
		r := &Reader{R: bufio.NewReaderSize(bytes.NewReader(in), 64), HeaderDigest: digests, DataDigest: digests, MaxData: 1024}
		for range 8 {
			var h BHS
			if err := r.ReadHeader(&h); err != nil {
				return
			}
			if h.DataLen() > 1024 {
				t.Fatalf("ReadHeader accepted DataLen %d > MaxData", h.DataLen())
			}
			if h.Opcode()&1 == 0 {
				buf := make([]byte, h.DataLen())
				if err := r.ReadData(&h, buf); err != nil {
					return
				}
			} else if err := r.DiscardData(&h); err != nil {
				return
			}
		}
	})
}

// FuzzParseText parses arbitrary text segments; what parses must survive
// AppendText → ParseText unchanged.
func FuzzParseText(f *testing.F) {
	f.Add([]byte("TargetName=iqn.2026-01.org.lunboot:t\x00TargetAddress=[::1]:3260,1\x00"))
	f.Add([]byte("CHAP_A=5\x00CHAP_I=1\x00CHAP_C=0x0102\x00"))
	f.Add([]byte("A=1"))
	f.Add([]byte("\x00\x00=\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		kvs, err := ParseText(in, 64)
		if err != nil {
			return
		}
		again, err := ParseText(AppendText(nil, kvs...), 64)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", in, err)
		}
		if len(again) != len(kvs) {
			t.Fatalf("re-parse count %d != %d", len(again), len(kvs))
		}
		for i := range kvs {
			if kvs[i] != again[i] {
				t.Fatalf("pair %d: %v != %v", i, kvs[i], again[i])
			}
		}
	})
}

// FuzzDecodeBinary decodes arbitrary CHAP values: bounded output, and hex
// re-encoding of a result decodes to the same bytes.
func FuzzDecodeBinary(f *testing.F) {
	for _, s := range []string{"0x0102", "0X1", "0bAQI=", "0b", "0x", "0bAAAA====", "0xg0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeBinary(s)
		if err != nil {
			return
		}
		if len(b) > MaxBinaryLen {
			t.Fatalf("DecodeBinary(%q) returned %d bytes", s, len(b))
		}
		if len(b) == 0 {
			return
		}
		back, err := DecodeBinary(EncodeHex(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("hex round trip of %x: %x, %v", b, back, err)
		}
		back, err = DecodeBinary(EncodeBase64(b))
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("base64 round trip of %x: %x, %v", b, back, err)
		}
	})
}

// FuzzParseNumber checks numbers stay within their bound.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "8192", "0x2000", "-1", "99999999999999999999", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseNumber(s, 65535)
		if err == nil && v > 65535 {
			t.Fatalf("ParseNumber(%q) = %d beyond max", s, v)
		}
	})
}
