// Package distro builds the real Debian 12 systems the end-to-end tests hand
// over to: lunboot kexecs the OS it finds on the LUN, and that OS's own
// initrd must log in to the target again. Three disks prove the hand-off
// and its refusal:
//
//   - Debian: debootstrap --variant=minbase of bookworm with
//     linux-image-amd64, open-iscsi and initramfs-tools; its initrd
//     (MODULES=most) carries iscsistart, scripts/local-top/iscsi, iscsi_tcp
//     and virtio_net, and reads iscsi_initiator=, iscsi_target_name=… or an
//     iBFT (iscsi_auto).
//   - Dracut: the same root with dracut, dracut-network, dbus and procps
//     installed (which replaces initramfs-tools) and its initrd built by
//     dracut --no-hostonly --add "iscsi network-legacy" --omit
//     "systemd-networkd network-manager"; it reads netroot=iscsi:…,
//     rd.iscsi.initiator= or rd.iscsi.firmware.
//   - NoISCSI: the Debian root with open-iscsi purged and its initrd rebuilt,
//     so it cannot log in: lunboot must refuse to kexec it, with a message.
//
// Each system is a GPT disk image with an ext4 boot partition (the kernel,
// the initrd and a Boot Loader Specification entry, which pkg/osfind reads
// with u-root's bls parser) and an ext4 root partition, built without loop
// devices or mounts: sfdisk on a sparse file, then mkfs.ext4 -d writing each
// file system into place (-E offset=). The entry's command line is what the
// distribution would write, root=UUID=<root> rw console=ttyS0,115200, with
// no iSCSI parameter: providing those is lunboot's job.
//
// In every root: the root password "lunboot", a getty on ttyS0, /etc/fstab
// by UUID, and lunboot-proof.service, which prints one LUNBOOT-OS-PROOF line
// on ttyS0 once multi-user.target is reached (package qemu/distro/osproof:
// the command line, the iSCSI sessions, the root device and its by-path
// name, the iBFT, systemd's state), then powers off when the command line
// carries lunboot.proof.poweroff=1 (or =force, skipping the units' stop).
//
// Builds are cached under Options.Cache in stages keyed by their inputs:
// the debootstrap root (suite, mirror, package list, debootstrap version,
// the suite's Release date as apt last saw it), the dracut and no-iSCSI
// roots derived from it, and each disk (its root's key, the proof program,
// the rendered configuration files, this package's sources). A second Build
// with unchanged inputs only reads the manifests. Building needs root
// (debootstrap, chroot), network access to the mirror for the two stages
// that download packages, debootstrap, sfdisk and mkfs.ext4 (e2fsprogs ≥
// 1.43 for -d), and the Go toolchain for the proof program.
package distro

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

// System names, also the folder names under the cache.
const (
	NameDebian  = "debian"
	NameDracut  = "dracut"
	NameNoISCSI = "noiscsi"
	// NameDebianUEFI is the Debian root laid out as Debian's UEFI
	// installer leaves a disk (LayoutUEFI).
	NameDebianUEFI = "debian-uefi"
)

// StageTargetcli is a root stage without a disk: the base root with
// targetcli-fb (TargetcliRoot).
const StageTargetcli = "targetcli"

// Disk layouts.
const (
	// LayoutBLS: a GPT disk with an ext4 boot partition holding a Boot
	// Loader Specification entry (XBOOTLDR) and an ext4 root.
	LayoutBLS = "bls"
	// LayoutUEFI: as Debian 12's installer leaves a disk with "guided, use
	// entire disk" on a UEFI machine: partition 1 the EFI system
	// partition (FAT32) whose EFI/debian/grub.cfg is only grub-install's
	// stub (search.fs_uuid of the root, configfile
	// /boot/grub/grub.cfg there), partition 2 the ext4 root with /boot in
	// it and /boot/grub/grub.cfg as grub-mkconfig writes it (one
	// menuentry with --id gnulinux-simple-<root UUID>). No GRUB binary
	// is installed: lunboot reads the configuration, it does not run it.
	LayoutUEFI = "uefi"
)

// Suite is the Debian release the systems are built from.
const Suite = "bookworm"

// RootPassword is the root password of every system (lab use only).
const RootPassword = "lunboot"

// ManifestFile is each system's manifest, next to its disk.
const ManifestFile = "manifest.json"

// ErrStale is returned by Build with Options.NoBuild when a system is
// missing or out of date.
var ErrStale = errors.New("distro: disks missing or out of date (run `go run ./qemu/cmd/mkdistro`)")

