// Package advice turns a failure into what the operator should check,
// phrased for where the operator sets lunboot up: the kernel command line
// (rd.iscsi.username=, lunboot.target=…) for the boot, or the options of
// the host tools (--chap-user…) for `lunboot discover`, `luns`, `read` and
// the rest.
//
// The libraries' errors state facts that callers branch on: the login
// status (iscsi.LoginError), which CHAP side failed (iscsi.FailedCHAPSide),
// the digest the target refused (iscsi.DigestError), a LUN that is not
// there (scsi.ErrLUNNotSupported), or no disk (scsi.ErrNotBlockDevice). This package is the one place that says
// what to do about them, so each piece of advice is written once and a
// console never shows it twice.
package advice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/overlay"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Phrasing says whose words the advice uses.
type Phrasing uint8

// Phrasings.
const (
	// Cmdline names kernel command-line keys (docs/configuration.md), for
	// the boot console.
	Cmdline Phrasing = iota + 1
	// Flags names the host tools' options (cmds/lunboot).
	Flags
)

// words are the names one phrasing gives the settings advice refers to.
type words struct {
	chap       string // where the initiator's CHAP account is given
	chapNeeded string // how to add one
	mutual     string // where the target's (mutual CHAP) account is given
	initiator  string // how to log in under another initiator name
	// timeout says what to check when the portal does not answer in time
	// (%[1]s the portal, %[2]s the login timeout).
	timeout string
	// lun says how each target string writes the LUN.
	lun string
	// otherLUN says how to name another LUN.
	otherLUN string
	// disk is the advice for a LUN that failed to open for another
	// reason; empty for none.
	disk string
	// digest names the option of a digest key ("HeaderDigest"); empty
	// when the phrasing cannot require a digest.
	digest func(key string) string
}

var phrasings = map[Phrasing]words{
	Cmdline: {
		chap:       "rd.iscsi.username and rd.iscsi.password, or user:secret@ in netroot or lunboot.target",
		chapNeeded: "give its account as rd.iscsi.username= and rd.iscsi.password= (or user:secret@ in netroot= or lunboot.target=)",
		mutual:     "rd.iscsi.in.username and rd.iscsi.in.password",
		initiator:  "or set lunboot.initiator= to a name it allows (the default name is derived from the NIC's MAC, docs/configuration.md); the value ipxe takes iPXE's name, iqn.2010-04.org.ipxe:<host name or UUID>, for an ACL written for iPXE",
		timeout:    "portal %[1]s is unreachable: check the address, the route (gateway) and firewalls",
		lun:        "the root-path's LUN field is hexadecimal (RFC 4173): LUN 10 is written \"a\"; fix the root-path or the target's LUN mapping",
		otherLUN:   "fix the root-path's LUN field",
		disk:       "the LUN must be a disk (direct-access device) that is ready",
		digest: func(key string) string {
			return "lunboot." + map[string]string{"HeaderDigest": "header_digest", "DataDigest": "data_digest"}[key]
		},
	},
	Flags: {
		chap:       "--chap-user and its secret, --chap-secret-file or $LUNBOOT_CHAP_SECRET",
		chapNeeded: "add --chap-user and --chap-secret-file",
		mutual:     "--target-user and --target-secret-file or $LUNBOOT_TARGET_SECRET",
		initiator:  "or pass a name it allows with --initiator",
		timeout:    "%[1]s did not answer within --timeout %[2]s: check that it is an iSCSI target (not another service) and reachable; a slow target needs a longer --timeout",
		lun:        "a root-path writes the LUN in hex (\"a\" is LUN 10), an iscsi:// URL in decimal",
		otherLUN:   "name another LUN (`lunboot luns` lists them)",
	},
}

