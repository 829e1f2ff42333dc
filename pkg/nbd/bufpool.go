package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from power-of-two size classes so a steady stream of
// 128 KiB reads reuses the same few buffers instead of feeding the GC. The
// classes span 4 KiB (a page, the smallest useful request) to 32 MiB (the
// kernel's max_hw_sectors of 65536 sectors, nbd_dev_add).
const (
	minBufShift = 12
	maxBufShift = 25
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuf returns a slice of length n. Sizes above the largest class are
// allocated directly (the caller's limits keep them rare and bounded).
func getBuf(n int) []byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		return make([]byte, n)
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minBufShift))
}

// putBuf returns b to its class; buffers that do not fit a class exactly
// are left to the GC.
func putBuf(b []byte) {
	if b == nil {
		return
	}
	c := bufClass(cap(b))
	if c >= len(bufPools) || cap(b) != 1<<(c+minBufShift) {
		return
	}
	b = b[:cap(b)]
	bufPools[c].Put(&b)
}
