package handoff

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lunboot/lunboot/pkg/advice"
)

// Facts are everything the hand-off decision depends on. Decide reads
// nothing else: a new rule (a new mode, a new fallback) adds a fact here and
// a row to the table in Decide and in docs/handoff.md.
type Facts struct {
	// Requested is lunboot.handoff= (ModeAuto when it is not given).
	Requested Mode
	// Force is lunboot.force=1: the user knows better than the check.
	Force bool
	// Initrd is the inspected OS initrd; nil when the boot entry has none
	// or when Inspect failed (InspectErr).
	Initrd *Initrd
	// InspectErr is why Inspect could not read the entry's initrd.
	InspectErr error
	// Dialect, when its Generator is known, replaces the detected one (a
	// custom initrd that speaks a generator's dialect without looking
	// like it). It also stands for an initrd that was not inspected.
	Dialect Dialect
	// NICModule, KernelVersion and ExtraBuiltin are the Requirements of
	// the initrd check (Initrd.Check).
	NICModule     string
	KernelVersion string
	ExtraBuiltin  []string
	// CHAP: the session carries CHAP secrets, which the command line would
	// show in /proc/cmdline.
	CHAP bool
	// Kernel is what the OS kernel's build configuration says about taking
	// a table from the initrd; the zero value (unknown) accepts it.
	Kernel KernelSupport
	// SecureBoot is the machine's Secure Boot state.
	SecureBoot bool
	// Carry says whether the carry-in hand-off (ModeCarry) can work for
	// this OS; the zero value says it cannot, for no stated reason.
	Carry CarryCheck
	// VLAN is the boot NIC's 802.1Q VLAN id, 0 when untagged.
	VLAN uint16
	// Lockdown is lunboot's own kernel's lockdown level (ReadLockdown):
	// a locked-down firmware kernel means Secure Boot (or lockdown= on
	// its command line, which stands in for it), and the OS kernel booted
	// on that machine locks down too and ignores tables from its initrd.
	// "" is unknown, taken as not locked down.
	Lockdown string
	// OSLockdown is lockdown= on the OS command line (the entry's plus
	// lunboot.append=): that kernel ignores tables from its initrd.
	OSLockdown string
}

// CarryCheck is whether lunboot can carry its initiator into the OS: a
// hook for the initrd's generator, and the OS kernel's NIC driver and nbd
// module found in its module tree on the LUN (PlanCarry).
type CarryCheck struct {
	OK bool
	// Why says what is missing when not OK; Fix what the operator can do.
	Why, Fix string
}

// Decision is Decide's answer.
type Decision struct {
	// Mode is the hand-off to use: ModeCmdline, ModeIBFT or ModeBoth.
	Mode Mode
	// Capability is the initrd check's verdict; its Dialect is the one the
	// command line is written in.
	Capability *Capability
	// Reason says in one line which rule chose Mode.
	Reason string
	// Warnings are lines for the console about an override that lets the
	// boot go on (lunboot.force=1); Notes are the check's and the mode's
	// remarks. Neither holds secrets.
	Warnings []string
	Notes    []string
}