// Login returns what to check after a login (iscsi.Login, iscsi.Discover)
// with cfg failed with err, or "" when there is nothing to add to the
// error (a cancelled boot, a protocol violation the target's vendor must
// fix).
func Login(err error, cfg iscsi.Config, p Phrasing) string {
	w, ok := phrasings[p]
	if !ok || err == nil {
		return ""
	}
	var le *iscsi.LoginError
	var de *iscsi.DigestError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, iscsi.ErrAuthenticationFailed):
		return chap(iscsi.FailedCHAPSide(err), cfg.CHAP, w)
	case errors.Is(err, iscsi.ErrAuthorizationFailed):
		// The error names the initiator (iscsi.LoginError.Initiator).
		return "allow that initiator name in the target's ACL, " + w.initiator
	case errors.Is(err, iscsi.ErrTargetNotFound):
		// tgtd answers 02/03 too when its ACL (tgtadm --initiator-name)
		// leaves this initiator out: seen in the lab, qemu/e2e
		// TestIPXEInitiatorName's control run.
		return fmt.Sprintf("check the target name: `lunboot discover %s` lists the targets this portal serves; if the name is right, the target's ACL may leave out initiator %s (tgtd answers \"not found\" then)", cfg.Portal, cfg.InitiatorName)
	case errors.As(err, &le) && le.Class == 2 && le.Detail == 0 && (cfg.HeaderDigest == iscsi.DigestNone || cfg.DataDigest == iscsi.DigestNone):
		// LIO answers a None-only digest offer with 02/00 when its TPG
		// requires CRC32C (param HeaderDigest=CRC32C; seen in the lab,
		// qemu/interop), where tgtd logs in without digests.
		fix := "enable CRC32C digests in lunboot"
		if w.digest != nil {
			fix = fmt.Sprintf("set %s=prefer and %s=prefer", w.digest("HeaderDigest"), w.digest("DataDigest"))
		}
		return fmt.Sprintf("the target refused the login (status 02/00, initiator error); a target that requires CRC32C digests answers so when offered none (LIO does): %s, or see the target's log", fix)
	case errors.As(err, &le) && le.Class == 3 && le.Detail == 1:
		// LIO answers 03/01 for a target name it does not serve
		// (iscsi_target_nego.c, the name lookup failing), and compares
		// names byte for byte: a name whose case differs is not found.
		return fmt.Sprintf("the target is not accepting logins (status 03/01); LIO answers so for a target name it does not serve, compared with its case: check the name letter by letter (`lunboot discover %s` lists them), or see the target's log", cfg.Portal)
	case errors.As(err, &le):
		return fmt.Sprintf("the target refused the login (status %02x/%02x); see its log", le.Class, le.Detail)
	case errors.As(err, &de):
		if w.digest == nil {
			return "enable CRC32C digests on the target"
		}
		return fmt.Sprintf("enable CRC32C digests on the target, or set %s=prefer (CRC32C if the target agrees)", w.digest(de.Key))
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens on %s: is the iSCSI target running, on that address and port?", cfg.Portal)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("portal %s is unreachable: check the address, the route (gateway) and firewalls", cfg.Portal)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		timeout := cfg.LoginTimeout
		if timeout <= 0 {
			timeout = iscsi.DefaultLoginTimeout
		}
		return fmt.Sprintf(w.timeout, cfg.Portal, timeout)
	case errors.As(err, &dnsErr):
		return "the portal's host name does not resolve: check it, or use an IP address"
	}
	return ""
}

// chap says which credentials to check for a failed CHAP exchange: the
// initiator's account on the target, or the target's own in mutual CHAP.
func chap(side iscsi.CHAPSide, c *iscsi.CHAP, w words) string {
	switch {
	case side == iscsi.CHAPTargetSide:
		s := "the target failed to prove itself (mutual CHAP): check " + w.mutual + " against the target's outgoing (mutual) account"
		if c != nil && c.TargetUsername != "" {
			s += fmt.Sprintf(" for user %q", c.TargetUsername)
		}
		return s
	case side == iscsi.CHAPInitiatorSide && (c == nil || !c.Enabled()):
		return "the target requires CHAP: " + w.chapNeeded
	case side == iscsi.CHAPInitiatorSide:
		s := fmt.Sprintf("check the CHAP user name and secret (%s) against the target's account for user %q", w.chap, c.Username)
		if c.Mutual() {
			s += "; a target asked for mutual CHAP also refuses when it has no outgoing account to answer with (" + w.mutual + ")"
		}
		return s
	}
	return fmt.Sprintf("the target and lunboot share no CHAP algorithm (lunboot offers %s): enable one of them on the target", algorithms())
}

func algorithms() string {
	names := make([]string, len(iscsi.DefaultCHAPAlgorithms))
	for i, a := range iscsi.DefaultCHAPAlgorithms {
		names[i] = a.String()
	}
	return strings.Join(names, ", ")
}

// MissingLUN returns what to check when a LUN is not among those the
// target reports: how each target string writes a LUN, since decimal
// written where hex was meant is the usual cause. The error states the
// facts (the LUN asked for and the target's, in sam.FormatLUNs).
func MissingLUN(p Phrasing) string {
	return phrasings[p].lun
}

