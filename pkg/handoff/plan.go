package handoff

import (
	"errors"
	"fmt"
	"io"
)

// Request gathers the inputs of Prepare: the facts of the decision
// (Decide) and what the command line and the table are built from.
type Request struct {
	// Entry is the OS boot entry's kernel command line (BLS options, GRUB
	// linux line, syslinux APPEND), variables already expanded.
	Entry string
	Info  *Info
	// Mode is the requested lunboot.handoff= mode (ModeAuto by default).
	Mode Mode
	// Initrd is the inspected OS initrd; nil when the entry has none or
	// Inspect failed (InspectErr).
	Initrd *Initrd
	// InspectErr is Inspect's error on the entry's initrd.
	InspectErr error
	// Dialect, when its Generator is known, overrides the detected one:
	// for initrds that speak a dialect without looking like its generator
	// (custom or test initrds). The check then runs for that generator.
	Dialect Dialect
	// Force is lunboot.force=1: missing items become notes instead of a
	// refusal, for users who know better than the check (an initrd that
	// logs in by other means), and an initrd that cannot be checked is
	// spoken to in dracut's dialect (Decide).
	Force bool
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
	// Lockdown is lunboot's own kernel's lockdown level (ReadLockdown).
	Lockdown string
}

// Facts returns the facts of the request's decision.
func (req *Request) Facts() Facts {
	f := Facts{
		Requested:     req.Mode,
		Force:         req.Force,
		Initrd:        req.Initrd,
		InspectErr:    req.InspectErr,
		Dialect:       req.Dialect,
		KernelVersion: req.KernelVersion,
		ExtraBuiltin:  req.ExtraBuiltin,
		Kernel:        req.Kernel,
		SecureBoot:    req.SecureBoot,
		Lockdown:      req.Lockdown,
		OSLockdown:    cmdlineLockdown(req.Entry),
	}
	if req.Info != nil {
		f.NICModule = req.Info.NIC.Driver
		f.CHAP = req.Info.CHAP != nil
	}
	return f
}

// Plan is a prepared hand-off.
type Plan struct {
	Mode Mode
	// Reason says which rule of Decide chose Mode.
	Reason string
	// Cmdline is the OS command line. In ModeCmdline with CHAP it holds
	// the secrets: log MaskCmdline(Cmdline), never Cmdline.
	Cmdline string
	// Table is the encoded iBFT, nil unless Mode delivers one.
	Table []byte
	// EarlyCPIO is Table wrapped for the initrd, nil unless Mode delivers one.
	EarlyCPIO  []byte
	Capability *Capability
	// Warnings are the console lines of an override (lunboot.force=1)
	// that lets the boot go on; Notes are lines for the boot log. Neither
	// contains secrets.
	Warnings []string
	Notes    []string
}

// Prepare decides the hand-off (Decide) and builds the command line and,
// when delivered, the iBFT. It returns the Plan even with an error when
// the initrd check ran, so that the caller can print every missing item;
// a refusal is a *RefusedError (with a *NotReadyError inside when items
// are missing).
func Prepare(req Request) (*Plan, error) {
	if req.Info == nil {
		return nil, errors.New("handoff: Prepare needs Info")
	}
	if err := req.Info.Validate(); err != nil {
		return nil, err
	}
	d, err := Decide(req.Facts())
	if d == nil {
		return nil, err
	}
	p := &Plan{Mode: d.Mode, Reason: d.Reason, Capability: d.Capability, Warnings: d.Warnings, Notes: d.Notes}
	if err != nil {
		return p, err
	}
	if req.Initrd != nil {
		if n := req.Initrd.InitiatorName; n != "" && n != req.Info.InitiatorName {
			p.Notes = append(p.Notes, fmt.Sprintf("the initrd's own initiator name %q is overridden with %q", n, req.Info.InitiatorName))
		}
	}
	if l := req.Info.Target.LUN; l.Linux() != 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("boot LUN %s (RFC 4173 hex) is LUN %d to Linux", l, l.Linux()))
	}
	if p.Cmdline, err = Cmdline(req.Entry, req.Info, d.Capability.Dialect, d.Mode); err != nil {
		return p, err
	}
	if n := len(req.Info.ISCSIParams); n > 0 && d.Capability.Dialect.Generator == GeneratorInitramfsTools {
		// open-iscsi's local-top/iscsi runs iscsistart with the target
		// and CHAP options only; it reads no node parameters.
		p.Notes = append(p.Notes, fmt.Sprintf("%d rd.iscsi.param= node parameter(s) not passed: initramfs-tools' iSCSI script takes none (set them in the OS's /etc/iscsi/iscsid.conf for its later logins)", n))
	}
	if d.Mode.DeliversTable() {
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
