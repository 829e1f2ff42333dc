package handoff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

var allCompressions = []Compression{
	CompressionNone, CompressionGzip, CompressionXZ, CompressionZstd,
	CompressionLZ4, CompressionLZMA, CompressionBzip2,
}

// checkDebian asserts what every Debian-shaped image must show.
func checkDebian(t *testing.T, in *Initrd) {
	t.Helper()
	if in.Generator != GeneratorInitramfsTools || in.Network != NetKlibc {
		t.Errorf("Dialect() = %v, want initramfs-tools (klibc ipconfig)", in.Dialect())
	}
	for _, p := range []string{"sbin/iscsistart", "usr/sbin/iscsistart", "lib/modules", "scripts/local-top/iscsi", "scripts/local-top"} {
		if !in.Has(p) {
			t.Errorf("Has(%q) = false, want true", p)
		}
	}
	if in.Has("sbin/iscsiadm") {
		t.Errorf("Has(sbin/iscsiadm) = true, want false")
	}
	if p, ok := in.Module("iscsi_tcp", ""); !ok || !strings.HasSuffix(p, "iscsi_tcp.ko") {
		t.Errorf("Module(iscsi_tcp) = %q, %v; want the .ko", p, ok)
	}
	if p, ok := in.Module("virtio-blk", testKver); !ok || !strings.HasPrefix(p, "built-in") {
		t.Errorf("Module(virtio-blk) = %q, %v; want built-in", p, ok)
	}
	if _, ok := in.Module("e1000e", ""); ok {
		t.Errorf("Module(e1000e) found, want missing")
	}
	if got := in.InitramfsConf["MODULES"]; got != "most" {
		t.Errorf("InitramfsConf[MODULES] = %q, want most", got)
	}
	if got := in.InitiatorName; got != "iqn.1993-08.org.debian:01:abcdef" {
		t.Errorf("InitiatorName = %q, want the baked one", got)
	}
}

func TestInspectCompressions(t *testing.T) {
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			main := compress(t, c, cpioOf(debianFiles()...))
			img := cat(microcode(), main)
			in := inspectBytes(t, img)
			checkDebian(t, in)
			if len(in.Segments) != 2 {
				t.Fatalf("Segments = %+v, want early + main", in.Segments)
			}
			if s := in.Segments[0]; s.Compression != CompressionNone || s.Offset != 0 || s.Entries != 4 {
				t.Errorf("Segments[0] = %+v, want uncompressed at 0 with 4 entries", s)
			}
			if s := in.Segments[1]; s.Compression != c || s.Offset != int64(len(microcode())) {
				t.Errorf("Segments[1] = %+v, want %s at %d", s, c, len(microcode()))
			}
			if len(in.Warnings) != 0 {
				t.Errorf("Warnings = %q, want none", in.Warnings)
			}
			if !in.Has("kernel/x86/microcode/GenuineIntel.bin") {
				t.Errorf("early archive entries missing")
			}
		})
	}
}

// TestInspectGeneratorTools builds images with the same tools and flags as
// mkinitramfs and dracut (GNU cpio -H newc, then gzip -n, zstd -q -9,
// lz4 -l -9, xz --check=crc32 multi-threaded) from a real directory tree.
func TestInspectGeneratorTools(t *testing.T) {
	testenv.RequireBinaries(t, "cpio", "gzip", "zstd", "lz4", "xz")
	root := t.TempDir()
	for _, f := range debianFiles() {
		p := filepath.Join(root, f.name)
		switch f.mode & modeTypeMask {
		case modeDir:
			os.MkdirAll(p, 0o755)
		case modeSymlink:
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.Symlink(f.data, p); err != nil {
				t.Fatal(err)
			}
		default:
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(f.data), os.FileMode(f.mode&0o777)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A large incompressible module so xz -T0 writes several blocks.
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i*7919 + i>>9)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/modules", testKver, "kernel/big.ko"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// mkinitramfs: cd "$DESTDIR" && find . | LC_ALL=C sort | cpio -o -H newc
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0")
	cmd.Dir = root
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	for _, tc := range []struct {
		c    Compression
		argv []string
	}{
		{CompressionGzip, []string{"gzip", "-n", "-9"}},
		{CompressionZstd, []string{"zstd", "-q", "-9", "-T0"}},
		{CompressionLZ4, []string{"lz4", "-9", "-l"}},
		{CompressionXZ, []string{"xz", "-6", "--check=crc32", "--threads=2", "--block-size=1MiB"}},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
			cmd.Stdin = bytes.NewReader(raw)
			main, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %v", tc.argv, err)
			}
			in := inspectBytes(t, cat(microcode(), main))
			checkDebian(t, in)
			if s := in.Segments[len(in.Segments)-1]; s.Compression != tc.c || s.Unpacked != int64(len(raw)) {
				t.Errorf("last segment = %+v, want %s unpacking %d bytes", s, tc.c, len(raw))
			}
			if _, ok := in.Module("big", testKver); !ok {
				t.Errorf("Module(big) missing after the large entry")
			}
		})
	}
}

