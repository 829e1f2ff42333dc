package handoff

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Mode is how the session parameters reach the OS (lunboot.handoff=).
//
// The trade-off: the command line works under every kernel, including one
// locked down by Secure Boot, but whatever it carries is readable by every
// user in /proc/cmdline, CHAP secrets included. The iBFT keeps the secrets
// in a table only root can read (/sys/firmware/ibft, /sys/firmware/acpi),
// but the kernel ignores a table from the initrd when locked down or built
// without CONFIG_ACPI_TABLE_UPGRADE, and the initrd needs iscsi_ibft.
type Mode int

// Modes.
const (
	// ModeAuto picks ModeBoth without CHAP, ModeIBFT with CHAP, and
	// ModeCmdline when the OS cannot use an iBFT (see Decide). It is the
	// default.
	ModeAuto Mode = iota
	// ModeCmdline writes the target, initiator, network and any CHAP
	// credentials on the command line in the initrd's dialect; no table.
	ModeCmdline
	// ModeIBFT delivers an iBFT and switches the initrd to firmware mode
	// (dracut rd.iscsi.firmware, initramfs-tools iscsi_auto).
	ModeIBFT
	// ModeBoth delivers an iBFT and writes the explicit parameters too, so
	// the boot works even if the kernel drops the table. With CHAP (whose
	// secrets stay off the command line) or an entry already in firmware
	// mode, the command line is the firmware-mode one.
	ModeBoth
	// ModeCarry carries lunboot's own initiator into the OS: a cpio
	// appended to the OS initrd holds the running lunboot binary, the OS
	// kernel's own NIC and NBD modules from the LUN, a hook in the
	// initrd's own way and the session's settings; in the OS's early
	// userspace lunboot logs in again and serves the LUN as /dev/nbd0
	// (docs/handoff.md, "Carry-in"). For OS initrds without iSCSI.
	ModeCarry
)

// ParseMode parses a lunboot.handoff= value, in any case: the spellings
// are those of Mode.String. Package bootcfg parses the option with it.
func ParseMode(s string) (Mode, error) {
	for m := ModeAuto; m <= ModeCarry; m++ {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return ModeAuto, errors.New("not one of auto, both, cmdline, ibft, carry")
}

// String returns the lunboot.handoff= spelling.
func (m Mode) String() string {
	switch m {
	case ModeCmdline:
		return "cmdline"
	case ModeIBFT:
		return "ibft"
	case ModeBoth:
		return "both"
	case ModeCarry:
		return "carry"
	}
	return "auto"
}

// DeliversTable reports whether the mode puts an iBFT in front of the initrd.
func (m Mode) DeliversTable() bool { return m == ModeIBFT || m == ModeBoth }

// Support is a tri-state answer about the OS kernel.
type Support int

// Support values.
const (
	Unknown Support = iota
	Yes
	No
)

// String returns "unknown", "yes" or "no".
func (s Support) String() string {
	return map[Support]string{Unknown: "unknown", Yes: "yes", No: "no"}[s]
}

// KernelSupport is what the OS kernel's build configuration says about
// taking an iBFT from the initrd.
type KernelSupport struct {
	// TableUpgrade: CONFIG_ACPI_TABLE_UPGRADE (install tables from the
	// initrd's kernel/firmware/acpi/).
	TableUpgrade Support
	// IBFTDriver: CONFIG_ISCSI_IBFT (y or m), which exports the table under
	// /sys/firmware/ibft.
	IBFTDriver Support
	// ForcedLockdown: CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY or
	// _CONFIDENTIALITY; the table override is then always refused.
	ForcedLockdown Support
	// LockdownInSecureBoot: CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT; the table
	// is refused when the machine booted with Secure Boot.
	LockdownInSecureBoot Support
}

// ParseKernelConfig reads a kernel .config (the OS's /boot/config-<ver>).
func ParseKernelConfig(r io.Reader) (KernelSupport, error) {
	k := KernelSupport{TableUpgrade: No, IBFTDriver: No, ForcedLockdown: No, LockdownInSecureBoot: No}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "CONFIG_") {
			continue
		}
		seen = true
		key, val, _ := strings.Cut(line, "=")
		on := val == "y" || val == "m"
		set := func(s *Support) {
			if on {
				*s = Yes
			}
		}
		switch key {
		case "CONFIG_ACPI_TABLE_UPGRADE":
			set(&k.TableUpgrade)
		case "CONFIG_ISCSI_IBFT":
			set(&k.IBFTDriver)
		case "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY", "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY":
			set(&k.ForcedLockdown)
		case "CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT":
			set(&k.LockdownInSecureBoot)
		}
	}
	if err := sc.Err(); err != nil {
		return KernelSupport{}, fmt.Errorf("handoff: read kernel config: %w", err)
	}
	if !seen {
		return KernelSupport{}, errors.New("handoff: read kernel config: no CONFIG_ lines")
	}
	return k, nil
}

// TableAccepted reports whether the OS kernel will install an iBFT from the
// initrd, with the reason when it will not. Unknown counts as yes: the
// common distribution kernels accept it.
func (k KernelSupport) TableAccepted(secureBoot bool) (bool, string) {
	switch {
	case k.TableUpgrade == No:
		return false, "the OS kernel is built without CONFIG_ACPI_TABLE_UPGRADE"
	case k.IBFTDriver == No:
		return false, "the OS kernel is built without CONFIG_ISCSI_IBFT"
	case k.ForcedLockdown == Yes:
		return false, "the OS kernel always runs locked down and ignores tables from the initrd"
	case secureBoot && k.LockdownInSecureBoot == Yes:
		return false, "Secure Boot is on, so the OS kernel locks down and ignores tables from the initrd"
	}
	return true, ""
}

// SecureBoot reports whether the machine booted with UEFI Secure Boot on,
// from the SecureBoot EFI variable under <sysfs>/firmware/efi/efivars (4
// attribute bytes, then 1 = enabled). A machine without EFI reports false.
func SecureBoot(sysfs string) (bool, error) {
	p := filepath.Join(sysfs, "firmware", "efi", "efivars", "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("handoff: read %s: %w", p, err)
	}
	if len(b) < 5 {
		return false, fmt.Errorf("handoff: %s: %d bytes, want 5", p, len(b))
	}
	return b[4] == 1, nil
}
