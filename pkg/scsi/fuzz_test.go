package scsi

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The fuzz targets check that decoders never panic, never return more than
// the input can hold, and that what they decode survives an encode/decode
// round trip unchanged. Seeds are the spec-shaped vectors of codec_test.go
// plus the edge cases noted.

func FuzzParseSense(f *testing.F) {
	for _, s := range []string{
		"70 00 06 00 00 00 00 0a 00 00 00 00 29 00 00 00 00 00",
		"f0 00 03 00 00 12 34 0a 00 00 00 00 11 00 00 00 00 00",
		"70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 c0 00 02",
		"70 00 02",
		"71 00 03 00 00 00 00 ff 00 00 00 00 0c 00",
		"72 06 2a 09 00 00 00 00",
		"72 03 11 00 00 00 00 0c 00 0a 80 00 00 00 00 01 00 00 00 00",
		"73 05 21 00 00 00 00 10 02 06 00 00 80 00 09 00 03 02 00 07 05 02 00 20",
		"72 05 24 00 00 00 00 ff 00 ff 80",
		"72 00 00 00 00 00 00 08 04 02 00 e0 05 02 00 00",
	} {
		f.Add(hx(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseSense(b)
		if err != nil {
			return
		}
		_ = e.Error()
		again, err := ParseSense(e.Marshal())
		if err != nil {
			t.Fatalf("ParseSense(Marshal(%+v)) = %v", e, err)
		}
		if diff := cmp.Diff(e, again); diff != "" {
			t.Fatalf("sense round trip of % x mismatch (-first +second):\n%s", b, diff)
		}
	})
}

func FuzzParseInquiry(f *testing.F) {
	f.Add(hx(f, "7f 00 06 02 1f"))
	f.Add(hx(f, "00 00 06 12 0b 00 00 02 49 45 54 20 20 20 20 20"))
	f.Add((&InquiryData{Type: TypeDisk, Version: 6, Vendor: "LIO-ORG", Product: "disk0", Revision: "4.0",
		VersionDescriptors: []uint16{0x0960, 0x0300}}).Marshal())
	f.Add(append(hx(f, "00 80 05 02 ff"), bytes.Repeat([]byte{0x1b}, 300)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseInquiry(b)
		if err != nil {
			return
		}
		if len(d.VersionDescriptors) > 8 {
			t.Fatalf("ParseInquiry returned %d version descriptors, want at most 8", len(d.VersionDescriptors))
		}
		again, err := ParseInquiry(d.Marshal())
		if err != nil {
			t.Fatalf("ParseInquiry(Marshal(%+v)) = %v", d, err)
		}
		if diff := cmp.Diff(d, again); diff != "" {
			t.Fatalf("INQUIRY round trip of % x mismatch (-first +second):\n%s", b, diff)
		}
	})
}

func FuzzParseVPD(f *testing.F) {
	f.Add(vpd(0x00, 0x00, 0x80, 0x83, 0xb0, 0xb2))
	f.Add(vpd(0x80, []byte(" serial  ")...))
	f.Add(vpd(0x83, 0x01, 0x03, 0x00, 0x08, 0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12,
		0x53, 0xa8, 0x00, 0x08, 'i', 'q', 'n', '.', 'x', 0, 0, 0))
	f.Add(vpd(0x83, 0x01, 0x03, 0x00, 0xff, 0x60))
	f.Add(vpd(0xb0, make([]byte, 0x3c)...))
	f.Add(vpd(0xb0, 0, 0, 0, 8, 0, 0, 4, 0))
	f.Add(hx(f, "00 b2 00 04 00 e4 02 00"))
	f.Add(hx(f, "00 b2 ff ff 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if pages, err := ParseSupportedPages(b); err == nil {
			again, err := ParseSupportedPages(MarshalSupportedPages(pages))
			if err != nil || !bytes.Equal(pages, again) {
				t.Fatalf("supported pages round trip: % x -> % x, %v", pages, again, err)
			}
		}
		if s, err := ParseUnitSerialNumber(b); err == nil {
			again, err := ParseUnitSerialNumber(MarshalUnitSerialNumber(s))
			if err != nil || again != s {
				t.Fatalf("serial round trip: %q -> %q, %v", s, again, err)
			}
		}
		if ds, err := ParseDeviceIdentification(b); err == nil {
			for _, d := range ds {
				_ = d.String()
			}
			again, err := ParseDeviceIdentification(MarshalDeviceIdentification(ds))
			if err != nil {
				t.Fatalf("ParseDeviceIdentification(Marshal(%v)) = %v", ds, err)
			}
			if diff := cmp.Diff(ds, again); diff != "" {
				t.Fatalf("designator round trip mismatch (-first +second):\n%s", diff)
			}
		}
		if l, err := ParseBlockLimits(b); err == nil {
			again, err := ParseBlockLimits(l.Marshal())
			if err != nil || !cmp.Equal(l, again) {
				t.Fatalf("block limits round trip: %+v -> %+v, %v", l, again, err)
			}
		}
		if l, err := ParseLogicalBlockProvisioning(b); err == nil {
			again, err := ParseLogicalBlockProvisioning(l.Marshal())
			if err != nil || !cmp.Equal(l, again) {
				t.Fatalf("provisioning round trip: %+v -> %+v, %v", l, again, err)
			}
		}
	})
}

