// Package osfind finds the operating systems a disk can boot: it mounts the
// disk's partitions read-only and reads their boot-loader configuration with
// u-root's parsers — Boot Loader Specification entries, GRUB grub.cfg and
// syslinux/extlinux configs — the way a boot loader would, then picks the
// default entry or the one the user asked for.
package osfind

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/u-root/u-root/pkg/boot"
)

// Format names the boot-loader configuration an entry came from.
type Format string

// The formats osfind reads, in the order it reads them on each partition.
const (
	BLS      Format = "BLS"
	GRUB     Format = "GRUB"
	Syslinux Format = "syslinux"
)

// Entry is one bootable Linux kernel found on the disk.
type Entry struct {
	// Label is the title a boot menu would show.
	Label string
	// ID is the boot loader's id for the entry, "" if it has none: a BLS
	// entry's file name without ".conf", a GRUB menuentry's --id.
	ID string
	// Format is where the entry was read from.
	Format Format
	// Device is the partition holding the configuration, e.g. /dev/nbd0p1.
	Device string
	// Root is where that partition is mounted while the Found is open (the
	// hand-off reads the kernel's config-<version> there).
	Root string
	// Cmdline is the kernel command line the entry gives.
	Cmdline string
	// Kernel and Initrd read the entry's files; Initrd is nil when the
	// entry names none. They stay readable until the Found that produced
	// them is closed.
	Kernel io.ReaderAt
	Initrd io.ReaderAt
	// Image is u-root's view of the entry, for loading with kexec.
	Image *boot.LinuxImage
	// Via names the GRUB stub on the ESP that led to the entry
	// ("EFI/debian/grub.cfg on /dev/nbd0p1"), "" when the entry's own
	// partition holds its configuration.
	Via string
}

func (e *Entry) String() string {
	via := ""
	if e.Via != "" {
		via = ", via " + e.Via
	}
	if e.ID != "" {
		return fmt.Sprintf("%q (%s id %s on %s%s)", e.Label, e.Format, e.ID, e.Device, via)
	}
	return fmt.Sprintf("%q (%s on %s%s)", e.Label, e.Format, e.Device, via)
}

// LogValue implements slog.LogValuer.
func (e *Entry) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("label", e.Label),
		slog.String("format", string(e.Format)),
		slog.String("device", e.Device),
		slog.String("cmdline", e.Cmdline),
	)
}

// ErrNoEntries is returned when no partition holds a usable boot entry.
var ErrNoEntries = errors.New("no boot entries found")

// Partition records what osfind saw on one partition, for the boot log and
// for the error when nothing bootable was found.
type Partition struct {
	Device string
	// Mounted is empty when the partition could not be mounted; Err says why.
	Mounted string
	Err     error
	// Found counts the entries per format.
	Found map[Format]int
	// Skipped lists entries that were found but cannot be booted (a
	// multiboot entry, a missing kernel file) with the reason.
	Skipped []string
	// Followed lists the partitions a GRUB stub on this one (an ESP)
	// led to.
	Followed []string
}

// Found is the result of a scan: entries in boot order (each format's
// default first) and what was seen on each partition.
type Found struct {
	Entries    []*Entry
	Partitions []Partition
	closers    []func() error
}

// Close releases the entries' files and unmounts what the scan mounted.
func (f *Found) Close() error {
	var errs []error
	for i := len(f.closers) - 1; i >= 0; i-- {
		if err := f.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	f.closers = nil
	return errors.Join(errs...)
}

// Summary describes the scan in one line per partition, for messages.
func (f *Found) Summary() string {
	var b strings.Builder
	for _, p := range f.Partitions {
		fmt.Fprintf(&b, "%s: ", p.Device)
		switch {
		case p.Err != nil:
			fmt.Fprintf(&b, "not mounted (%v)", p.Err)
		case len(p.Found) == 0:
			b.WriteString("no BLS, GRUB or syslinux configuration")
		default:
			var parts []string
			for _, fm := range []Format{BLS, GRUB, Syslinux} {
				if n := p.Found[fm]; n > 0 {
					parts = append(parts, fmt.Sprintf("%d %s", n, fm))
				}
			}
			b.WriteString(strings.Join(parts, ", "))
		}
		for _, d := range p.Followed {
			fmt.Fprintf(&b, "; GRUB stub followed to %s", d)
		}
		for _, s := range p.Skipped {
			fmt.Fprintf(&b, "; skipped %s", s)
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Choose returns the entry to boot. An empty selector picks the default
// (the first entry in boot order). Otherwise the selector is, in this
// order, a 0-based index into Entries (as lunboot.entry= and the menu
// number them), an exact id (Entry.ID), an exact label, or a
// case-insensitive substring of exactly one label. The error lists the
// available entries with their ids.
func (f *Found) Choose(selector string) (*Entry, error) {
	if len(f.Entries) == 0 {
		return nil, fmt.Errorf("%w:\n%s", ErrNoEntries, f.Summary())
	}
	if selector == "" {
		return f.Entries[0], nil
	}
	if n, err := strconv.Atoi(selector); err == nil {
		if n >= 0 && n < len(f.Entries) {
			return f.Entries[n], nil
		}
		return nil, fmt.Errorf("boot entry %d does not exist; entries are:\n%s", n, f.List())
	}
	for _, e := range f.Entries {
		if e.ID != "" && e.ID == selector {
			return e, nil
		}
	}
	for _, e := range f.Entries {
		if e.Label == selector {
			return e, nil
		}
	}
	var matches []*Entry
	for _, e := range f.Entries {
		if strings.Contains(strings.ToLower(e.Label), strings.ToLower(selector)) {
			matches = append(matches, e)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return nil, fmt.Errorf("no boot entry matches %q; entries are:\n%s", selector, f.List())
	default:
		return nil, fmt.Errorf("boot entry %q is ambiguous (%d match); entries are:\n%s", selector, len(matches), f.List())
	}
}

// List formats the entries as a menu numbered from 0, default first.
func (f *Found) List() string {
	var b strings.Builder
	for i, e := range f.Entries {
		fmt.Fprintf(&b, "  %d. %s\n", i, e)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// slogPrintf adapts a slog.Logger to u-root's ulog.Logger (Printf only):
// the parsers' chatter goes to debug level.
type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(format string, v ...any) {
	s.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// dedupeFollowed drops the GRUB entries a partition gave on its own when a
// stub on the ESP already led to that partition: the same menu, read
// twice. The stub's copies stay, in the ESP's place in boot order, which
// is where the firmware's GRUB finds them.
func dedupeFollowed(f *Found) {
	followed := map[string]bool{}
	for _, p := range f.Partitions {
		for _, d := range p.Followed {
			followed[d] = true
		}
	}
	if len(followed) == 0 {
		return
	}
	kept := f.Entries[:0]
	for _, e := range f.Entries {
		if e.Format == GRUB && e.Via == "" && followed[e.Device] {
			for i := range f.Partitions {
				if p := &f.Partitions[i]; p.Device == e.Device {
					p.Found[GRUB]--
					if p.Found[GRUB] == 0 {
						delete(p.Found, GRUB)
						p.Skipped = append(p.Skipped, "its GRUB menu (read through the ESP's stub)")
					}
				}
			}
			continue
		}
		kept = append(kept, e)
	}
	f.Entries = kept
}
