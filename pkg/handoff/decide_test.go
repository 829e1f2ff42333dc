package handoff

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDecide walks the decision table of docs/handoff.md, rule by rule.
func TestDecide(t *testing.T) {
	deb := inspectBytes(t, cpioOf(debianFiles()...))
	debNoIBFT := inspectBytes(t, cpioOf(without(debianFiles(), "iscsi_ibft")...))
	debBare := inspectBytes(t, cpioOf(without(debianFiles(), "iscsi")...))
	custom := inspectBytes(t, cpioOf(append(without(debianFiles(), "conf/", "scripts/functions"), file("init", "#!/bin/sh\n"))...))
	unreadable := errors.New("bad magic")
	lockdown := KernelSupport{TableUpgrade: Yes, IBFTDriver: Yes, ForcedLockdown: No, LockdownInSecureBoot: Yes}
	noUpgrade := KernelSupport{TableUpgrade: No, IBFTDriver: Yes}
	carryOK := CarryCheck{OK: true}
	dracutBare := inspectBytes(t, cpioOf(without(dracutFiles(), "iscsi")...))
	carryNo := CarryCheck{Why: "no lib/modules/6.1.0-1-amd64/modules.dep on the LUN", Fix: "install the modules"}

	for _, tt := range []struct {
		name  string
		facts Facts
		// Either a decision …
		mode    Mode
		gen     Generator
		reason  string
		warning string
		note    string
		// … or a refusal.
		err error  // matched with errors.Is
		fix string // in the RefusedError's Fix
	}{
		// Rule 1: an initrd Inspect could not read.
		{name: "unreadable", facts: Facts{InspectErr: unreadable}, err: unreadable, fix: "lunboot.force=1"},
		{name: "unreadable, force", facts: Facts{InspectErr: unreadable, Force: true},
			mode: ModeBoth, gen: GeneratorDracut, warning: "OS initrd not inspected (bad magic)", note: "not verified"},
		{name: "unreadable, force, dialect given", facts: Facts{InspectErr: unreadable, Force: true, Dialect: debian},
			mode: ModeBoth, gen: GeneratorInitramfsTools, warning: "not inspected"},
		// Rule 2: no initrd in the entry.
		{name: "no initrd", facts: Facts{}, err: ErrNoInitrd, fix: "give the entry an initrd"},
		{name: "no initrd, force", facts: Facts{Force: true}, mode: ModeBoth, gen: GeneratorDracut, note: "not verified"},
		{name: "no initrd, dialect given", facts: Facts{Dialect: debian}, mode: ModeBoth, gen: GeneratorInitramfsTools},
		// Rule 3: an initrd of unknown make.
		{name: "unknown make", facts: Facts{Initrd: custom}, err: ErrNotReady, fix: "rebuild the OS initrd"},
		{name: "unknown make, force", facts: Facts{Initrd: custom, Force: true},
			mode: ModeBoth, gen: GeneratorDracut, warning: "unknown make; lunboot.force=1 hands off in dracut's dialect", note: "check overridden: missing iscsiadm"},
		{name: "unknown make, force, dialect given", facts: Facts{Initrd: custom, Force: true, Dialect: debian},
			mode: ModeBoth, gen: GeneratorInitramfsTools},
		// Rule 4: the initrd check.
		{name: "no open-iscsi", facts: Facts{Initrd: debBare}, err: ErrNotReady, fix: "lunboot.force=1 to kexec anyway"},
		{name: "no open-iscsi, force", facts: Facts{Initrd: debBare, Force: true},
			mode: ModeCmdline, gen: GeneratorInitramfsTools, note: "check overridden: missing iscsistart"},
		{name: "NIC driver missing", facts: Facts{Initrd: deb, NICModule: "e1000e"}, err: ErrNotReady},
		{name: "NIC driver built in", facts: Facts{Initrd: deb, NICModule: "e1000e", ExtraBuiltin: []string{"e1000e"}},
			mode: ModeBoth, gen: GeneratorInitramfsTools},
		{name: "ibft requested, no iscsi_ibft", facts: Facts{Initrd: debNoIBFT, Requested: ModeIBFT}, err: ErrNotReady},
		{name: "ibft requested, no iscsi_ibft, force", facts: Facts{Initrd: debNoIBFT, Requested: ModeIBFT, Force: true}, fix: "rebuild"},
		// Rule 4b: a VLAN the initrd cannot configure; Force does not help.
		{name: "vlan, initramfs-tools", facts: Facts{Initrd: deb, VLAN: 100}, err: ErrVLANUnsupported, fix: "carry-in"},
		{name: "vlan, initramfs-tools, force", facts: Facts{Initrd: deb, VLAN: 100, Force: true}, err: ErrVLANUnsupported, fix: "untagged (access) switch port"},
		{name: "vlan, dracut", facts: Facts{Initrd: inspectBytes(t, cpioOf(dracutFiles()...)), VLAN: 100}, mode: ModeBoth, gen: GeneratorDracut},
		{name: "vlan, dracut without 8021q", facts: Facts{Initrd: inspectBytes(t, cpioOf(without(dracutFiles(), "8021q")...)), VLAN: 100}, err: ErrNotReady, fix: "rebuild"},
		// Rule 5: the mode.
		{name: "auto", facts: Facts{Initrd: deb}, mode: ModeBoth, gen: GeneratorInitramfsTools, reason: "auto: no CHAP"},
		{name: "auto, CHAP", facts: Facts{Initrd: deb, CHAP: true}, mode: ModeIBFT, reason: "CHAP secrets stay in the iBFT", note: "not on the command line"},
		{name: "auto, no iscsi_ibft", facts: Facts{Initrd: debNoIBFT}, mode: ModeCmdline, note: "lacks the iscsi_ibft module"},
		{name: "auto, CHAP, Secure Boot lockdown", facts: Facts{Initrd: deb, CHAP: true, Kernel: lockdown, SecureBoot: true},
			err: ErrLockdownSecrets, fix: "lunboot.handoff=cmdline"},
		{name: "auto, Secure Boot lockdown", facts: Facts{Initrd: deb, Kernel: lockdown, SecureBoot: true},
			mode: ModeCmdline, reason: "cannot take an iBFT", note: "Secure Boot is on"},
		// lunboot's own lockdown, or lockdown= for the OS.
		{name: "auto, own lockdown", facts: Facts{Initrd: deb, Lockdown: LockdownIntegrity},
			mode: ModeCmdline, reason: "cannot take an iBFT", note: "lunboot's own kernel runs locked down (integrity"},
		{name: "auto, own lockdown none", facts: Facts{Initrd: deb, Lockdown: LockdownNone}, mode: ModeBoth},
		{name: "auto, OS lockdown=", facts: Facts{Initrd: deb, OSLockdown: LockdownConfidentiality},
			mode: ModeCmdline, note: "lockdown=confidentiality"},
		{name: "auto, CHAP, own lockdown", facts: Facts{Initrd: deb, CHAP: true, Lockdown: LockdownIntegrity},
			err: ErrLockdownSecrets, fix: "lunboot.handoff=cmdline"},
		{name: "auto, CHAP, OS lockdown=", facts: Facts{Initrd: deb, CHAP: true, OSLockdown: LockdownIntegrity},
			err: ErrLockdownSecrets, fix: "/proc/cmdline"},
		{name: "cmdline, CHAP, own lockdown", facts: Facts{Initrd: deb, CHAP: true, Lockdown: LockdownIntegrity, Requested: ModeCmdline},
			mode: ModeCmdline, reason: "lunboot.handoff=cmdline", note: "/proc/cmdline"},
		{name: "ibft, own lockdown", facts: Facts{Initrd: deb, Lockdown: LockdownIntegrity, Requested: ModeIBFT}, fix: "rebuild"},
		{name: "auto, CHAP, no iscsi_ibft (not lockdown)", facts: Facts{Initrd: debNoIBFT, CHAP: true},
			mode: ModeCmdline, note: "/proc/cmdline"},
		{name: "auto, CHAP, lockdown config without Secure Boot", facts: Facts{Initrd: deb, CHAP: true, Kernel: lockdown},
			mode: ModeIBFT},
		{name: "cmdline, CHAP", facts: Facts{Initrd: deb, CHAP: true, Requested: ModeCmdline}, mode: ModeCmdline, reason: "lunboot.handoff=cmdline", note: "/proc/cmdline"},
		{name: "ibft", facts: Facts{Initrd: deb, Requested: ModeIBFT}, mode: ModeIBFT, reason: "lunboot.handoff=ibft"},
		{name: "ibft, no table upgrade", facts: Facts{Initrd: deb, Requested: ModeIBFT, Kernel: noUpgrade}, fix: "rebuild"},
		{name: "both, no table upgrade", facts: Facts{Initrd: deb, Requested: ModeBoth, Kernel: noUpgrade},
			mode: ModeBoth, note: "the iBFT will be ignored: the OS kernel is built without CONFIG_ACPI_TABLE_UPGRADE"},
		{name: "both, CHAP, no table upgrade", facts: Facts{Initrd: deb, Requested: ModeBoth, CHAP: true, Kernel: noUpgrade}, fix: "rebuild"},
		// Carry-in: auto turns a refusal into carry when carry can work.
		{name: "no open-iscsi, carry possible", facts: Facts{Initrd: debBare, Carry: carryOK},
			mode: ModeCarry, gen: GeneratorInitramfsTools, reason: "auto: the OS initrd cannot log in (missing open-iscsi boot script", note: "lunboot.force=1 turns the automatic carry-in off"},
		{name: "no open-iscsi, carry impossible", facts: Facts{Initrd: debBare, Carry: carryNo}, err: ErrNotReady, fix: "rebuild the OS initrd",
			note: "carry-in cannot work either: no lib/modules/6.1.0-1-amd64/modules.dep on the LUN; for carry-in: install the modules"},
		{name: "no open-iscsi, carry possible, force", facts: Facts{Initrd: debBare, Carry: carryOK, Force: true},
			mode: ModeCmdline, note: "check overridden: missing iscsistart"},
		{name: "no open-iscsi, carry possible, cmdline requested", facts: Facts{Initrd: debBare, Carry: carryOK, Requested: ModeCmdline}, err: ErrNotReady},
		{name: "dracut without iSCSI, carry possible", facts: Facts{Initrd: dracutBare, Carry: carryOK},
			mode: ModeCarry, gen: GeneratorDracut, reason: "auto: the OS initrd cannot log in (missing iscsiadm, iscsid, iscsi_tcp kernel module)", note: "lunboot.force=1 turns the automatic carry-in off"},
		{name: "dracut without iSCSI, carry impossible", facts: Facts{Initrd: dracutBare, Carry: carryNo}, err: ErrNotReady, note: "carry-in cannot work either: no lib/modules"},
		{name: "dracut without iSCSI, carry requested", facts: Facts{Initrd: dracutBare, Carry: carryOK, Requested: ModeCarry}, mode: ModeCarry, gen: GeneratorDracut, reason: "lunboot.handoff=carry"},
		{name: "open-iscsi, carry possible", facts: Facts{Initrd: deb, Carry: carryOK}, mode: ModeBoth, reason: "auto: no CHAP"},
		{name: "carry requested", facts: Facts{Initrd: deb, Carry: carryOK, Requested: ModeCarry}, mode: ModeCarry, gen: GeneratorInitramfsTools, reason: "lunboot.handoff=carry"},
		{name: "carry requested, impossible", facts: Facts{Initrd: debBare, Carry: carryNo, Requested: ModeCarry}, fix: "install the modules"},
		{name: "carry requested, no initrd", facts: Facts{Carry: carryOK, Requested: ModeCarry}, fix: "carry-in appends to the entry's initrd"},
		{name: "no open-iscsi, carry possible but VLAN", facts: Facts{Initrd: debBare, Carry: carryOK, VLAN: 100}, err: ErrNotReady, note: "carry-in cannot work either: the boot NIC is on a VLAN"},
		{name: "carry requested, VLAN", facts: Facts{Initrd: deb, Carry: carryOK, Requested: ModeCarry, VLAN: 100}, fix: "untagged (access) switch port"},
		{name: "carry requested, unreadable", facts: Facts{InspectErr: unreadable, Carry: carryOK, Requested: ModeCarry}, err: unreadable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decide(tt.facts)
			if tt.err != nil || tt.fix != "" {
				var re *RefusedError
				if !errors.As(err, &re) || tt.err != nil && !errors.Is(err, tt.err) || !strings.Contains(re.Fix, tt.fix) {
					t.Fatalf("Decide() = %+v, %v; want a RefusedError wrapping %v with a fix naming %q", d, err, tt.err, tt.fix)
				}
				if errors.Is(err, ErrNotReady) && (d == nil || d.Capability == nil) {
					t.Errorf("Decide() refused for missing items without the Capability to report them")
				}
				if tt.note != "" && (d == nil || !strings.Contains(strings.Join(d.Notes, "\n"), tt.note)) {
					t.Errorf("Decide() refused with decision %+v, want a note containing %q", d, tt.note)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide() error: %v", err)
			}
			if d.Mode != tt.mode {
				t.Errorf("Decide() mode = %v, want %v (reason %q)", d.Mode, tt.mode, d.Reason)
			}
			if d.Reason == "" || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide() reason = %q, want one containing %q", d.Reason, tt.reason)
			}
			if tt.gen != GeneratorUnknown && d.Capability.Dialect.Generator != tt.gen {
				t.Errorf("Decide() dialect = %v, want %v", d.Capability.Dialect, tt.gen)
			}
			warnings := strings.Join(d.Warnings, "\n")
			if tt.warning == "" && warnings != "" || !strings.Contains(warnings, tt.warning) {
				t.Errorf("Decide() warnings = %q, want %q", warnings, tt.warning)
			}
			if notes := strings.Join(d.Notes, "\n"); !strings.Contains(notes, tt.note) {
				t.Errorf("Decide() notes = %q, want one containing %q", notes, tt.note)
			}
		})
	}
}

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": LockdownNone,
		"none [integrity] confidentiality\n": LockdownIntegrity,
		"none integrity [confidentiality]":   LockdownConfidentiality,
	} {
		if got, err := ParseLockdown(in); err != nil || got != want {
			t.Errorf("ParseLockdown(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := ParseLockdown("none integrity"); err == nil {
		t.Errorf("ParseLockdown without brackets = %q, want an error", got)
	}
	dir := t.TempDir()
	if got, err := ReadLockdown(dir); err != nil || got != "" {
		t.Errorf("ReadLockdown(no securityfs) = %q, %v; want \"\", nil", got, err)
	}
	writeFile(t, filepath.Join(dir, "kernel/security/lockdown"), "none [integrity] confidentiality\n")
	if got, err := ReadLockdown(dir); err != nil || got != LockdownIntegrity {
		t.Errorf("ReadLockdown = %q, %v; want integrity", got, err)
	}
	if got := cmdlineLockdown("root=UUID=1 lockdown=integrity quiet"); got != LockdownIntegrity {
		t.Errorf("cmdlineLockdown = %q, want integrity", got)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
