package handoff

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/ibft"
)

func labTableBytes(t *testing.T) []byte {
	t.Helper()
	tbl, err := labInfo().Table()
	if err != nil {
		t.Fatal(err)
	}
	b, err := tbl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEarlyCPIOLayout(t *testing.T) {
	table := labTableBytes(t)
	early := EarlyCPIO(table)
	if len(early)%512 != 0 {
		t.Errorf("len(EarlyCPIO) = %d, want a multiple of 512", len(early))
	}
	p := newPosReader(bytes.NewReader(early), 0)
	var names []string
	for {
		h, err := readHeader(p)
		if err != nil {
			t.Fatalf("readHeader at %d: %v", p.pos(), err)
		}
		names = append(names, h.Name)
		if h.Name == newcTrailer {
			break
		}
		if h.Name == IBFTPath {
			if h.Mode&modeTypeMask != modeRegular {
				t.Errorf("%s mode = %o, want a regular file", h.Name, h.Mode)
			}
			if p.pos()%4 != 0 {
				t.Errorf("table data at offset %d, want 4-byte aligned", p.pos())
			}
			data := make([]byte, h.FileSize)
			if _, err := io.ReadFull(p, data); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, table) {
				t.Errorf("archived table differs from the input")
			}
		} else if h.FileSize != 0 || h.Mode&modeTypeMask != modeDir {
			t.Errorf("%s: size %d mode %o, want an empty directory", h.Name, h.FileSize, h.Mode)
		}
		if err := p.align(); err != nil {
			t.Fatal(err)
		}
	}
	want := "kernel kernel/firmware kernel/firmware/acpi kernel/firmware/acpi/ibft.aml TRAILER!!!"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries = %s, want %s", got, want)
	}
	if rest := early[p.pos():]; !bytes.Equal(rest, make([]byte, len(rest))) {
		t.Errorf("padding after the trailer is not zeros")
	}
}

// findCPIOData follows lib/earlycpio.c find_cpio_data: walk uncompressed
// newc headers from the start of the initrd, skipping 4-byte zero words,
// stopping at the first byte that is not a header, and return the first
// regular file whose name starts with prefix.
func findCPIOData(img []byte, prefix string) (name string, data []byte, ok bool) {
	const hdrLen = 110
	p := 0
	for len(img)-p > hdrLen {
		if img[p] == 0 {
			p += 4
			continue
		}
		var f [13]uint64
		magic, err := strconv.ParseUint(string(img[p:p+6]), 16, 32)
		if err != nil || magic-0x070701 > 1 {
			return "", nil, false
		}
		for i := range f {
			v, err := strconv.ParseUint(string(img[p+6+8*i:p+14+8*i]), 16, 32)
			if err != nil {
				return "", nil, false
			}
			f[i] = v
		}
		mode, size, nameSize := f[1], f[6], f[11]
		np := p + hdrLen
		dp := (np + int(nameSize) + 3) &^ 3
		next := (dp + int(size) + 3) &^ 3
		if next > len(img) {
			return "", nil, false
		}
		n := string(bytes.TrimRight(img[np:np+int(nameSize)], "\x00"))
		if mode&0o170000 == 0o100000 && strings.HasPrefix(n, prefix) {
			return n, img[dp : dp+int(size)], true
		}
		p = next
	}
	return "", nil, false
}

func TestPrependInitrdKernelView(t *testing.T) {
	table := labTableBytes(t)
	osInitrd := cat(microcode(), compress(t, CompressionZstd, cpioOf(debianFiles()...)))
	c, err := PrependInitrd(EarlyCPIO(table), bytes.NewReader(osInitrd), int64(len(osInitrd)))
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, c.Size())
	if _, err := c.ReadAt(img, 0); err != nil {
		t.Fatal(err)
	}

	// drivers/acpi/tables.c: every table under kernel/firmware/acpi/.
	name, data, ok := findCPIOData(img, "kernel/firmware/acpi/")
	if !ok || name != IBFTPath || !bytes.Equal(data, table) {
		t.Fatalf("find_cpio_data(kernel/firmware/acpi/) = %q, %d bytes, %v; want the table", name, len(data), ok)
	}
	// acpi_table_upgrade: allow-listed signature, file size == header
	// length, zero checksum; iscsi_ibft then accepts it.
	var tbl ibft.Table
	if err := tbl.UnmarshalBinary(data); err != nil || string(data[:4]) != "IBFT" || int(data[4])|int(data[5])<<8 != len(data) {
		t.Errorf("table in the archive: %v (signature %q, %d bytes)", err, data[:4], len(data))
	}
	// The x86 microcode loader walks the same way and must still find the
	// OS's microcode behind our archive.
	if name, _, ok := findCPIOData(img, "kernel/x86/microcode/GenuineIntel.bin"); !ok {
		t.Errorf("microcode not found behind the early archive (%q)", name)
	}

	// The OS initrd still inspects the same with the archive in front.
	in := inspectBytes(t, img)
	checkDebian(t, in)
	if !in.Has(IBFTPath) || len(in.Segments) != 3 {
		t.Errorf("Inspect(prepended) segments = %+v, want early + microcode + zstd", in.Segments)
	}
}

func TestEarlyCPIOWithGNUCpio(t *testing.T) {
	testenv.RequireBinaries(t, "cpio")
	table := labTableBytes(t)
	dir := t.TempDir()
	cmd := exec.Command("cpio", "--quiet", "-i", "-d", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(EarlyCPIO(table))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, IBFTPath))
	if err != nil || !bytes.Equal(got, table) {
		t.Errorf("cpio -i extracted %d bytes, %v; want the %d-byte table", len(got), err, len(table))
	}
}

func TestConcatReadAt(t *testing.T) {
	head := []byte("HEAD")
	tail := []byte("0123456789")
	c, err := PrependInitrd(head, bytes.NewReader(tail), int64(len(tail)))
	if err != nil {
		t.Fatal(err)
	}
	all := cat(head, tail)
	for _, tt := range []struct {
		off  int64
		n    int
		want string
		err  error
	}{
		{0, 4, "HEAD", nil},
		{2, 4, "AD01", nil},
		{4, 10, "0123456789", nil},
		{10, 4, "6789", nil},
		{12, 4, "89", io.EOF},
		{14, 1, "", io.EOF},
		{20, 1, "", io.EOF},
		{0, 14, string(all), nil},
		{3, 0, "", nil},
	} {
		buf := make([]byte, tt.n)
		n, err := c.ReadAt(buf, tt.off)
		if string(buf[:n]) != tt.want || !errors.Is(err, tt.err) && err != tt.err {
			t.Errorf("ReadAt(%d bytes at %d) = %q, %v; want %q, %v", tt.n, tt.off, buf[:n], err, tt.want, tt.err)
		}
	}
	var w bytes.Buffer
	if n, err := c.WriteTo(&w); err != nil || n != int64(len(all)) || !bytes.Equal(w.Bytes(), all) {
		t.Errorf("WriteTo() = %d, %v, %q; want %q", n, err, w.Bytes(), all)
	}
	if _, err := PrependInitrd([]byte("odd"), bytes.NewReader(tail), 10); err == nil {
		t.Errorf("PrependInitrd(3-byte head) = nil error, want misalignment error")
	}
	if _, err := c.ReadAt(make([]byte, 1), -1); err == nil {
		t.Errorf("ReadAt(-1) = nil error")
	}
}
