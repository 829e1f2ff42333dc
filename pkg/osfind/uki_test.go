package osfind

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// buildPE builds a minimal PE32+ image with the named sections (in order), each
// padded to 512 bytes in the file as a linker would, VirtualSize the
// payload's size. debug/pe reads it as the stub's sections would be read.
func buildPE(t *testing.T, sections [][2]string) []byte {
	t.Helper()
	const lfanew = 0x40
	var b bytes.Buffer
	dos := make([]byte, lfanew)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], lfanew)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	// COFF header: machine x86-64, section count, no optional header.
	coff := make([]byte, 20)
	binary.LittleEndian.PutUint16(coff[0:], 0x8664)
	binary.LittleEndian.PutUint16(coff[2:], uint16(len(sections)))
	b.Write(coff)
	hdrEnd := b.Len() + 40*len(sections)
	off := (hdrEnd + 511) &^ 511
	var data bytes.Buffer
	for i, s := range sections {
		h := make([]byte, 40)
		copy(h, s[0])
		raw := (len(s[1]) + 511) &^ 511
		binary.LittleEndian.PutUint32(h[8:], uint32(len(s[1])))       // VirtualSize
		binary.LittleEndian.PutUint32(h[12:], uint32(0x1000*(i+1)))   // VirtualAddress
		binary.LittleEndian.PutUint32(h[16:], uint32(raw))            // SizeOfRawData
		binary.LittleEndian.PutUint32(h[20:], uint32(off+data.Len())) // PointerToRawData
		b.Write(h)
		data.WriteString(s[1])
		data.Write(make([]byte, raw-len(s[1])))
	}
	b.Write(make([]byte, off-b.Len()))
	b.Write(data.Bytes())
	return b.Bytes()
}

func TestScanUKIs(t *testing.T) {
	osrel := "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
	dir := writeTree(t, map[string]string{
		"EFI/Linux/debian-6.1.0-27.efi": string(buildPE(t, [][2]string{
			{".text", "stub code"}, {".osrel", osrel}, {".uname", "6.1.0-27-amd64"},
			{".cmdline", "root=UUID=1 ro console=ttyS0\x00"}, {".initrd", "OLD INITRD"}, {".linux", "OLD KERNEL"}})),
		"EFI/Linux/debian-6.1.0-28.EFI": string(buildPE(t, [][2]string{
			{".osrel", osrel}, {".uname", "6.1.0-28-amd64"},
			{".cmdline", "root=UUID=1 ro console=ttyS0\n"}, {".initrd", "NEW INITRD"}, {".linux", "NEW KERNEL"}})),
		"EFI/Linux/fwupd.efi":  string(buildPE(t, [][2]string{{".text", "an EFI tool"}})),
		"EFI/Linux/notes.txt":  "not an image",
		"EFI/Linux/broken.efi": "MZ but nothing else",
	})
	entries, p := ScanDir(context.Background(), nil, dir, "/dev/nbd0p1", nil, nil)
	defer closeEntries(entries)
	if got := labels(entries); strings.Join(got, ",") != "UKI:Debian GNU/Linux 12 (bookworm) (6.1.0-28-amd64),UKI:Debian GNU/Linux 12 (bookworm) (6.1.0-27-amd64)" {
		t.Fatalf("ScanDir entries = %q, want the two UKIs, newest first", got)
	}
	e := entries[0]
	if e.ID != "debian-6.1.0-28" || e.Cmdline != "root=UUID=1 ro console=ttyS0" || e.Device != "/dev/nbd0p1" {
		t.Errorf("entry = %s, cmdline %q; want id debian-6.1.0-28 and the .cmdline section trimmed", e, e.Cmdline)
	}
	for what, r := range map[string]io.ReaderAt{"NEW KERNEL": e.Kernel, "NEW INITRD": e.Initrd} {
		got, err := io.ReadAll(io.NewSectionReader(r, 0, 1<<20))
		if err != nil || string(got) != what {
			t.Errorf("section reads %q, %v; want %q (VirtualSize, not the padded raw size)", got, err, what)
		}
	}
	if p.Found[UKI] != 2 || len(p.Skipped) != 2 || !strings.Contains(strings.Join(p.Skipped, ";"), "fwupd.efi\" (no .linux section") {
		t.Errorf("partition = %+v, want 2 UKIs and fwupd.efi and broken.efi skipped with the reason", p)
	}
	if !strings.Contains((&Found{Partitions: []Partition{p}}).Summary(), "2 UKI") {
		t.Errorf("Summary() does not count the UKIs")
	}
	f := &Found{Entries: entries}
	if c, err := f.Choose("debian-6.1.0-27"); err != nil || c != entries[1] {
		t.Errorf("Choose(file name without .efi) = %v, %v; want the older image", c, err)
	}
}

func FuzzParseUKI(f *testing.F) {
	t := &testing.T{}
	f.Add(buildPE(t, [][2]string{{".linux", "k"}, {".cmdline", "x=1"}}))
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, _, err := parseUKI(bytes.NewReader(b))
		if err == nil && e.Kernel == nil {
			t.Errorf("parseUKI without error but no kernel")
		}
	})
}
