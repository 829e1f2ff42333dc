package distro

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// Partition type GUIDs: the Discoverable Partitions Specification's Linux
// root (x86-64) and its extended boot loader partition (XBOOTLDR), the
// $BOOT that holds Boot Loader Specification entries.
const (
	gptRootX8664 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	gptXBOOTLDR  = "BC13C2FF-59E6-4262-A352-B275FD6F7172"
	// gptESP is the EFI system partition (UEFI 2.10, §5.3.3); gptLinuxFS
	// the generic Linux file system type Debian's partman gives the root.
	gptESP     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	gptLinuxFS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// espStubPath is where grub-install puts the stub on Debian (its
// --bootloader-id, "debian").
const espStubPath = "EFI/debian/grub.cfg"

// ids are the stable identities of one system's disk: rebuilding it keeps
// them, so entries and command lines that name them stay valid.
type ids struct {
	Disk, BootPart, RootPart string // GPT disk and partition GUIDs
	Boot, Root               string // ext4 file system UUIDs
	// ESP is the FAT volume ID of the EFI system partition (LayoutUEFI),
	// as Linux shows it: XXXX-XXXX.
	ESP     string
	ESPPart string // its GPT partition GUID
}

// uuidFor derives a version-4-shaped UUID from a name.
func uuidFor(name string) string {
	s := sha256.Sum256([]byte("lunboot distro " + name))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	h := hex.EncodeToString(s[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func idsFor(system string) ids {
	return ids{
		Disk:     uuidFor(system + " disk"),
		BootPart: uuidFor(system + " boot partition"),
		RootPart: uuidFor(system + " root partition"),
		Boot:     uuidFor(system + " boot fs"),
		Root:     uuidFor(system + " root fs"),
		ESP:      strings.ToUpper(uuidFor(system + " esp fs")[0:4] + "-" + uuidFor(system + " esp fs")[4:8]),
		ESPPart:  uuidFor(system + " esp partition"),
	}
}

// entryCmdline is what Debian's tools would put in the entry: the root by
// UUID, read-write as the brief for these images asks (Debian itself boots
// ro and remounts), and the serial console the lab watches. No iSCSI
// parameter: lunboot adds those in the initrd's dialect.
func entryCmdline(rootUUID string) string {
	return "root=UUID=" + rootUUID + " rw console=ttyS0,115200"
}

// file is one file the configuration writes into a tree.
type file struct {
	Path string // absolute inside the tree
	Data string
	Mode os.FileMode
	// Src, when set, is a host file to copy instead of Data.
	Src string
	// Link, when set, makes Path a symlink to Link instead.
	Link string
}

// sysConfig is what differs between the systems.
type sysConfig struct {
	Name          string
	KernelRelease string
	IDs           ids
	ProofBinary   string // host path of the lunboot-proof program
	Layout        string // LayoutBLS (when empty) or LayoutUEFI
}

// rootFiles renders the root file system's configuration.
func rootFiles(c sysConfig) []file {
	host := "lunboot-" + c.Name
	fstab := fmt.Sprintf(
		"# lunboot distro %s: root and /boot on the iSCSI LUN, by UUID.\n"+
			"# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"+
			"UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n"+
			"UUID=%s\t/boot\text4\tdefaults\t0\t2\n", c.Name, c.IDs.Root, c.IDs.Boot)
	if c.Layout == LayoutUEFI {
		// As Debian's installer writes it for the ESP.
		fstab = fmt.Sprintf(
			"# lunboot distro %s: root and the ESP on the iSCSI LUN, by UUID.\n"+
				"# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"+
				"UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n"+
				"UUID=%s\t/boot/efi\tvfat\tumask=0077\t0\t1\n", c.Name, c.IDs.Root, c.IDs.ESP)
	}
	return []file{
		{Path: "/etc/fstab", Mode: 0o644, Data: fstab},
		{Path: "/etc/hostname", Mode: 0o644, Data: host + "\n"},
		{Path: "/etc/hosts", Mode: 0o644, Data: "127.0.0.1\tlocalhost\n127.0.1.1\t" + host + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		// The build host's resolver means nothing in the lab.
		{Path: "/etc/resolv.conf", Mode: 0o644, Data: ""},
		// The boot NIC was configured by the initrd, which logged in
		// through it; ifupdown must leave it alone or a second DHCP or a
		// flush could cut the root's session (open-iscsi's
		// README.Debian). Only loopback is managed here.
		{Path: "/etc/network/interfaces", Mode: 0o644, Data: "# lunboot distro: the boot NIC belongs to the initrd that logged in to the\n" +
			"# iSCSI root; ifupdown manages loopback only.\nauto lo\niface lo inet loopback\n"},
		{Path: "/usr/local/sbin/lunboot-proof", Mode: 0o755, Src: c.ProofBinary},
		{Path: "/etc/systemd/system/lunboot-proof.service", Mode: 0o644, Data: proofUnit},
		{Path: "/etc/systemd/system/multi-user.target.wants/lunboot-proof.service", Link: "/etc/systemd/system/lunboot-proof.service"},
		// systemd's getty generator starts a getty on the kernel's
		// console= anyway; enabling it makes ttyS0 independent of it.
		{Path: "/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service", Link: "/lib/systemd/system/serial-getty@.service"},
		{Path: "/etc/lunboot-distro", Mode: 0o644, Data: fmt.Sprintf("system=%s\nroot_uuid=%s\nboot_uuid=%s\n", c.Name, c.IDs.Root, c.IDs.Boot)},
	}
}

// proofUnit runs the proof once the boot is complete. Ordered after
// multi-user.target (which also wants it) so that the target is reached
// before it looks, and after getty.target so that the login prompt is on
// the console before a test's power-off; Type=simple so that its own start
// job does not hold the boot "starting" while it waits in `systemctl
// is-system-running --wait`.
var proofUnit = `[Unit]
Description=lunboot hand-off proof (prints ` + strings.TrimSpace(osproof.Marker) + ` on ttyS0)
Documentation=https://github.com/lunboot/lunboot (qemu/distro)
Wants=network-online.target
After=network-online.target remote-fs.target multi-user.target getty.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/lunboot-proof -console /dev/ttyS0
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=multi-user.target
`

// blsEntryID is the entry's file name without .conf, as Debian's
// kernel-install would name it (<machine-id or name>-<version>).
func blsEntryID(release string) string { return "debian-" + release }

// bootFiles renders the boot partition's loader configuration. One space
// between key and value: u-root's bls parser splits on the first space.
func bootFiles(c sysConfig) []file {
	id := blsEntryID(c.KernelRelease)
	return []file{
		{Path: "/loader/loader.conf", Mode: 0o644, Data: "default " + id + ".conf\ntimeout 3\n"},
		{Path: "/loader/entries/" + id + ".conf", Mode: 0o644, Data: fmt.Sprintf(
			"title Debian GNU/Linux 12 (bookworm, %s)\nversion %s\nlinux /vmlinuz-%s\ninitrd /initrd.img-%s\noptions %s\n",
			c.Name, c.KernelRelease, c.KernelRelease, c.KernelRelease, entryCmdline(c.IDs.Root))},
	}
}

// espFiles renders the EFI system partition of LayoutUEFI: grub-install's
// stub, byte for byte the three lines grub-install (2.06, Debian 12) writes
// for the signed GRUB image (util/grub-install.c: the load.cfg it copies to
// EFI/debian/grub.cfg), with the hint Debian's installer gets for the
// root's partition.
func espFiles(c sysConfig) []file {
	return []file{{Path: "/" + espStubPath, Mode: 0o644, Data: fmt.Sprintf(
		"search.fs_uuid %s root hd0,gpt2 \nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n", c.IDs.Root)}}
}

// grubMenuID is the --id grub-mkconfig's 10_linux gives the simple entry.
func grubMenuID(rootUUID string) string { return "gnulinux-simple-" + rootUUID }

// uefiRootFiles renders /boot/grub/grub.cfg of LayoutUEFI in the shape
// grub-mkconfig's 00_header and 10_linux give it (trimmed to one entry):
// the entry searches the root by UUID and names the kernel and initrd under
// /boot.
func uefiRootFiles(c sysConfig) []file {
	rel := c.KernelRelease
	return []file{{Path: "/boot/grub/grub.cfg", Mode: 0o444, Data: fmt.Sprintf(`#
# DO NOT EDIT THIS FILE (lunboot distro %[1]s: the shape of grub-mkconfig's)
#
if [ -s $prefix/grubenv ]; then
  load_env
fi
set default="0"
set timeout=5
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option '%[2]s' {
	load_video
	insmod gzio
	insmod part_gpt
	insmod ext2
	search --no-floppy --fs-uuid --set=root %[3]s
	echo	'Loading Linux %[4]s ...'
	linux	/boot/vmlinuz-%[4]s %[5]s
	echo	'Loading initial ramdisk ...'
	initrd	/boot/initrd.img-%[4]s
}
`, c.Name, grubMenuID(c.IDs.Root), c.IDs.Root, rel, entryCmdline(c.IDs.Root))}}
}

// writeFiles writes files into the tree at dir. Every path is removed first
// and written anew, so that a tree of hard links to a cached stage (cp -al)
// gets new inodes and the stage stays untouched.
func writeFiles(dir string, files []file) error {
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		if f.Link != "" {
			if err := os.Symlink(f.Link, p); err != nil {
				return err
			}
			continue
		}
		data := []byte(f.Data)
		if f.Src != "" {
			b, err := os.ReadFile(f.Src)
			if err != nil {
				return err
			}
			data = b
		}
		if err := os.WriteFile(p, data, f.Mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode); err != nil {
			return err
		}
	}
	return nil
}