func TestInspectConcatenated(t *testing.T) {
	files := debianFiles()
	half := len(files) / 2
	a, b := cpioOf(files[:half]...), cpioOf(files[half:]...)
	for _, tt := range []struct {
		name     string
		img      []byte
		segments int
	}{
		// Two archives back to back inside one compressed stream.
		{"two archives in zstd", cat(microcode(), compress(t, CompressionZstd, cat(a, b))), 2},
		// Two gzip members, each its own stream (the kernel unpacks one
		// member, then looks at what follows).
		{"two gzip members", cat(microcode(), compress(t, CompressionGzip, a), compress(t, CompressionGzip, b)), 3},
		// Uncompressed archives with extra zero padding in between.
		{"padded uncompressed", cat(microcode(), make([]byte, 1024), a, make([]byte, 4), b), 3},
		// No early archive, compressed only.
		{"xz only", compress(t, CompressionXZ, cat(a, b)), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := inspectBytes(t, tt.img)
			checkDebian(t, in)
			if len(in.Segments) != tt.segments {
				t.Errorf("Segments = %+v, want %d", in.Segments, tt.segments)
			}
		})
	}
}

// TestInspectSegmentOffsets checks where each segment is found: the
// inspector must stop exactly at the end of a gzip member, or the
// uncompressed archive after it would be misaligned or not found.
func TestInspectSegmentOffsets(t *testing.T) {
	files := debianFiles()
	half := len(files) / 2
	a, b := cpioOf(files[:half]...), cpioOf(files[half:]...)
	mc, gz := microcode(), compress(t, CompressionGzip, a)
	pad := make([]byte, (4-len(gz)%4)%4+8)
	img := cat(mc, gz, pad, b)
	in := inspectBytes(t, img)
	checkDebian(t, in)
	want := []struct {
		off int64
		c   Compression
	}{
		{0, CompressionNone},
		{int64(len(mc)), CompressionGzip},
		{int64(len(mc) + len(gz) + len(pad)), CompressionNone},
	}
	if len(in.Segments) != len(want) {
		t.Fatalf("Segments = %+v, want %d", in.Segments, len(want))
	}
	for i, w := range want {
		if s := in.Segments[i]; s.Offset != w.off || s.Compression != w.c {
			t.Errorf("Segments[%d] = %+v, want %s at offset %d", i, s, w.c, w.off)
		}
	}
	if len(in.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", in.Warnings)
	}
}

func TestInspectNames(t *testing.T) {
	// GNU cpio run over "find ." writes "./usr/…"; some tools write "/usr".
	img := cpioOf(dir("."), file("./conf/initramfs.conf", "MODULES=dep\n"), file("/scripts/functions", ""),
		link("./sbin", "/usr/sbin"), exe("./usr/sbin/iscsistart"), link("usr/sbin/loop", "loop"),
		link("usr/bin/up", "../../etc"), file("etc/x", ""))
	in := inspectBytes(t, img)
	if in.Generator != GeneratorInitramfsTools {
		t.Errorf("Generator = %v, want initramfs-tools", in.Generator)
	}
	for p, want := range map[string]bool{
		"sbin/iscsistart": true, "/sbin/iscsistart": true, "conf": true, "usr/bin/up/x": true,
		"usr/sbin/loop": false, "usr/sbin/loop/x": false, "nothing": false,
	} {
		if got := in.Has(p); got != want {
			t.Errorf("Has(%q) = %v, want %v", p, got, want)
		}
	}
	if got := in.InitramfsConf["MODULES"]; got != "dep" {
		t.Errorf("InitramfsConf[MODULES] = %q, want dep", got)
	}
}

