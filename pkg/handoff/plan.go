package handoff

import (
	"errors"
	"fmt"
	"io"
)

// Request gathers the inputs of Prepare.
type Request struct {
	// Entry is the OS boot entry's kernel command line (BLS options, GRUB
	// linux line, syslinux APPEND), variables already expanded.
	Entry string
	Info  *Info
	// Mode is the requested lunboot.handoff= mode (ModeAuto by default).
	Mode Mode
	// Initrd is the inspected OS initrd. It may be nil only when Dialect
	// is set (an initrd Inspect could not read).
	Initrd *Initrd
	// Dialect, when its Generator is known, overrides the detected one:
	// for initrds that speak a dialect without looking like its generator
	// (custom or test initrds). The check then runs for that generator.
	Dialect Dialect
	// NoCheck turns missing items from a refusal into notes, for users who
	// know better than the check (an initrd that logs in by other means).
	NoCheck bool
	// KernelVersion is the OS kernel's version, when known, to check
	// modules for that kernel only.
	KernelVersion string
	// ExtraBuiltin lists modules built into the OS kernel (from its
	// modules.builtin on the root file system), if the caller read it.
	ExtraBuiltin []string
	// Kernel describes the OS kernel's configuration (ParseKernelConfig of
	// /boot/config-<ver>); the zero value means unknown, taken as accepting
	// the table.
	Kernel KernelSupport
	// SecureBoot is the machine's Secure Boot state (SecureBoot()).
	SecureBoot bool
}

// Plan is a prepared hand-off.
type Plan struct {
	Mode Mode
	// Cmdline is the OS command line. In ModeCmdline with CHAP it holds
	// the secrets: log MaskCmdline(Cmdline), never Cmdline.
	Cmdline string
	// Table is the encoded iBFT, nil unless Mode delivers one.
	Table []byte
	// EarlyCPIO is Table wrapped for the initrd, nil unless Mode delivers one.
	EarlyCPIO  []byte
	Capability *Capability
	// Notes are lines for the boot log (never containing secrets).
	Notes []string
}

// Prepare checks the OS initrd, resolves the mode and builds the command
// line and, when delivered, the iBFT. It returns the Plan even with an
// error when the initrd check failed, so that the caller can print every
// missing item (the error is then a *NotReadyError).
func Prepare(req Request) (*Plan, error) {
	if req.Info == nil || req.Initrd == nil && req.Dialect.Generator == GeneratorUnknown {
		return nil, errors.New("handoff: Prepare needs Info, and Initrd or a Dialect")
	}
	if err := req.Info.Validate(); err != nil {
		return nil, err
	}
	var capab *Capability
	if req.Initrd != nil {
		capab = req.Initrd.Check(Requirements{
			NICModule:     req.Info.NIC.Driver,
			KernelVersion: req.KernelVersion,
			ExtraBuiltin:  req.ExtraBuiltin,
			Mode:          req.Mode,
			Dialect:       req.Dialect,
		})
	} else {
		capab = &Capability{Dialect: req.Dialect, IBFT: true,
			Notes: []string{"the OS initrd was not inspected: its iSCSI support is not verified"}}
	}
	p := &Plan{Capability: capab, Notes: append([]string(nil), capab.Notes...)}
	if err := capab.Err(); err != nil {
		if !req.NoCheck {
			return p, err
		}
		for _, it := range capab.Missing() {
			p.Notes = append(p.Notes, "check overridden: missing "+it.Name)
		}
	}
	if req.Initrd != nil {
		if n := req.Initrd.InitiatorName; n != "" && n != req.Info.InitiatorName {
			p.Notes = append(p.Notes, fmt.Sprintf("the initrd's own initiator name %q is overridden with %q", n, req.Info.InitiatorName))
		}
	}
	ok, why := req.Kernel.TableAccepted(req.SecureBoot)
	mode, notes, err := ResolveMode(req.Mode, req.Info, capab, ok, why)
	if err != nil {
		return p, err
	}
	p.Mode = mode
	p.Notes = append(p.Notes, notes...)
	if l := req.Info.Target.LUN; l.Linux() != 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("boot LUN %s (RFC 4173 hex) is LUN %d to Linux", l, l.Linux()))
	}
	if p.Cmdline, err = Cmdline(req.Entry, req.Info, capab.Dialect, mode); err != nil {
		return p, err
	}
	if n := len(req.Info.ISCSIParams); n > 0 && capab.Dialect.Generator == GeneratorInitramfsTools {
		// open-iscsi's local-top/iscsi runs iscsistart with the target
		// and CHAP options only; it reads no node parameters.
		p.Notes = append(p.Notes, fmt.Sprintf("%d rd.iscsi.param= node parameter(s) not passed: initramfs-tools' iSCSI script takes none (set them in the OS's /etc/iscsi/iscsid.conf for its later logins)", n))
	}
	if mode.DeliversTable() {
		t, err := req.Info.Table()
		if err != nil {
			return p, err
		}
		if p.Table, err = t.MarshalBinary(); err != nil {
			return p, fmt.Errorf("handoff: encode iBFT: %w", err)
		}
		p.EarlyCPIO = EarlyCPIO(p.Table)
	}
	return p, nil
}

// Initrd returns the initrd to kexec: the OS initrd, with the iBFT early
// archive in front when the plan delivers one.
func (p *Plan) Initrd(osInitrd io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	if p.EarlyCPIO == nil {
		return osInitrd, size, nil
	}
	c, err := PrependInitrd(p.EarlyCPIO, osInitrd, size)
	if err != nil {
		return nil, 0, err
	}
	return c, c.Size(), nil
}
