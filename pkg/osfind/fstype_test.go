package osfind

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

func TestDetectFS(t *testing.T) {
	blank := func() []byte { return make([]byte, 4096) }
	xfs := blank()
	copy(xfs, "XFSB")
	ext := blank()
	binary.LittleEndian.PutUint16(ext[0x438:], 0xef53)
	fat := func(off int, typ string) []byte {
		b := blank()
		copy(b[off:], typ)
		b[510], b[511] = 0x55, 0xaa
		return b
	}
	noSig := fat(54, "FAT16   ")
	noSig[511] = 0
	// A BPB as mkfs.fat writes one, without signature or type string.
	bpb := blank()
	bpb[0] = 0xeb
	binary.LittleEndian.PutUint16(bpb[11:], 512)
	bpb[13], bpb[16], bpb[21] = 4, 2, 0xf8
	binary.LittleEndian.PutUint16(bpb[14:], 1)
	ntfs := slices.Clone(bpb)
	copy(ntfs[3:], "NTFS    ")
	ntfs[16] = 0
	binary.LittleEndian.PutUint16(ntfs[14:], 0)
	for _, tt := range []struct {
		name string
		blk  []byte
		want string
	}{
		{"xfs", xfs, "xfs"},
		{"ext", ext, "ext4"},
		{"fat16", fat(54, "FAT16   "), "vfat"},
		{"fat32", fat(82, "FAT32   "), "vfat"},
		{"boot sector without FAT", fat(3, "NTFS    "), ""},
		{"FAT type string, no signature, no BPB", noSig, ""},
		{"BPB alone", bpb, "vfat"},
		{"NTFS", ntfs, ""},
		{"zeros", blank(), ""},
		{"short", []byte("XF"), ""},
		{"empty", nil, ""},
	} {
		if got := DetectFS(bytes.NewReader(tt.blk)); got != tt.want {
			t.Errorf("DetectFS(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDetectFSMkfs reads what the real tools write (both are in make deps:
// e2fsprogs and dosfstools, which the disk fixtures use too; xfsprogs is
// not, so XFS is only checked against its documented magic above).
func TestDetectFSMkfs(t *testing.T) {
	for _, tt := range []struct {
		want string
		cmd  []string
	}{
		{"ext4", []string{"mkfs.ext4", "-q", "-F"}},
		{"ext4", []string{"mkfs.ext4", "-q", "-F", "-t", "ext2"}},
		{"vfat", []string{"mkfs.fat", "-F", "32"}},
		{"vfat", []string{"mkfs.fat", "-F", "16"}},
		{"vfat", []string{"mkfs.fat", "-F", "12"}},
	} {
		bin := testenv.RequireBinaries(t, tt.cmd[0])[0]
		img := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, append(tt.cmd[1:], img)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", tt.cmd, err, out)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		got := DetectFS(f)
		f.Close()
		if got != tt.want {
			t.Errorf("DetectFS(%v) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

// FuzzDetectFS: any first sectors give a name DetectFS knows or "", never
// a panic.
func FuzzDetectFS(f *testing.F) {
	ext := make([]byte, 2048)
	binary.LittleEndian.PutUint16(ext[0x438:], 0xef53)
	f.Add(ext)
	f.Add([]byte("XFSB"))
	f.Add(append(make([]byte, 510), 0x55, 0xaa))
	f.Fuzz(func(t *testing.T, b []byte) {
		switch got := DetectFS(bytes.NewReader(b)); got {
		case "", "ext4", "xfs", "vfat":
		default:
			t.Fatalf("DetectFS = %q", got)
		}
	})
}
