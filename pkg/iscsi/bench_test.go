package iscsi

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Benchmarks measure; tests never assert speed. Compare the tgtd ones with
// libiscsi's iscsi-perf on the same LUN:
//
//	iscsi-perf -m 32 -b 256 iscsi://127.0.0.1:<port>/<iqn>/1     (sequential 128 KiB)
//	iscsi-perf -m 32 -b 8 -r iscsi://127.0.0.1:<port>/<iqn>/1    (random 4 KiB)

// pipelined runs b.N commands of size bytes with depth in flight; lba picks
// the block of the i-th command.
func pipelined(b *testing.B, s *Session, lun int, size, depth int, write bool, lba func(i int64) uint32) {
	b.Helper()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	ctx := context.Background()
	cpu0 := cpuTime()
	b.ResetTimer()
	for range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				cmd := &scsi.Command{LUN: lunN(lun), CDB: read10(lba(i), uint16(size/512)), DataIn: buf}
				if write {
					cmd = &scsi.Command{LUN: lunN(lun), CDB: write10(lba(i), uint16(size/512)), DataOut: buf}
				}
				res, err := s.Execute(ctx, cmd)
				if err == nil && res.Status != 0 {
					res, err = s.Execute(ctx, cmd) // a unit attention
				}
				if err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// CPU per command (this process: initiator, plus the in-process
	// target where there is one) does not depend on how loaded the
	// machine is, unlike ns/op.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func seqLBA(size int, blocks int64) func(int64) uint32 {
	per := int64(size / 512)
	return func(i int64) uint32 { return uint32((i * per) % (blocks - per)) }
}

func randLBA(size int, blocks int64) func(int64) uint32 {
	per := int64(size / 512)
	return func(i int64) uint32 {
		x := uint64(i)*0x9e3779b97f4a7c15 + 1
		x ^= x >> 29
		return uint32(int64(x%uint64(blocks/per)) * per)
	}
}

func benchTarget(b *testing.B, digests bool) *Session {
	b.Helper()
	tg := iscsitest.NewTarget(iscsitest.Options{LUNs: []iscsitest.LUNOptions{{Size: 64 << 20}}, Window: 64})
	if _, err := tg.Listen(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tg.Close() })
	cfg := Config{Portal: tg.Addr(), TargetName: tg.Name(), InitiatorName: "iqn.2026-11.org.lunboot:bench"}
	if digests {
		cfg.HeaderDigest, cfg.DataDigest = DigestRequire, DigestRequire
	}
	s, err := Login(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkReadPipelined: 128 KiB reads, 32 in flight, in-process target
// over loopback TCP.
func BenchmarkReadPipelined(b *testing.B) {
	s := benchTarget(b, false)
	pipelined(b, s, 0, 128<<10, 32, false, seqLBA(128<<10, (64<<20)/512))
}

// BenchmarkReadPipelinedDigests is the same with CRC32C header and data
// digests.
func BenchmarkReadPipelinedDigests(b *testing.B) {
	s := benchTarget(b, true)
	pipelined(b, s, 0, 128<<10, 32, false, seqLBA(128<<10, (64<<20)/512))
}

// BenchmarkWritePipelined: 128 KiB writes, 32 in flight.
func BenchmarkWritePipelined(b *testing.B) {
	s := benchTarget(b, false)
	pipelined(b, s, 0, 128<<10, 32, true, seqLBA(128<<10, (64<<20)/512))
}

// BenchmarkRead4KRandom: 4 KiB random reads, 32 in flight (IOPS = 1e9 /
// ns/op).
func BenchmarkRead4KRandom(b *testing.B) {
	s := benchTarget(b, false)
	pipelined(b, s, 0, 4096, 32, false, randLBA(4096, (64<<20)/512))
}

// tgtdBench starts tgtd with a 1 GiB LUN in /dev/shm, as DESIGN.md's
// iscsi-perf baseline.
//
// LUNBOOT_BENCH_PORTAL and LUNBOOT_BENCH_TARGET point the benchmarks at a
// target already running (LUN 1, 1 GiB), to compare with iscsi-perf on
// the very same tgtd.
func tgtdBench(b *testing.B) (*Session, int64) {
	b.Helper()
	if portal := os.Getenv("LUNBOOT_BENCH_PORTAL"); portal != "" {
		s, err := Login(context.Background(), Config{Portal: portal, TargetName: os.Getenv("LUNBOOT_BENCH_TARGET"), InitiatorName: initIQN})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s, (1 << 30) / 512
	}
	dir := "/dev/shm"
	if _, err := os.Stat(dir); err != nil {
		dir = b.TempDir()
	}
	const size = 1 << 30
	e := startTgtd(b, 0, 0)
	img := filepath.Join(dir, "lunboot-bench-"+filepath.Base(b.TempDir())+".img")
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	b.Cleanup(func() { os.Remove(img) })
	if err := e.Srv.AddLUN(1, 1, img); err != nil {
		b.Fatal(err)
	}
	cfg := Config{Portal: e.Portal, TargetName: tgtIQN, InitiatorName: initIQN}
	s, err := Login(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	b.Logf("tgtd portal %s, LUN 1 = %s", e.Portal, img)
	return s, size / 512
}

// BenchmarkTgtdSequentialRead: 128 KiB reads, 32 in flight, against tgtd.
func BenchmarkTgtdSequentialRead(b *testing.B) {
	s, blocks := tgtdBench(b)
	pipelined(b, s, 1, 128<<10, 32, false, seqLBA(128<<10, blocks))
}

// BenchmarkTgtdRandomRead4K: 4 KiB random reads, 32 in flight, against tgtd.
func BenchmarkTgtdRandomRead4K(b *testing.B) {
	s, blocks := tgtdBench(b)
	pipelined(b, s, 1, 4096, 32, false, randLBA(4096, blocks))
}

// BenchmarkTgtdSequentialWrite: 128 KiB writes, 32 in flight, against tgtd.
func BenchmarkTgtdSequentialWrite(b *testing.B) {
	s, blocks := tgtdBench(b)
	pipelined(b, s, 1, 128<<10, 32, true, seqLBA(128<<10, blocks))
}

// BenchmarkTgtdRead4KQD1: 4 KiB random reads one at a time (latency).
func BenchmarkTgtdRead4KQD1(b *testing.B) {
	s, blocks := tgtdBench(b)
	pipelined(b, s, 1, 4096, 1, false, randLBA(4096, blocks))
}