// RefusedError is Decide's error: the hand-off cannot work as configured.
// Fix says what the operator can do about it.
type RefusedError struct {
	Err error
	Fix string
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// ErrNoInitrd is matched by errors.Is when the boot entry has no initrd.
var ErrNoInitrd = errors.New("the boot entry has no initrd, so the OS cannot log in to its iSCSI root")

// ErrVLANUnsupported is matched by errors.Is when the boot NIC is on a VLAN
// and the OS initrd cannot configure one.
var ErrVLANUnsupported = errors.New("handoff: " + errVLANInitramfsTools)

// Fixes of the refusals.
const (
	fixForceUninspected = "boot with lunboot.force=1 to kexec without the check"
	fixNoInitrd         = "give the entry an initrd built with iSCSI support, or boot with lunboot.force=1"
	fixNotReady         = "rebuild the OS initrd with iSCSI support (see above), or boot with lunboot.force=1 to kexec anyway"
	fixCarryNoInitrd    = "carry-in appends to the entry's initrd: give the entry one (any initramfs-tools initrd), or use another lunboot.handoff="
	fixVLAN             = "boot this OS from an untagged (access) switch port, or build its initrd with dracut (network-legacy or NetworkManager), which configures VLANs; lunboot.force=1 does not help, since nothing in the initrd can tag the traffic, and the carry-in hand-off does not configure VLANs yet"
	errCarryVLAN        = "the boot NIC is on a VLAN, and carry-in does not configure VLANs yet (the carried daemon brings the NIC up untagged)"
)

// Decide chooses the hand-off from the facts. The rules apply in this
// order, the first that matches deciding (docs/handoff.md, "How lunboot
// decides", holds the same table):
//
//  1. The initrd could not be read: refuse, unless Force; then speak the
//     Dialect given, or dracut's, unverified.
//  2. The entry has no initrd: refuse, unless Force or a Dialect is given;
//     then speak that Dialect, or dracut's, unverified.
//  3. The initrd is of unknown make and Force is set without a Dialect:
//     speak dracut's dialect, the one most initrds understand.
//  4. The initrd lacks a required item (Initrd.Check, for the requested
//     mode): refuse, unless Force; then note each overridden item.
//     4b. The boot NIC is on a VLAN and the initrd is initramfs-tools':
//     refuse, Force or not (klibc ipconfig and iscsistart -N create no
//     VLAN interface).
//  5. The mode (resolveMode): an explicit lunboot.handoff= is kept or
//     refused when it cannot work; auto picks both without CHAP and ibft
//     with CHAP when the OS takes the table, cmdline when it does not —
//     except with CHAP when the OS ignores the table because it runs
//     locked down (Secure Boot, lunboot's own lockdown, or lockdown= on
//     the OS command line): that is refused (ErrLockdownSecrets) rather
//     than putting the secrets in /proc/cmdline, unless cmdline is asked
//     for.
//
// lunboot.handoff=carry skips rules 1–5: it needs an inspected initrd to
// append to and Carry.OK, and is refused otherwise; on a VLAN carry-in
// is never OK (the carried daemon does not tag its traffic yet). Under auto, rule 4
// becomes carry instead of a refusal when Carry.OK and Force is not set
// (lunboot.force=1 keeps the old meaning: kexec anyway, unverified).
//
// The Decision is returned with an error too when the initrd check ran, so
// that the caller can print its report; the error is a *RefusedError.
func Decide(f Facts) (*Decision, error) {
	if f.VLAN != 0 && f.Carry.OK {
		// The carried daemon brings the NIC up by its MAC, untagged, and
		// carries no 8021q: on a trunk port it would never reach the
		// target. Until it configures VLANs, carry-in cannot work there,
		// asked for or chosen by auto (rule 4b then refuses).
		f.Carry = CarryCheck{Why: errCarryVLAN, Fix: fixVLAN}
	}
	if f.Requested == ModeCarry {
		return decideCarry(f)
	}
	d := &Decision{}
	dialect := f.Dialect
	switch {
	case f.Initrd == nil && f.InspectErr != nil: // rule 1
		if !f.Force {
			return nil, &RefusedError{Err: fmt.Errorf("inspecting the OS initrd: %w", f.InspectErr), Fix: fixForceUninspected}
		}
		d.Warnings = append(d.Warnings, fmt.Sprintf("OS initrd not inspected (%v); lunboot.force=1 goes on", f.InspectErr))
		if dialect.Generator == GeneratorUnknown {
			dialect = Dialect{Generator: GeneratorDracut}
		}
	case f.Initrd == nil: // rule 2
		if dialect.Generator == GeneratorUnknown {
			if !f.Force {
				return nil, &RefusedError{Err: ErrNoInitrd, Fix: fixNoInitrd}
			}
			dialect = Dialect{Generator: GeneratorDracut}
		}
	case f.Initrd.Generator == GeneratorUnknown && f.Force && dialect.Generator == GeneratorUnknown: // rule 3
		d.Warnings = append(d.Warnings, "OS initrd of unknown make; lunboot.force=1 hands off in dracut's dialect")
		dialect = Dialect{Generator: GeneratorDracut}
	}

	// Rule 4.
	if f.Initrd != nil {
		d.Capability = f.Initrd.Check(Requirements{
			NICModule:     f.NICModule,
			KernelVersion: f.KernelVersion,
			ExtraBuiltin:  f.ExtraBuiltin,
			Mode:          f.Requested,
			Dialect:       dialect,
			VLAN:          f.VLAN,
		})
	} else {
		d.Capability = &Capability{Dialect: dialect, IBFT: true,
			Notes: []string{"the OS initrd was not inspected: its iSCSI support is not verified"}}
	}
	d.Notes = append(d.Notes, d.Capability.Notes...)
	if err := d.Capability.Err(); err != nil {
		if !f.Force && f.Requested == ModeAuto && f.Carry.OK && f.Initrd != nil {
			var miss []string
			for _, it := range d.Capability.Missing() {
				miss = append(miss, it.Name)
			}
			d.Mode = ModeCarry
			d.Reason = "auto: the OS initrd cannot log in (missing " + strings.Join(miss, ", ") + "), lunboot carries its initiator in"
			d.Notes = append(d.Notes, "lunboot.force=1 turns the automatic carry-in off; lunboot.handoff=carry asks for it")
			return d, nil
		}
		if !f.Force {
			if f.Requested == ModeAuto && f.Carry.Why != "" {
				note := "carry-in cannot work either: " + f.Carry.Why
				if f.Carry.Fix != "" {
					note += "; for carry-in: " + f.Carry.Fix
				}
				d.Notes = append(d.Notes, note)
			}
			return d, &RefusedError{Err: err, Fix: fixNotReady}
		}
		for _, it := range d.Capability.Missing() {
			d.Notes = append(d.Notes, "check overridden: missing "+it.Name)
		}
	}

	// Rule 4b: a VLAN the initrd cannot configure. Not even Force
	// overrides it: the OS would wait for a network that never comes.
	if f.VLAN != 0 && d.Capability.Dialect.Generator == GeneratorInitramfsTools {
		return d, &RefusedError{Err: ErrVLANUnsupported, Fix: fixVLAN}
	}

	// Rule 5.
	ok, why := f.Kernel.TableAccepted(f.SecureBoot)
	locked := !ok && f.SecureBoot && f.Kernel.LockdownInSecureBoot == Yes || !ok && f.Kernel.ForcedLockdown == Yes
	switch {
	case !ok:
	case LockedDown(f.Lockdown):
		ok, why, locked = false, fmt.Sprintf("lunboot's own kernel runs locked down (%s, as under Secure Boot), so the OS kernel will too, and it ignores tables from its initrd", f.Lockdown), true
	case LockedDown(f.OSLockdown):
		ok, why, locked = false, fmt.Sprintf("the OS command line has lockdown=%s, and a locked-down kernel ignores tables from its initrd", f.OSLockdown), true
	}
	if LockedDown(f.Lockdown) {
		d.Notes = append(d.Notes, fmt.Sprintf("kernel lockdown: lunboot's kernel runs locked down (%s); the OS kernel must be signed, and it will ignore an iBFT from its initrd", f.Lockdown))
	}
	if locked && f.CHAP && f.Requested == ModeAuto {
		return d, &RefusedError{Err: fmt.Errorf("%w (%s)", ErrLockdownSecrets, why), Fix: advice.LockdownCHAP()}
	}
	mode, reason, notes, err := resolveMode(f.Requested, f.CHAP, d.Capability, ok, why)
	if err != nil {
		return d, &RefusedError{Err: err, Fix: fixNotReady}
	}
	d.Mode, d.Reason = mode, reason
	d.Notes = append(d.Notes, notes...)
	return d, nil
}

// resolveMode is rule 5 of Decide: the requested mode turned into the one
// to use, given the session (CHAP or not), what the initrd can do and
// whether the OS kernel takes the table. It returns the reason and notes
// for the boot log, and an error when an explicitly requested mode cannot
// work.
func resolveMode(requested Mode, chap bool, c *Capability, tableOK bool, tableWhy string) (Mode, string, []string, error) {
	usable, why := tableOK, tableWhy
	if usable && c != nil && !c.IBFT {
		usable, why = false, "the OS initrd lacks the iscsi_ibft module"
	}
	secretsNote := "CHAP secrets are on the OS command line (readable in /proc/cmdline)"
	switch requested {
	case ModeCmdline:
		if chap {
			return ModeCmdline, "lunboot.handoff=cmdline", []string{secretsNote}, nil
		}
		return ModeCmdline, "lunboot.handoff=cmdline", nil, nil
	case ModeIBFT:
		if !usable {
			return 0, "", nil, fmt.Errorf("handoff: lunboot.handoff=ibft cannot work: %s; use lunboot.handoff=cmdline", why)
		}
		return ModeIBFT, "lunboot.handoff=ibft", nil, nil
	case ModeBoth:
		if chap && !usable {
			return 0, "", nil, fmt.Errorf("handoff: lunboot.handoff=both keeps CHAP secrets in the iBFT, which cannot work: %s; use lunboot.handoff=cmdline", why)
		}
		var notes []string
		if !usable {
			notes = append(notes, "the iBFT will be ignored: "+why)
		}
		return ModeBoth, "lunboot.handoff=both", notes, nil
	}
	switch {
	case !chap && usable:
		return ModeBoth, "auto: no CHAP, and the OS takes an iBFT", nil, nil
	case !chap:
		return ModeCmdline, "auto: the OS cannot take an iBFT", []string{"no iBFT: " + why}, nil
	case usable:
		return ModeIBFT, "auto: CHAP secrets stay in the iBFT", []string{"CHAP: parameters go in the iBFT, not on the command line"}, nil
	}
	return ModeCmdline, "auto: CHAP, but the OS cannot take an iBFT", []string{"no iBFT: " + why, secretsNote}, nil
}

// decideCarry is Decide for lunboot.handoff=carry: the initrd must have
// been read (the carry cpio is appended to it) and Carry.OK. The initrd's
// own iSCSI support is not checked; its report is kept for the notes.
func decideCarry(f Facts) (*Decision, error) {
	switch {
	case f.Initrd == nil && f.InspectErr != nil:
		return nil, &RefusedError{Err: fmt.Errorf("lunboot.handoff=carry: inspecting the OS initrd: %w", f.InspectErr), Fix: "carry-in needs an OS initrd lunboot can read; use another lunboot.handoff="}
	case f.Initrd == nil:
		return nil, &RefusedError{Err: errors.New("lunboot.handoff=carry: the boot entry has no initrd to carry lunboot into"), Fix: fixCarryNoInitrd}
	case !f.Carry.OK:
		why := cmpOr(f.Carry.Why, "carry-in is not possible for this OS")
		return nil, &RefusedError{Err: errors.New("lunboot.handoff=carry cannot work: " + why), Fix: cmpOr(f.Carry.Fix, "use another lunboot.handoff=")}
	}
	dialect := f.Dialect
	if dialect.Generator == GeneratorUnknown {
		dialect = f.Initrd.Dialect()
	}
	return &Decision{
		Mode:       ModeCarry,
		Reason:     "lunboot.handoff=carry",
		Capability: &Capability{Dialect: dialect},
	}, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
