package kmod

import (
	"bytes"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// TestDecompress: modules as distributions ship them (.ko.xz, .ko.zst,
// .ko.gz) come back byte for byte; a file whose content does not match its
// extension is an error naming it.
func TestDecompress(t *testing.T) {
	module := bytes.Repeat([]byte("\x7fELF module bytes "), 1000)
	var xzb, zstb, gzb bytes.Buffer
	xw, _ := xz.NewWriter(&xzb)
	xw.Write(module)
	xw.Close()
	zw, _ := zstd.NewWriter(&zstb)
	zw.Write(module)
	zw.Close()
	gw := gzip.NewWriter(&gzb)
	gw.Write(module)
	gw.Close()
	for _, tt := range []struct {
		path string
		data []byte
	}{{"a.ko.xz", xzb.Bytes()}, {"a.ko.zst", zstb.Bytes()}, {"a.ko.gz", gzb.Bytes()}, {"a.ko", module}} {
		got, err := decompress(bytes.NewReader(tt.data), tt.path)
		if err != nil || !bytes.Equal(got, module) {
			t.Errorf("decompress(%s) = %d bytes, %v; want the %d module bytes", tt.path, len(got), err, len(module))
		}
		if want := tt.path != "a.ko"; compressed(tt.path) != want {
			t.Errorf("compressed(%s) = %t", tt.path, !want)
		}
	}
	if _, err := decompress(bytes.NewReader(module), "bad.ko.xz"); err == nil || !strings.Contains(err.Error(), "bad.ko.xz") {
		t.Errorf("decompress(plain bytes as .xz) = %v, want an error naming the file", err)
	}
	// A load order may list compressed files, and nothing else new.
	if _, err := ParseOrder(strings.NewReader("nbd kernel/drivers/block/nbd.ko.zst\nx kernel/x.ko.bz2\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("ParseOrder(.ko.zst, .ko.bz2) = %v, want line 2 refused", err)
	}
}
