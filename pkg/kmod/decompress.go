package kmod

import (
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
)

// maxModuleSize bounds the init_module fallback's read; the largest module
// in a Debian kernel is ~10 MiB (amdgpu).
const maxModuleSize = 64 << 20

// compressed reports whether path is a compressed module file.
func compressed(path string) bool {
	return strings.HasSuffix(path, ".ko.xz") || strings.HasSuffix(path, ".ko.zst") || strings.HasSuffix(path, ".ko.gz")
}

// decompress reads the module in r, compressed as path's extension says
// (kmod's libkmod-file.c does the same by extension), bounded by
// maxModuleSize.
func decompress(r io.Reader, path string) ([]byte, error) {
	var dr io.Reader
	switch {
	case strings.HasSuffix(path, ".xz"):
		x, err := xz.NewReader(r, 0) // XZ Embedded in Go, as pkg/handoff
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", path, err)
		}
		dr = x
	case strings.HasSuffix(path, ".zst"):
		z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", path, err)
		}
		defer z.Close()
		dr = z
	case strings.HasSuffix(path, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", path, err)
		}
		dr = g
	default:
		return io.ReadAll(io.LimitReader(r, maxModuleSize+1))
	}
	b, err := io.ReadAll(io.LimitReader(dr, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	if len(b) > maxModuleSize {
		return nil, fmt.Errorf("decompress %s: over %d bytes", path, maxModuleSize)
	}
	return b, nil
}
