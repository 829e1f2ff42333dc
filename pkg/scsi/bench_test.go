package scsi

import (
	"context"
	"testing"
)

// nullExec completes every command at once with all data "transferred",
// so the benchmarks measure the Disk's own per-request cost.
type nullExec struct{}

func (nullExec) Execute(_ context.Context, cmd *Command) (*Result, error) {
	return &Result{N: len(cmd.DataIn)}, nil
}

func benchDisk(b *testing.B, size int, write bool) {
	tgt := newMemTarget()
	tgt.addDisk(lun1, 512, 1<<21)
	d, err := OpenDisk(context.Background(), tgt, lun1, DiskOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	d.r.ex = nullExec{}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, size)
		off := int64(0)
		for pb.Next() {
			var err error
			if write {
				_, err = d.WriteAt(buf, off)
			} else {
				_, err = d.ReadAt(buf, off)
			}
			if err != nil {
				b.Fatal(err)
			}
			off = (off + int64(size)) % (1 << 30)
		}
	})
}

func BenchmarkDiskRead128K(b *testing.B) { benchDisk(b, 128<<10, false) }
func BenchmarkDiskRead4K(b *testing.B)   { benchDisk(b, 4<<10, false) }
func BenchmarkDiskWrite4K(b *testing.B)  { benchDisk(b, 4<<10, true) }