func TestInspectDracut(t *testing.T) {
	files := append(dracutFiles(), file("etc/cmdline.d/20-iscsi.conf", "rd.iscsi.initiator=iqn.x:old netroot=iscsi:192.0.2.1::::iqn.t:old\n# comment\n"))
	in := inspectBytes(t, cat(microcode(), compress(t, CompressionZstd, cpioOf(files...))))
	if d := in.Dialect(); d != (Dialect{GeneratorDracut, NetLegacy}) {
		t.Errorf("Dialect() = %v, want dracut (network-legacy)", d)
	}
	if in.DracutVersion != "059" {
		t.Errorf("DracutVersion = %q, want 059", in.DracutVersion)
	}
	if p, ok := in.Module("virtio_net", testKver); !ok || !strings.HasSuffix(p, ".ko.xz") {
		t.Errorf("Module(virtio_net) = %q, %v; want the .ko.xz", p, ok)
	}
	if got := len(in.BakedCmdline); got != 2 {
		t.Errorf("BakedCmdline = %+v, want 2 arguments", in.BakedCmdline)
	}
	for _, tt := range []struct {
		mods string
		want NetBackend
	}{
		{"network-manager\nnetwork\niscsi\n", NetNetworkManager},
		{"systemd-networkd\nnetwork\niscsi\n", NetNetworkd},
		{"connman\nnetwork\n", NetConnman},
		{"iscsi\n", NetUnknown},
	} {
		fs := dracutFiles()
		fs[3] = file("usr/lib/dracut/modules.txt", tt.mods)
		in := inspectBytes(t, cpioOf(fs...))
		if in.Network != tt.want {
			t.Errorf("modules.txt %q: Network = %v, want %v", tt.mods, in.Network, tt.want)
		}
	}
}

func TestInspectUnknownAndAmbiguous(t *testing.T) {
	in := inspectBytes(t, cpioOf(file("init", ""), exe("bin/busybox")))
	if in.Generator != GeneratorUnknown {
		t.Errorf("plain archive: Generator = %v, want unknown", in.Generator)
	}
	both := inspectBytes(t, cpioOf(append(debianFiles(), file("usr/lib/dracut/modules.txt", "iscsi\n"))...))
	if both.Generator != GeneratorUnknown || len(both.Warnings) == 0 {
		t.Errorf("both generators: Generator = %v, Warnings = %q; want unknown with a warning", both.Generator, both.Warnings)
	}
}

