package handoff

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// tfile is one entry of a synthetic archive.
type tfile struct {
	name string
	mode uint32 // type bits included; 0 means regular 0644
	data string // contents, or the target for a symlink
}

func dir(name string) tfile          { return tfile{name, modeDir | 0o755, ""} }
func link(name, target string) tfile { return tfile{name, modeSymlink | 0o777, target} }
func file(name, data string) tfile   { return tfile{name, modeRegular | 0o644, data} }
func exe(name string) tfile          { return tfile{name, modeRegular | 0o755, "\x7fELF fake"} }
func cpioOf(files ...tfile) []byte {
	var b bytes.Buffer
	w := newcWriter{W: &b}
	for _, f := range files {
		w.add(f.name, f.mode, []byte(f.data))
	}
	w.finish() // a bytes.Buffer does not fail
	return b.Bytes()
}

const testKver = "6.1.0-56-amd64"

// debianFiles is the shape of a Debian 12 initramfs-tools image with
// open-iscsi installed (merged /usr, MODULES=most).
func debianFiles() []tfile {
	m := "usr/lib/modules/" + testKver + "/"
	return []tfile{
		dir("."), link("bin", "usr/bin"), link("sbin", "usr/sbin"), link("lib", "usr/lib"),
		dir("usr"), dir("usr/bin"), dir("usr/sbin"), dir("usr/lib"), dir("conf"), dir("scripts"),
		file("init", "#!/bin/sh\n"),
		file("conf/initramfs.conf", "MODULES=most\nBUSYBOX=auto\nCOMPRESS=zstd\nDEVICE=\n"),
		file("scripts/functions", "configure_networking() { :; }\n"),
		dir("scripts/local-top"),
		file("scripts/local-top/iscsi", "#!/bin/sh\n"),
		exe("usr/sbin/iscsistart"),
		exe("usr/bin/ipconfig"),
		file("etc/initiatorname.iscsi", "## generated\nInitiatorName=iqn.1993-08.org.debian:01:abcdef\n"),
		file(m+"kernel/drivers/scsi/iscsi_tcp.ko", "ko"),
		file(m+"kernel/drivers/scsi/libiscsi.ko", "ko"),
		file(m+"kernel/drivers/firmware/iscsi_ibft.ko", "ko"),
		file(m+"kernel/drivers/net/virtio_net.ko", "ko"),
		file(m+"modules.builtin", "kernel/drivers/block/virtio_blk.ko\nkernel/lib/crc32c.ko\n"),
	}
}

// dracutFiles is the shape of a dracut image with the iscsi and
// network-legacy modules (Debian 12's dracut 059 layout).
func dracutFiles() []tfile {
	m := "usr/lib/modules/" + testKver + "/"
	return []tfile{
		link("bin", "usr/bin"), link("sbin", "usr/sbin"), link("lib", "usr/lib"),
		file("usr/lib/dracut/modules.txt", "systemd\nbase\nnet-lib\nnetwork-legacy\nnetwork\niscsi\nrootfs-block\n"),
		file("usr/lib/dracut/dracut-059", ""),
		file("usr/lib/dracut/hooks/cmdline/90parse-iscsiroot.sh", "#!/bin/sh\n"),
		dir("etc/cmdline.d"),
		exe("usr/sbin/iscsiroot"), exe("usr/sbin/iscsiadm"), exe("usr/sbin/iscsid"),
		exe("usr/sbin/ifup"), exe("usr/sbin/dhclient"),
		file(m+"kernel/drivers/scsi/iscsi_tcp.ko.xz", "ko"),
		file(m+"kernel/drivers/firmware/iscsi_ibft.ko.xz", "ko"),
		file(m+"kernel/drivers/net/virtio_net.ko.xz", "ko"),
		file(m+"kernel/net/8021q/8021q.ko.xz", "ko"),
		file(m+"modules.builtin", "kernel/lib/crc32c.ko\n"),
	}
}

// microcode is an early uncompressed archive as the intel-microcode hook
// writes it.
func microcode() []byte {
	return cpioOf(dir("kernel"), dir("kernel/x86"), dir("kernel/x86/microcode"),
		file("kernel/x86/microcode/GenuineIntel.bin", "ucode"))
}

// compress compresses data in the given format, the way the generators'
// command lines do where it matters (lz4 legacy frame, xz CRC32 check).
func compress(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case CompressionNone:
		return data
	case CompressionGzip:
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	case CompressionXZ:
		w, err := xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompressionZstd:
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompressionLZ4:
		w := lz4.NewWriter(&b)
		if err := w.Apply(lz4.LegacyOption(true)); err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompressionLZMA:
		w, err := lzma.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case CompressionBzip2:
		// No bzip2 writer in the standard library: testdata holds the
		// Debian-shaped archive compressed with bzip2(1).
		raw, err := os.ReadFile(filepath.Join("testdata", "debian.cpio.bz2"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	default:
		t.Fatalf("compress: %s", c)
	}
	return b.Bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func inspectBytes(t testing.TB, b []byte) *Initrd {
	t.Helper()
	in, err := Inspect(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Inspect() error: %v", err)
	}
	return in
}
