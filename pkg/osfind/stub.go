package osfind

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/u-root/u-root/pkg/boot/grub"
	"github.com/u-root/u-root/pkg/curl"
	"github.com/u-root/u-root/pkg/mount"
	"github.com/u-root/u-root/pkg/mount/block"
)

// A GRUB stub is the grub.cfg Debian's UEFI installer leaves on the EFI
// system partition (EFI/debian/grub.cfg): grub-install writes the signed
// GRUB image's early configuration there, three lines that find the file
// system holding /boot/grub by its UUID and hand over to the grub.cfg there
// (grub-install.c, load.cfg for --uefi-secure-boot):
//
//	search.fs_uuid 0d1c…-… root hd0,gpt2
//	set prefix=($root)'/boot/grub'
//	configfile $prefix/grub.cfg
//
// u-root's parser takes neither the hint after the variable name nor the
// $prefix expansion, so it finds nothing on the ESP; osfind follows the stub
// itself, as the firmware's GRUB would, and the entries of the grub.cfg it
// names come first, from the ESP the firmware boots.

// stub is a parsed GRUB stub.
type stub struct {
	// File is the stub's path relative to the ESP ("EFI/debian/grub.cfg").
	File string
	// UUID is the file system searched for.
	UUID string
	// Config is the configuration file it loads, as a path on that file
	// system ("/boot/grub/grub.cfg").
	Config string
}

// findStub returns the first EFI/*/grub.cfg under dir that is a stub: one
// that searches a file system by UUID and loads a configfile from it, with
// no menuentry of its own. ok is false when there is none.
func findStub(dir string) (stub, bool) {
	files, _ := filepath.Glob(filepath.Join(dir, "EFI", "*", "grub.cfg"))
	for _, f := range files {
		s, err := parseStub(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(dir, f)
		s.File = rel
		return s, true
	}
	return stub{}, false
}

// errNotStub says a grub.cfg is a full configuration, not a stub.
var errNotStub = errors.New("not a GRUB stub")

// parseStub reads a stub grub.cfg: search.fs_uuid UUID [var [hint…]], or
// search [--no-floppy] --fs-uuid [--set[=]var] UUID; set prefix=…; and
// configfile, whose argument may use $prefix or ($var)/path.
func parseStub(file string) (stub, error) {
	f, err := os.Open(file)
	if err != nil {
		return stub{}, err
	}
	defer f.Close()
	vars := map[string]string{}
	uuidOf := map[string]string{} // variable → the UUID searched into it
	var s stub
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch fields[0] {
		case "menuentry", "submenu", "linux", "linuxefi", "blscfg":
			return stub{}, errNotStub
		case "search.fs_uuid":
			if len(fields) < 2 {
				continue
			}
			v := "root"
			if len(fields) >= 3 {
				v = fields[2]
			}
			uuidOf[v] = fields[1]
		case "search":
			uuid, v, byUUID := "", "root", false
			for i := 1; i < len(fields); i++ {
				switch a := fields[i]; {
				case a == "--fs-uuid" || a == "-u":
					byUUID = true
				case a == "--set" || a == "-s":
					if i+1 < len(fields) && !strings.HasPrefix(fields[i+1], "-") && i+2 < len(fields) {
						v = fields[i+1]
						i++
					}
				case strings.HasPrefix(a, "--set="):
					v = strings.TrimPrefix(a, "--set=")
				case strings.HasPrefix(a, "-"):
				default:
					uuid = a
				}
			}
			if byUUID && uuid != "" {
				uuidOf[v] = uuid
			}
		case "set":
			if len(fields) < 2 {
				continue
			}
			k, v, ok := strings.Cut(strings.Join(fields[1:], " "), "=")
			if ok {
				vars[k] = unquote(v)
			}
		case "configfile":
			if len(fields) < 2 {
				continue
			}
			arg := unquote(fields[1])
			for k, v := range vars {
				arg = strings.ReplaceAll(arg, "${"+k+"}", v)
				arg = strings.ReplaceAll(arg, "$"+k, v)
			}
			// arg is now "($root)/boot/grub/grub.cfg": the device
			// variable and the path on it.
			dev, p, ok := strings.Cut(strings.TrimPrefix(arg, "("), ")")
			if !ok || !strings.HasPrefix(arg, "(") {
				return stub{}, fmt.Errorf("%s: configfile %q names no device", file, fields[1])
			}
			dev = strings.TrimPrefix(strings.Trim(dev, "{}"), "$")
			dev = strings.Trim(dev, "{}")
			uuid, ok := uuidOf[dev]
			if !ok {
				return stub{}, fmt.Errorf("%s: configfile on ($%s), which no search --fs-uuid set", file, dev)
			}
			s.UUID, s.Config = uuid, path.Clean("/"+p)
			return s, nil
		}
	}
	if err := sc.Err(); err != nil {
		return stub{}, err
	}
	return stub{}, errNotStub
}

// unquote drops GRUB's single and double quotes from a word
// ("($root)'/boot/grub'" → "($root)/boot/grub").
func unquote(s string) string {
	return strings.NewReplacer("'", "", `"`, "").Replace(s)
}

// resolveFunc mounts the file system with a UUID and returns its device
// (/dev/…) and mount point.
type resolveFunc func(uuid string) (device, dir string, err error)

// poolResolver resolves UUIDs among devices, mounting through pool.
func poolResolver(devices block.BlockDevices, pool *mount.Pool) resolveFunc {
	return func(uuid string) (string, string, error) {
		d := devices.FilterFSUUID(uuid)
		if len(d) != 1 {
			return "", "", fmt.Errorf("%d file systems with UUID %s on this disk, want 1", len(d), uuid)
		}
		m, err := pool.Mount(d[0], mount.ReadOnly)
		if err != nil {
			return "", "", fmt.Errorf("mount %s: %w", d[0].Name, err)
		}
		return filepath.Join("/dev", d[0].Name), m.Path, nil
	}
}

// followStub reads the grub.cfg a stub under esp names, on the file system
// resolve mounts. It returns the GRUB entries found there (Device and Root
// the target's, Via naming the stub), the target's device, and an error
// when the stub leads nowhere.
func followStub(ctx context.Context, esp, espDevice string, s stub, resolve resolveFunc, devices block.BlockDevices, pool *mount.Pool) ([]*Entry, string, error) {
	dev, dir, err := resolve(s.UUID)
	if err != nil {
		return nil, "", fmt.Errorf("GRUB stub %s searches file system %s: %w", s.File, s.UUID, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, dev, err
	}
	root := &url.URL{Scheme: "file", Path: abs}
	imgs, err := grub.ParseConfigFile(ctx, curl.DefaultSchemes, strings.TrimPrefix(s.Config, "/"), root, devices, pool)
	if err != nil {
		return nil, dev, fmt.Errorf("GRUB stub %s: %s on %s: %w", s.File, s.Config, dev, err)
	}
	via := fmt.Sprintf("%s on %s", s.File, espDevice)
	entries, _ := toEntries(GRUB, imgs, dev, dir, grubIDs(dir), nil)
	for _, e := range entries {
		e.Via = via
	}
	return entries, dev, nil
}