// OpenDisk returns what to check when a LUN could not be opened as a disk
// (scsi.OpenDisk), or "" when there is nothing to add.
func OpenDisk(err error, p Phrasing) string {
	w, ok := phrasings[p]
	switch {
	case !ok || err == nil:
		return ""
	case errors.Is(err, scsi.ErrLUNNotSupported):
		return w.lun
	case errors.Is(err, scsi.ErrNotBlockDevice):
		return "the LUN must be a disk (direct-access device); tgtd's LUN 0 is its controller and its disks start at 1: " + w.otherLUN
	}
	return w.disk
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// LockdownCHAP is what to do when the OS kernel will ignore an iBFT
// because the machine runs locked down (Secure Boot, or lockdown= on a
// command line) and the session uses CHAP: the only hand-off left, the
// command line, would show the secrets to every user in /proc/cmdline.
func LockdownCHAP() string {
	return "a locked-down (Secure Boot) OS kernel ignores an iBFT from its initrd, and the command line would show the CHAP secrets to every user in /proc/cmdline: " +
		"give the OS a real firmware iBFT (boot lunboot from an iPXE or UEFI iSCSI firmware that leaves one), or drop CHAP on this target, " +
		"or accept the exposure with lunboot.handoff=cmdline (then make the secrets per-machine and rotate them)"
}

// KexecRefused is what to do when the firmware kernel refused to load the
// OS kernel (kexec_file_load). lockdown is the firmware kernel's lockdown
// level ("" or "none" when it is not locked down).
func KexecRefused(err error, lockdown string) string {
	locked := lockdown != "" && lockdown != "none"
	switch {
	case locked && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EKEYREJECTED) || errors.Is(err, syscall.EBADMSG) || errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOKEY)):
		return "the OS kernel's signature was refused: lunboot's kernel runs locked down (" + lockdown + ", Secure Boot), so kexec loads only kernels signed by a key it trusts. " +
			"Boot a signed kernel (your distribution's signed linux-image package, or sign it with sbsign and enroll the key in the firmware's db or MOK), " +
			"or turn Secure Boot off for this machine"
	case errors.Is(err, syscall.ENOSYS):
		return "the firmware kernel lacks kexec_file_load (CONFIG_KEXEC_FILE)"
	case errors.Is(err, syscall.EKEYREJECTED), errors.Is(err, syscall.ENOKEY):
		return "the OS kernel's signature was refused (the firmware kernel enforces kexec signatures): boot a kernel signed by a key it trusts"
	}
	return "the firmware kernel needs CONFIG_KEXEC_FILE; under Secure Boot lockdown the OS kernel must be signed"
}

// CarryModuleTree is what to do when carry-in cannot work because the OS
// kernel's module tree (lib/modules/<release>) is not on the LUN: carry-in
// takes the NIC driver and the data path's modules from there, since the
// firmware kernel's modules do not fit the OS kernel.
func CarryModuleTree(release string) string {
	return "put the OS kernel's modules on the LUN: in the OS, reinstall the kernel's package (Debian, Ubuntu: apt install --reinstall linux-image-" + release +
		"; Fedora: dnf reinstall kernel-modules-core) and run depmod " + release +
		"; or rebuild the OS initrd with iSCSI support (Debian: apt install open-iscsi, then update-initramfs -u), which needs no carry-in"
}

// CarryModules is what to do when the OS kernel has neither as a module
// (in its modules.dep) nor built in (modules.builtin) one that carry-in
// needs: the boot NIC's driver or the data path's nbd.
func CarryModules(missing []string) string {
	return "give the OS kernel " + strings.Join(missing, ", ") + " as a module or built in: boot an OS kernel built with it (nbd is CONFIG_BLK_DEV_NBD; Debian's, Ubuntu's and Fedora's kernels have it) " +
		"or install the package that ships it (Ubuntu: linux-modules-extra-<release>), then run depmod; or rebuild the OS initrd with iSCSI support, which needs no carry-in"
}

// Overlay returns what to do about a per-client overlay LUN that
// lunboot.overlay=lun:<LUN> named and the carried daemon refused
// (pkg/overlay's errors), given the size it needs in bytes.
func Overlay(err error, lun string, required uint64) string {
	size := fmt.Sprintf("at least %d bytes (%d MiB)", required, (required+1<<20-1)>>20)
	switch {
	case errors.Is(err, scsi.ErrLUNNotSupported), errors.Is(err, scsi.ErrNotBlockDevice):
		return "create the overlay LUN " + lun + " on the golden image's target, " + size + " and blank (it is formatted on first use), or correct lunboot.overlay=lun:<LUN in hex>"
	case errors.Is(err, overlay.ErrTooSmall):
		return "give this client an overlay LUN of " + size + " (the golden LUN's size plus its map), blank, or use lunboot.overlay=ram"
	case errors.Is(err, overlay.ErrGoldenChanged):
		return "this overlay's writes belong to the golden image it was made against; boot that image again, or discard the writes by blanking the overlay LUN's first 4 KiB (it is then formatted for the new image): docs/handoff.md, \"Updating the golden image\""
	case errors.Is(err, overlay.ErrOtherClient):
		return "every client needs its own overlay LUN: give this client another lunboot.overlay=lun:<LUN>, or blank this one's first 4 KiB to hand it over"
	case errors.Is(err, overlay.ErrNotOverlay):
		return "lunboot formats only a blank overlay LUN (first 4 KiB zero): check lunboot.overlay=lun:<LUN in hex> names the overlay and not another disk, then blank it"
	}
	return "check the overlay LUN " + lun + " (lunboot.overlay=lun:<LUN in hex>)"
}

// GoldenInitrdISCSI is what to do when a golden image's OS initrd bakes
// open-iscsi's etc/iscsi.initramfs (ISCSI_AUTO or ISCSI_TARGET_NAME):
// its own iSCSI script would log in to the golden LUN by itself, beside
// the carried daemon's overlay, read-write.
func GoldenInitrdISCSI() string {
	return "in the golden image, remove /etc/iscsi/iscsi.initramfs and rebuild the initrd (Debian, Ubuntu: update-initramfs -u), so that the OS's initrd does not log in to the golden LUN itself; " +
		"lunboot's carried daemon serves it under the overlay"
}
