package handoff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Golden images (docs/handoff.md "Golden images"): lunboot.overlay= makes
// the carried daemon open the OS's LUN read-only and serve the OS a
// copy-on-write view of it (pkg/overlay), so many clients share one
// image and each keeps its writes to itself.

// OverlayKind is where a client's writes go.
type OverlayKind uint8

// Overlay kinds.
const (
	// OverlayNone serves the LUN itself, read-write (the default).
	OverlayNone OverlayKind = iota
	// OverlayRAM keeps the writes in the daemon's locked memory: they
	// vanish at power-off.
	OverlayRAM
	// OverlayLUN keeps them on a per-client LUN of the same target.
	OverlayLUN
)

// Overlay is lunboot.overlay=: "ram" or "lun:<LUN in hex>".
type Overlay struct {
	Kind OverlayKind
	// LUN is the overlay LUN as Linux numbers it (OverlayLUN only).
	LUN uint64
}

// ParseOverlay parses a lunboot.overlay= value: "ram", "lun:<hex>" (the
// LUN in hexadecimal, as in an iSCSI root-path: "lun:2", "lun:0x1f"), or
// "none"/"" for no overlay.
func ParseOverlay(v string) (Overlay, error) {
	switch v {
	case "", "none", "off":
		return Overlay{}, nil
	case "ram":
		return Overlay{Kind: OverlayRAM}, nil
	}
	rest, ok := strings.CutPrefix(v, "lun:")
	if !ok {
		return Overlay{}, fmt.Errorf("overlay %q: want ram or lun:<LUN in hex> (lun:2)", v)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(rest, "0x"), "0X"), 16, 64)
	if err != nil {
		return Overlay{}, fmt.Errorf("overlay %q: the LUN after lun: must be hexadecimal (lun:2, lun:1f)", v)
	}
	return Overlay{Kind: OverlayLUN, LUN: n}, nil
}

// String is the canonical lunboot.overlay= value ("" for none).
func (o Overlay) String() string {
	switch o.Kind {
	case OverlayRAM:
		return "ram"
	case OverlayLUN:
		return "lun:" + strconv.FormatUint(o.LUN, 16)
	}
	return ""
}

// DefaultOverlaySize is the RAM overlay's size without
// lunboot.overlay_size=: a quarter of the OS's memory. The daemon's memory
// is locked (mlockall), so the overlay can never be swapped out; a
// quarter leaves the OS most of it.
const DefaultOverlaySize = "25%"

// ParseOverlaySize parses lunboot.overlay_size=: bytes with an optional
// K, M, G or T suffix (powers of 1024: "512M", "2G"), or a percentage of
// the OS's memory ("25%", from 1 to 90). It returns either the bytes or
// the percentage.
func ParseOverlaySize(v string) (bytes int64, percent int, err error) {
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 90 {
			return 0, 0, fmt.Errorf("overlay size %q: a percentage of the OS's memory from 1%% to 90%%", v)
		}
		return 0, n, nil
	}
	mult := int64(1)
	num := strings.TrimSuffix(strings.TrimSuffix(v, "iB"), "B")
	if num != "" {
		switch num[len(num)-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			num = num[:len(num)-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, 0, fmt.Errorf("overlay size %q: want a size (512M, 2G) or a percentage of the OS's memory (25%%)", v)
	}
	if n*mult < 1<<20 {
		return 0, 0, fmt.Errorf("overlay size %q: at least 1M", v)
	}
	return n * mult, 0, nil
}

// OverlayBytes resolves lunboot.overlay_size= ("" for the default) against
// the OS's memory in bytes.
func OverlayBytes(v string, memory int64) (int64, error) {
	if v == "" {
		v = DefaultOverlaySize
	}
	b, pct, err := ParseOverlaySize(v)
	if err != nil {
		return 0, err
	}
	if pct > 0 {
		return memory / 100 * int64(pct), nil
	}
	return b, nil
}

// OSInitiatorUnits are the units of the OS's own iSCSI initiator that
// could log in to the golden target (open-iscsi.service runs `iscsiadm -m
// node --loginall=automatic`; the lab's Debian names it iscsi.service
// too) or run the daemon behind it: with an overlay they are masked for
// the boot (MaskUnits), so the golden LUN never appears as a block device
// with the same file-system UUIDs as the overlay.
var OSInitiatorUnits = []string{
	"iscsid.service", "iscsid.socket", "open-iscsi.service", "iscsi.service",
	"iscsiuio.service", "iscsiuio.socket", "iscsi-init.service", "iscsi-onboot.service",
	"iscsi-starter.service", "iscsi-shutdown.service",
}

// MaskDirs are where MaskUnits writes: systemd's runtime unit directory
// (systemctl mask --runtime) and its runtime control directory, which
// comes before /etc/systemd/system in the unit search path
// (systemd.unit(5), "Unit File Load Path"), so a unit file an
// administrator copied into /etc is masked too. Both live on /run, which
// the initrd hands to the OS at the switch to the real root.
var MaskDirs = []string{"systemd/system.control", "systemd/system"}

// MaskUnits masks units for this boot below run (the initrd's /run): a
// symlink to /dev/null in each of MaskDirs. An existing file is replaced.
func MaskUnits(run string, units []string) error {
	var errs []error
	for _, d := range MaskDirs {
		dir := filepath.Join(run, d)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, u := range units {
			p := filepath.Join(dir, u)
			os.Remove(p)
			if err := os.Symlink("/dev/null", p); err != nil {
				errs = append(errs, fmt.Errorf("mask %s: %w", u, err))
			}
		}
	}
	return errors.Join(errs...)
}

// GoldenWarnings looks at the OS's file systems on a golden LUN for what
// every client would otherwise share: a machine-id (systemd's convention
// for a shared image is an empty /etc/machine-id, machine-id(5), filled
// in per boot) and SSH host keys. It returns one warning each.
func GoldenWarnings(parts []fs.FS) []string {
	var out []string
	for _, p := range parts {
		b, err := fs.ReadFile(p, "etc/machine-id")
		if err != nil {
			continue
		}
		if id := string(bytes.TrimSpace(b)); id != "" && id != "uninitialized" {
			out = append(out, fmt.Sprintf("golden image: /etc/machine-id is set (%s…): every client gets the same machine-id; empty it in the image (truncate -s0 /etc/machine-id, docs/handoff.md)", id[:min(8, len(id))]))
		}
		keys, _ := fs.Glob(p, "etc/ssh/ssh_host_*_key")
		if len(keys) > 0 {
			out = append(out, fmt.Sprintf("golden image: %d SSH host keys in /etc/ssh: every client presents the same host key; remove them and have the OS make its own at boot (docs/handoff.md)", len(keys)))
		}
		if h, err := fs.ReadFile(p, "etc/hostname"); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(h))
			if sc.Scan() && strings.TrimSpace(sc.Text()) != "" && strings.TrimSpace(sc.Text()) != "localhost" {
				out = append(out, fmt.Sprintf("golden image: /etc/hostname is %q: every client has that name (systemd prefers /etc/hostname to DHCP's host name, option 12): empty it so each client is named by DHCP", strings.TrimSpace(sc.Text())))
			}
		}
		break
	}
	return out
}