func TestInspectTolerated(t *testing.T) {
	good := cpioOf(debianFiles()...)
	for _, tt := range []struct {
		name string
		img  []byte
	}{
		{"junk after archive", cat(good, []byte("GARBAGE!"))},
		{"truncated compressed stream", cat(good, compress(t, CompressionGzip, good)[:100])},
		{"junk inside compressed stream", cat(good, compress(t, CompressionZstd, cat(microcode(), []byte("junk"))))},
		{"truncated archive", cat(good, good[:300])},
		{"lz4 frame format", cat(good, []byte{0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := inspectBytes(t, tt.img)
			if len(in.Warnings) == 0 {
				t.Errorf("Warnings = none, want one")
			}
			checkDebian(t, in)
		})
	}
}

func TestInspectErrors(t *testing.T) {
	good := cpioOf(debianFiles()...)
	hugeName := []byte("070701" + strings.Repeat("00000000", 11) + "00100000" + "00000000")
	badHex := []byte("070701" + strings.Repeat("0000000g", 13))
	// An xz stream whose block header claims a 4 GiB dictionary.
	xzBomb := bytes.Clone(compress(t, CompressionXZ, good))
	inflateXZDict(t, xzBomb, 12)
	for _, tt := range []struct {
		name   string
		img    []byte
		limits Limits
		want   error
	}{
		{"empty", nil, Limits{}, ErrNotInitramfs},
		{"zeros", make([]byte, 4096), Limits{}, ErrNotInitramfs},
		{"random", []byte("this is not an initrd at all"), Limits{}, ErrNotInitramfs},
		{"name size too large", hugeName, Limits{}, ErrNotInitramfs},
		{"bad hex", badHex, Limits{}, ErrNotInitramfs},
		{"lzo", cat(good, []byte{0x89, 'L', 'Z', 'O', 0, 0, 0}), Limits{}, ErrUnsupportedCompression},
		{"too many entries", good, Limits{MaxEntries: 5}, ErrLimit},
		{"too much unpacked", cat(good, compress(t, CompressionZstd, cat(good, make([]byte, 1<<20), good))), Limits{MaxUnpacked: 64 << 10}, ErrLimit},
		{"xz dictionary bomb", xzBomb, Limits{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, err := tt.limits.Inspect(bytes.NewReader(tt.img), int64(len(tt.img)))
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "dictionary") {
					t.Errorf("Inspect() = %v, %v; want a dictionary error", in, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Inspect() = %v, %v; want %v", in, err, tt.want)
			}
		})
	}
}

func TestCheckXZBlocks(t *testing.T) {
	// Several blocks (xz -T2 style) are each vetted; the stream may be
	// followed by zero padding.
	testenv.RequireBinaries(t, "xz")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	cmd := exec.Command("xz", "--check=crc32", "--threads=2", "--block-size=256KiB")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	padded := cat(out, make([]byte, 8))
	if err := checkXZ(bytes.NewReader(padded), 0, int64(len(padded))); err != nil {
		t.Errorf("checkXZ(multi-block) = %v, want nil", err)
	}
	// Find the second block header from the index and inflate its
	// dictionary: the check must catch a bomb in any block.
	bomb := bytes.Clone(out)
	inflateXZDict(t, bomb, secondXZBlock(t, bomb))
	if err := checkXZ(bytes.NewReader(bomb), 0, int64(len(bomb))); err == nil {
		t.Errorf("checkXZ(bomb in block 2) = nil, want error")
	}
}

// inflateXZDict sets the LZMA2 dictionary of the block header at pos to
// 4 GiB and fixes the header's CRC32, so only the size check can object.
func inflateXZDict(t *testing.T, b []byte, pos int) {
	t.Helper()
	size := (int(b[pos]) + 1) * 4
	h := b[pos : pos+size]
	i := bytes.Index(h, []byte{0x21, 0x01})
	if i < 0 {
		t.Fatalf("no LZMA2 filter in block header % x", h)
	}
	h[i+2] = 40
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
}

func secondXZBlock(t *testing.T, b []byte) int {
	t.Helper()
	back := (int(binary.LittleEndian.Uint32(b[len(b)-8:])) + 1) * 4
	idx := b[len(b)-12-back:]
	r := bytes.NewReader(idx[1:])
	if n, _ := binary.ReadUvarint(r); n < 2 {
		t.Fatalf("xz wrote %d blocks, want several", n)
	}
	unpadded, _ := binary.ReadUvarint(r)
	return 12 + (int(unpadded)+3)&^3
}

func FuzzInspect(f *testing.F) {
	// Small seeds: the fuzzer minimises every new input, which takes long
	// for kilobyte-sized ones.
	small := cpioOf(file("conf/initramfs.conf", "M=1"), link("sbin", "usr/sbin"), exe("usr/sbin/iscsistart"))
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionZstd, CompressionXZ, CompressionLZ4} {
		f.Add(compress(f, c, small))
	}
	f.Add(cat(cpioOf(file("k", "")), compress(f, CompressionGzip, small)))
	f.Add(cpioOf(link("a", "b"), link("b", "a"), file("a/c", "")))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Nothing may hang: a 4 MiB limit makes every input quick.
		tm := time.AfterFunc(30*time.Second, func() { panic("Inspect took over 30s") })
		defer tm.Stop()
		in, err := Limits{MaxUnpacked: 4 << 20, MaxEntries: 10_000}.Inspect(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Lookups over whatever was read must terminate.
		in.Has("sbin/iscsistart")
		in.Has("a/b/c/d")
		in.Check(Requirements{NICModule: "virtio_net", Mode: ModeIBFT})
	})
}

// TestInspectRealInitrd inspects an initrd named by $LUNBOOT_OS_INITRD (a
// Debian or Fedora /boot/initrd.img-*, say one built by the lab with
// debootstrap) and logs what Inspect and Check make of it. Optional:
// nothing in the build produces such a file, so it skips without one.
//
//	LUNBOOT_OS_INITRD=/path/initrd.img LUNBOOT_OS_NIC_MODULE=virtio_net \
//	  go test -run TestInspectRealInitrd -v ./pkg/handoff
func TestInspectRealInitrd(t *testing.T) {
	p := os.Getenv("LUNBOOT_OS_INITRD")
	if p == "" {
		t.Skip("set LUNBOOT_OS_INITRD=<initrd image> to inspect a real OS initrd")
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	in, err := Inspect(f, st.Size())
	if err != nil {
		t.Fatalf("Inspect(%s): %v", p, err)
	}
	for _, s := range in.Segments {
		t.Logf("segment at %d: %s, %d entries, %d bytes unpacked", s.Offset, s.Compression, s.Entries, s.Unpacked)
	}
	t.Logf("kernel versions %v, dracut modules %v, initramfs.conf %v, baked initiator %q",
		in.KernelVersions(), in.DracutModules, in.InitramfsConf, in.InitiatorName)
	c := in.Check(Requirements{NICModule: os.Getenv("LUNBOOT_OS_NIC_MODULE")})
	t.Logf("\n%s", c.Report())
	if in.Generator == GeneratorUnknown {
		t.Errorf("generator not recognised")
	}
}
