package osfind

import (
	"bufio"
	"bytes"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Unified Kernel Images are the Boot Loader Specification's Type #2 entries
// (UAPI.1, "Type #2 EFI Unified Kernel Images"): one PE/COFF EFI program
// per entry, in /EFI/Linux/ of the ESP or of $BOOT, named *.efi, holding
// the kernel, initrd and command line as PE sections (the UKI specification,
// UAPI.5: .linux, .initrd, .cmdline, .osrel, .uname). A boot loader reads
// the sections instead of running the stub; osfind does the same, so that
// lunboot kexecs the kernel with the initrd and command line the image
// carries. Sections this reader does not need (.dtb, .splash, .pcrsig…) are
// ignored; an image with several profiles (.profile) is read for its base
// profile only.

// UKI is the format of a Type #2 entry.
const UKI Format = "UKI"

// ukiDir is where Type #2 entries live, relative to the partition.
const ukiDir = "EFI/Linux"

// scanUKIs reads every *.efi under dir/EFI/Linux as a unified kernel
// image, newest version first (the specification's sort order is by
// version, then file name). Files that are not UKIs are listed in skipped
// with the reason. The returned entries keep their files open: closeEntries
// closes them.
func scanUKIs(dir, device string) (entries []*Entry, skipped []string) {
	ents, err := os.ReadDir(filepath.Join(dir, ukiDir))
	if err != nil {
		return nil, nil
	}
	type found struct {
		e       *Entry
		version string
		name    string
	}
	var all []found
	for _, de := range ents {
		if de.IsDir() || !strings.EqualFold(filepath.Ext(de.Name()), ".efi") {
			continue
		}
		path := filepath.Join(dir, ukiDir, de.Name())
		e, version, err := readUKI(path)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s entry %q (%v)", UKI, ukiDir+"/"+de.Name(), err))
			continue
		}
		e.Device, e.Root = device, dir
		all = append(all, found{e, version, de.Name()})
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].version != all[j].version {
			return all[i].version > all[j].version
		}
		return all[i].name > all[j].name
	})
	for _, f := range all {
		entries = append(entries, f.e)
	}
	return entries, skipped
}

// errNotUKI says a PE file has no .linux section: an EFI program, not a
// unified kernel image.
var errNotUKI = errors.New("no .linux section: not a unified kernel image")

// readUKI opens one image and returns its entry (Kernel and Initrd read
// the .linux and .initrd sections) and its version for sorting.
func readUKI(path string) (*Entry, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	e, version, err := parseUKI(f)
	if err != nil {
		f.Close()
		return nil, "", err
	}
	e.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if e.Label == "" {
		e.Label = e.ID
	}
	e.closer = f
	return e, version, nil
}

// parseUKI reads the sections of the PE image in r.
func parseUKI(r io.ReaderAt) (*Entry, string, error) {
	pf, err := pe.NewFile(r)
	if err != nil {
		return nil, "", fmt.Errorf("not a PE/COFF file: %w", err)
	}
	sections := map[string]*io.SectionReader{}
	for _, s := range pf.Sections {
		if _, dup := sections[s.Name]; dup {
			// A multi-profile image repeats sections after a
			// .profile; the first set is the base profile.
			continue
		}
		// SizeOfRawData is padded to the file alignment; VirtualSize
		// is the payload's own size (PE format, "Section Table").
		size := int64(s.Size)
		if s.VirtualSize != 0 && int64(s.VirtualSize) < size {
			size = int64(s.VirtualSize)
		}
		sections[s.Name] = io.NewSectionReader(r, int64(s.Offset), size)
	}
	linux, ok := sections[".linux"]
	if !ok {
		return nil, "", errNotUKI
	}
	e := &Entry{Format: UKI, Kernel: linux}
	if ird, ok := sections[".initrd"]; ok {
		e.Initrd = ird
	}
	text := func(name string) (string, error) {
		s, ok := sections[name]
		if !ok {
			return "", nil
		}
		if s.Size() > 1<<20 {
			return "", fmt.Errorf("section %s is %d bytes", name, s.Size())
		}
		b, err := io.ReadAll(s)
		if err != nil {
			return "", fmt.Errorf("read section %s: %w", name, err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	cmdline, err := text(".cmdline")
	if err != nil {
		return nil, "", err
	}
	e.Cmdline = strings.TrimSpace(cmdline)
	osrel, err := text(".osrel")
	if err != nil {
		return nil, "", err
	}
	uname, err := text(".uname")
	if err != nil {
		return nil, "", err
	}
	rel := parseOSRelease(osrel)
	// The title a menu shows: PRETTY_NAME, else NAME and VERSION_ID
	// (UAPI.1, Type #2: "the title is taken from PRETTY_NAME").
	e.Label = rel["PRETTY_NAME"]
	if e.Label == "" {
		e.Label = strings.TrimSpace(rel["NAME"] + " " + rel["VERSION_ID"])
	}
	version := strings.TrimSpace(uname)
	if version == "" {
		version = rel["VERSION_ID"]
	}
	if version != "" && e.Label != "" {
		e.Label += " (" + version + ")"
	}
	return e, version, nil
}

// parseOSRelease reads os-release(5) assignments, unquoting values.
func parseOSRelease(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		m[k] = strings.Trim(v, `"'`)
	}
	return m
}