// Options configures Build.
type Options struct {
	// Cache is the folder holding the build; default
	// $LUNBOOT_CACHE/distro (testenv.CacheDir()).
	Cache string
	// Log receives progress; nil discards.
	Log *slog.Logger
	// Mirror is the Debian archive to debootstrap from; default the one
	// the machine's apt uses (FindMirror on /etc).
	Mirror string
	// RepoRoot is the lunboot module, for building the proof program;
	// default the module this package was compiled from.
	RepoRoot string
	// NoBuild makes Build return ErrStale instead of building.
	NoBuild bool
	// Force rebuilds every stage and disk.
	Force bool
	// Only, when not empty, names the systems to build or check; the
	// others stay nil in the Set (a quick rebuild of the one disk a change
	// touched).
	Only []string
	// KeepRoots keeps the unpacked root trees after the disks are built
	// (default true when nil): rebuilding a disk after a change to the
	// configuration then takes a minute instead of several.
	KeepRoots *bool
}

// System is one built system.
type System struct {
	Name string `json:"name"`
	// Disk is the GPT image: partition 1 boot (ext4), partition 2 root
	// (ext4); with LayoutUEFI partition 1 is the ESP (FAT32) and the root
	// holds /boot.
	Disk string `json:"disk"`
	// Layout is LayoutBLS or LayoutUEFI.
	Layout string `json:"layout,omitempty"`
	// Kernel and Initrd are copies of the files on the boot partition, for
	// booting the system directly.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	// KernelRelease is the kernel's version ("6.1.0-28-amd64").
	KernelRelease string `json:"kernel_release"`
	RootUUID      string `json:"root_uuid"`
	BootUUID      string `json:"boot_uuid"`
	// Cmdline is the boot entry's command line.
	Cmdline string `json:"cmdline"`
	// Entry is the BLS entry's path on the boot partition; with
	// LayoutUEFI the GRUB stub's path on the ESP.
	Entry string `json:"entry"`
	// Generator is the initrd's generator: "initramfs-tools" or "dracut".
	Generator string `json:"generator"`
	// ISCSI says whether the initrd was built with iSCSI support.
	ISCSI bool `json:"iscsi"`
	// Size is the image's apparent size, Allocated what it occupies.
	Size      int64 `json:"size"`
	Allocated int64 `json:"allocated"`
	// RootUsed is the size of the root tree put in the root partition.
	RootUsed int64 `json:"root_used"`
	// Key identifies the inputs the disk was built from.
	Key string `json:"key"`
	// Built is when the disk was made and BuildTime how long it took
	// (including the root stages it needed).
	Built     time.Time     `json:"built"`
	BuildTime time.Duration `json:"build_time"`
}

// Set is the result of Build.
type Set struct {
	// Dir is the cache folder.
	Dir string
	// Mirror and Suite are what the roots were debootstrapped from, and
	// ReleaseDate the suite's Release date apt had ("" if unknown).
	Mirror, Suite, ReleaseDate string
	Debian, Dracut, NoISCSI    *System
	DebianUEFI                 *System
	// Rebuilt lists the systems this call built; empty when all were up
	// to date.
	Rebuilt []string
	// Stages lists the root stages this call built, with their times.
	Stages []StageTime
}

// StageTime is how long one root stage took.
type StageTime struct {
	Name string
	Took time.Duration
}

// Systems returns the systems in a fixed order.
func (s *Set) Systems() []*System {
	return []*System{s.Debian, s.Dracut, s.NoISCSI, s.DebianUEFI}
}

// System returns the system called name, or nil.
func (s *Set) System(name string) *System {
	for _, sys := range s.Systems() {
		if sys != nil && sys.Name == name {
			return sys
		}
	}
	return nil
}

//go:embed *.go
var sources embed.FS

// sourceHash hashes this package's non-test sources: the build code is an
// input of every disk.
func sourceHash() string {
	h := sha256.New()
	names, _ := fs.Glob(sources, "*.go")
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, _ := sources.ReadFile(n)
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// key hashes its parts, each length-prefixed so that no two lists collide.
func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Build makes the three systems, reusing every stage whose inputs did not
// change, and returns where they are. ctx bounds the whole build (a cold
// build takes several minutes: debootstrap, an apt install, three initrds,
// three disks).
func Build(ctx context.Context, opts Options) (*Set, error) {
	b, err := newBuilder(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer b.close()
	return b.build(ctx)
}

// readManifest reads a system's manifest.
func readManifest(path string) (*System, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s System
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("distro: manifest %s: %w", path, err)
	}
	return &s, nil
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// defaultCache is $LUNBOOT_CACHE/distro.
func defaultCache() string { return filepath.Join(testenv.CacheDir(), "distro") }
