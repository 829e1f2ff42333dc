package main

import (
	"bytes"
	"context"
	"debug/pe"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/internal/fsutil"
)

const (
	// DefaultStub is where Debian's systemd-boot-efi puts systemd-stub.
	DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	// DefaultCmdline names both consoles, the serial one last: it becomes
	// /dev/console, where u-root's init and lunboot write (as in
	// docs/dhcp/lunboot.ipxe).
	DefaultCmdline = "console=tty0 console=ttyS0,115200"
	// OutName is the executable mkefi writes in the output directory.
	OutName = "lunboot.efi"
	// versionFile is initramfs/mkimage's record of the image's version.
	versionFile = "lunboot.version"
	// pageSize aligns the added sections: the kernel's EFI stub and
	// firmware loaders expect page-aligned images, and it is a multiple of
	// any SectionAlignment the stub was linked with.
	pageSize = 0x1000
)

type config struct {
	out, kernel, initrd, cmdline, stub string
}

// section is a PE section to add: its name and the file holding it.
type section struct {
	name, file string
	size       int64
	vma        uint64
}

func build(ctx context.Context, c config, stdout io.Writer) error {
	start := time.Now()
	if c.kernel == "" {
		c.kernel = filepath.Join(c.out, "vmlinuz")
	}
	if c.initrd == unset {
		c.initrd = filepath.Join(c.out, "lunboot.cpio.xz")
	}
	if _, err := os.Stat(c.stub); err != nil {
		return fmt.Errorf("EFI stub (Debian package systemd-boot-efi, make deps): %w", err)
	}
	objcopy, err := exec.LookPath("objcopy")
	if err != nil {
		return fmt.Errorf("objcopy (Debian package binutils, make deps): %w", err)
	}
	ver := "unknown"
	if b, err := os.ReadFile(filepath.Join(c.out, versionFile)); err == nil {
		ver = strings.TrimSpace(string(b))
	}
	tmp, err := os.MkdirTemp("", "lunboot-mkefi-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	osrel := filepath.Join(tmp, "os-release")
	if err := os.WriteFile(osrel, osRelease(ver), 0o644); err != nil {
		return err
	}
	cmdline := filepath.Join(tmp, "cmdline")
	if err := os.WriteFile(cmdline, []byte(c.cmdline), 0o644); err != nil {
		return err
	}
	secs := []section{{name: ".osrel", file: osrel}, {name: ".cmdline", file: cmdline}, {name: ".linux", file: c.kernel}}
	if c.initrd != "" {
		secs = append(secs, section{name: ".initrd", file: c.initrd})
	}
	for i := range secs {
		st, err := os.Stat(secs[i].file)
		if err != nil {
			return fmt.Errorf("%s section: %w", secs[i].name, err)
		}
		secs[i].size = st.Size()
	}
	if err := checkKernel(c.kernel); err != nil {
		return err
	}
	base, end, err := stubEnd(c.stub)
	if err != nil {
		return err
	}
	layout(secs, base, end)

	args := []string{}
	for _, s := range secs {
		args = append(args, "--add-section", s.name+"="+s.file, "--change-section-vma", fmt.Sprintf("%s=%#x", s.name, s.vma))
	}
	out := filepath.Join(c.out, OutName)
	tmpOut := filepath.Join(tmp, OutName)
	args = append(args, c.stub, tmpOut)
	cmd := exec.CommandContext(ctx, objcopy, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("objcopy %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(log.String()))
	}
	if err := verify(tmpOut, secs); err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := fsutil.CopyFile(tmpOut, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "efi: %s %s (kernel %s, initrd %s, cmdline %q, lunboot %s) in %s\n",
		out, bytesize.MiB(fsutil.Size(out)), c.kernel, orNone(c.initrd), c.cmdline, ver, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// osRelease is the .osrel section: os-release(5) lines that boot menus
// (systemd-boot, the UKI specification's "pretty name") show for the entry.
func osRelease(ver string) []byte {
	return []byte(fmt.Sprintf("NAME=lunboot\nID=lunboot\nPRETTY_NAME=%q\nVERSION=%q\nVERSION_ID=%q\nHOME_URL=\"https://github.com/lunboot/lunboot\"\n",
		"lunboot "+ver, ver, ver))
}

// stubEnd returns the stub's image base and the first address (relative to
// it) after its sections.
func stubEnd(path string) (base, end uint64, err error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("EFI stub %s: %w", path, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return 0, 0, fmt.Errorf("EFI stub %s: not a PE32+ (x86-64) image", path)
	}
	for _, s := range f.Sections {
		size := s.VirtualSize
		if s.Size > size {
			size = s.Size
		}
		if e := uint64(s.VirtualAddress) + uint64(size); e > end {
			end = e
		}
	}
	if end == 0 {
		return 0, 0, fmt.Errorf("EFI stub %s has no sections", path)
	}
	return oh.ImageBase, end, nil
}

// layout gives each section an address: one after the other from end,
// page-aligned, as absolute VMAs (objcopy's --change-section-vma takes the
// image base included).
func layout(secs []section, base, end uint64) {
	at := alignUp(end, pageSize)
	for i := range secs {
		secs[i].vma = base + at
		at = alignUp(at+uint64(secs[i].size), pageSize)
	}
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// checkKernel refuses what is not an x86 bzImage with an EFI stub: the
// stub would start it and fail with no word on the console.
func checkKernel(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	var hdr [0x206]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("kernel %s: %w", path, err)
	}
	// Documentation/x86/boot.rst: "MZ" for the PE header of an EFI-stub
	// kernel, "HdrS" at 0x202 for the boot protocol.
	if string(hdr[:2]) != "MZ" || string(hdr[0x202:0x206]) != "HdrS" {
		return fmt.Errorf("kernel %s is not an x86 bzImage with an EFI stub (no MZ or HdrS header)", path)
	}
	return nil
}

// verify reads the result back: every section there, whole, and none
// overlapping another (objcopy accepts overlapping VMAs without a word).
func verify(path string, want []section) error {
	f, err := pe.Open(path)
	if err != nil {
		return fmt.Errorf("reading back %s: %w", path, err)
	}
	defer f.Close()
	type span struct {
		name       string
		start, end uint64
	}
	var spans []span
	for _, s := range f.Sections {
		// The raw size is padded to the file alignment and may run into
		// the next section (the stub's .sbat does): the loader maps
		// VirtualSize bytes.
		size := s.VirtualSize
		if size == 0 {
			size = s.Size
		}
		spans = append(spans, span{s.Name, uint64(s.VirtualAddress), uint64(s.VirtualAddress) + uint64(size)})
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.start < b.end && b.start < a.end {
				return fmt.Errorf("%s: sections %s and %s overlap", path, a.name, b.name)
			}
		}
	}
	for _, w := range want {
		s := f.Section(w.name)
		if s == nil {
			return fmt.Errorf("%s: section %s missing after objcopy", path, w.name)
		}
		if int64(s.VirtualSize) != w.size {
			return fmt.Errorf("%s: section %s holds %d bytes, want %d", path, w.name, s.VirtualSize, w.size)
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
