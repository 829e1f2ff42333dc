package handoff

import (
	"bytes"
	"fmt"
	"io"
)

// IBFTPath is where the early cpio puts the table: the kernel installs
// every valid table it finds under kernel/firmware/acpi/ in the
// uncompressed archives at the head of the initrd (drivers/acpi/tables.c
// acpi_table_upgrade, using lib/earlycpio.c find_cpio_data).
const IBFTPath = "kernel/firmware/acpi/ibft.aml"

// EarlyCPIO wraps an ACPI table (an iBFT with signature "IBFT") in an
// uncompressed newc archive holding kernel/firmware/acpi/ibft.aml, padded
// to 512 bytes, to be put in front of the OS initrd.
//
// What the kernel requires, checked in its sources: find_cpio_data only
// parses uncompressed newc headers (070701/070702) at 4-byte aligned
// offsets, skipping zero padding, and stops at the first compressed byte,
// so the archive must come before the OS initrd's compressed part (in
// front of everything is simplest and keeps the OS's own early microcode
// archive working, since the microcode loader walks all leading archives
// the same way). It matches regular files whose name starts with
// "kernel/firmware/acpi/"; acpi_table_upgrade then requires a signature on
// its allow-list, file size equal to the header length and a zero
// checksum. The directory entries are not needed for that lookup but are
// included so that unpacking the archive into the rootfs creates the file.
// The kernel ignores the table when locked down (Secure Boot), and needs
// CONFIG_ACPI_TABLE_UPGRADE=y (Debian, Fedora and Ubuntu kernels have it).
func EarlyCPIO(table []byte) []byte {
	var b bytes.Buffer
	w := newcWriter{W: &b}
	w.add("kernel", modeDir|0o755, nil)
	w.add("kernel/firmware", modeDir|0o755, nil)
	w.add("kernel/firmware/acpi", modeDir|0o755, nil)
	w.add(IBFTPath, modeRegular|0o644, table)
	w.finish() // a bytes.Buffer does not fail
	return b.Bytes()
}

// Concat is an io.ReaderAt over an early archive followed by the OS initrd,
// without copying the initrd. u-root's boot.LinuxImage takes it as Initrd.
type Concat struct {
	head []byte
	tail io.ReaderAt
	size int64 // of tail
}

// PrependInitrd returns early (an EarlyCPIO result) followed by the OS
// initrd of the given size. early must be a multiple of 4 bytes long so the
// OS initrd's own archives stay aligned; EarlyCPIO pads to 512.
func PrependInitrd(early []byte, initrd io.ReaderAt, size int64) (*Concat, error) {
	if len(early)%4 != 0 {
		return nil, fmt.Errorf("handoff: early archive is %d bytes, not a multiple of 4", len(early))
	}
	if size < 0 {
		return nil, fmt.Errorf("handoff: initrd size %d", size)
	}
	return &Concat{head: early, tail: initrd, size: size}, nil
}

// Size is the total length.
func (c *Concat) Size() int64 { return int64(len(c.head)) + c.size }

// ReadAt implements io.ReaderAt.
func (c *Concat) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("handoff: negative offset %d", off)
	}
	n := 0
	if off < int64(len(c.head)) {
		n = copy(p, c.head[off:])
		off += int64(n)
	}
	if n == len(p) {
		return n, nil
	}
	toff := off - int64(len(c.head))
	if toff >= c.size {
		return n, io.EOF
	}
	want := p[n:]
	eof := false
	if rest := c.size - toff; int64(len(want)) > rest {
		want, eof = want[:rest], true
	}
	m, err := c.tail.ReadAt(want, toff)
	n += m
	if err == io.EOF && m == len(want) {
		err = nil
	}
	if err == nil && eof {
		err = io.EOF
	}
	return n, err
}

// WriteTo writes the whole concatenation to w (to a file for kexec, say).
func (c *Concat) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(c.head)
	if err != nil {
		return int64(n), err
	}
	m, err := io.Copy(w, io.NewSectionReader(c.tail, 0, c.size))
	return int64(n) + m, err
}

// String names the concatenation for u-root's boot messages.
func (c *Concat) String() string {
	return fmt.Sprintf("iBFT early cpio (%d bytes) + initrd (%d bytes)", len(c.head), c.size)
}