func FuzzParseReadCapacity(f *testing.F) {
	f.Add(hx(f, "00 1f ff ff 00 00 02 00"))
	f.Add(hx(f, "ff ff ff ff 00 00 02 00"))
	f.Add(hx(f, "00 00 00 05 ff ff ff ff 00 00 10 00 00 03 c0 08 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"))
	f.Add(hx(f, "ff ff ff ff ff ff ff ff ff ff ff ff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := ParseReadCapacity10(b); err == nil {
			_, _ = c.Bytes()
			again, err := ParseReadCapacity10(c.Marshal())
			if err != nil || !cmp.Equal(c, again) {
				t.Fatalf("READ CAPACITY(10) round trip: %+v -> %+v, %v", c, again, err)
			}
		}
		if c, err := ParseReadCapacity16(b); err == nil {
			_, _ = c.Bytes()
			_ = c.PhysicalBlockSize()
			again, err := ParseReadCapacity16(c.Marshal())
			if err != nil || !cmp.Equal(c, again) {
				t.Fatalf("READ CAPACITY(16) round trip: %+v -> %+v, %v", c, again, err)
			}
		}
	})
}

func FuzzParseReportLUNs(f *testing.F) {
	f.Add(hx(f, "00 00 00 18 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 40 01 00 00 00 00 00 00"))
	f.Add(hx(f, "ff ff ff f8 00 00 00 00 00 01 00 00 00 00 00 00"))
	f.Add(hx(f, "00 00 00 07 00 00 00 00 00 01 00 00 00 00 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		luns, _, err := ParseReportLUNs(b)
		if err != nil {
			return
		}
		if len(luns) > (len(b)-8)/8 {
			t.Fatalf("ParseReportLUNs returned %d LUNs from %d bytes", len(luns), len(b))
		}
		again, _, err := ParseReportLUNs(MarshalReportLUNs(luns))
		if err != nil || !cmp.Equal(luns, again) {
			t.Fatalf("REPORT LUNS round trip: %v -> %v, %v", luns, again, err)
		}
	})
}

func FuzzParseModeSense(f *testing.F) {
	f.Add(hx(f, "00 06 00 90 00 00 00 00"))
	f.Add(hx(f, "03 00 10 08"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseModeSense6(b); err == nil {
			again, err := ParseModeSense6(h.Marshal())
			if err != nil || !cmp.Equal(h, again) {
				t.Fatalf("MODE SENSE(6) round trip: %+v -> %+v, %v", h, again, err)
			}
		}
		if h, err := ParseModeSense10(b); err == nil {
			again, err := ParseModeSense10(h.Marshal())
			if err != nil || !cmp.Equal(h, again) {
				t.Fatalf("MODE SENSE(10) round trip: %+v -> %+v, %v", h, again, err)
			}
		}
	})
}

func FuzzParseUnmapParameters(f *testing.F) {
	f.Add(UnmapParameters([]UnmapDescriptor{{LBA: 0x10, Blocks: 0x20}, {LBA: 1 << 40, Blocks: 1}}))
	f.Add(hx(f, "00 16 ff f0 00 00 00 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseUnmapParameters(b)
		if err != nil {
			return
		}
		if len(ds) > len(b)/16 {
			t.Fatalf("ParseUnmapParameters returned %d ranges from %d bytes", len(ds), len(b))
		}
		again, err := ParseUnmapParameters(UnmapParameters(ds))
		if err != nil || !cmp.Equal(ds, again) {
			t.Fatalf("UNMAP parameters round trip: %v -> %v, %v", ds, again, err)
		}
	})
}
