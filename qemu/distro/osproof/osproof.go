// Package osproof is the booted OS's account of how it came up: after
// lunboot kexecs a distribution, the distribution's own initrd must log in to
// the iSCSI target again and mount its root from the LUN. The lab's Debian
// systems (package qemu/distro) run a small program at the end of their boot
// that collects the evidence — the kernel command line, the iSCSI sessions
// and connections the kernel holds, which block device carries /, its udev
// by-path name, the iBFT the kernel found, and systemd's state — and prints
// it on the serial console as one line:
//
//	LUNBOOT-OS-PROOF {"v":1,"cmdline":"…","iscsi_sessions":[…],…}
//
// Tests find that line in the console output (Pattern, Find), decode it
// (Parse) and compare it with what lunboot was told to hand over (Verify).
//
// Sources for the sysfs layout: Linux drivers/scsi/scsi_transport_iscsi.c
// (iscsi_session and iscsi_connection classes, "session%u" and
// "connection%d:%u"), drivers/firmware/iscsi_ibft.c (/sys/firmware/ibft),
// and systemd's udev builtin path_id (udev-builtin-path_id.c
// handle_scsi_iscsi: "ip-<address>:<port>-iscsi-<target>-lun-<n>").
package osproof

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/cmdline"
)

// Marker starts the proof line on the console.
const Marker = "LUNBOOT-OS-PROOF "

// Version is the proof format's version, the "v" field.
const Version = 1

// MaxLine bounds the proof line Parse accepts. A real one is a few KiB; the
// bound keeps a garbled console from making the decoder allocate without
// limit.
const MaxLine = 256 << 10

// PoweroffArg on the kernel command line makes the proof program power the
// machine off once it has printed the proof, so a test's QEMU ends. The
// shutdown is the distribution's own, with every unit stopped (a dracut
// system spends about a minute of TCG time unpacking its initrd into
// /run/initramfs for the final pivot).
const PoweroffArg = "lunboot.proof.poweroff=1"

// PoweroffForceArg powers off without stopping the units (systemctl
// poweroff --force: processes killed, file systems unmounted or remounted
// read-only, then off), for tests that boot many times and need only the
// proof.
const PoweroffForceArg = "lunboot.proof.poweroff=force"

// Pattern matches a whole proof line in console output; its first group is
// the JSON object.
var Pattern = regexp.MustCompile(`LUNBOOT-OS-PROOF (\{[^\n]*\})[ \t]*\n`)

// ErrNoProof is returned by Find when the console holds no proof line.
var ErrNoProof = errors.New("osproof: no " + strings.TrimSpace(Marker) + " line")

// Proof is what the booted OS reports.
type Proof struct {
	// V is the format version (Version).
	V int `json:"v"`
	// Kernel is the running kernel's release (uname -r).
	Kernel string `json:"kernel,omitempty"`
	// OS is PRETTY_NAME from /etc/os-release.
	OS string `json:"os,omitempty"`
	// Cmdline is /proc/cmdline: what the OS kernel was booted with.
	Cmdline string `json:"cmdline"`
	// UptimeSeconds is /proc/uptime's first field when the proof was
	// collected: the guest's own measure of how long the boot took.
	UptimeSeconds float64 `json:"uptime_s"`
	// Sessions are the kernel's iSCSI sessions (/sys/class/iscsi_session).
	Sessions []Session `json:"iscsi_sessions"`
	// Root describes the block device mounted at /.
	Root Root `json:"root"`
	// IBFT holds every attribute under /sys/firmware/ibft; nil when the
	// kernel exposes no iBFT (encoded as the string "absent").
	IBFT IBFT `json:"ibft"`
	// EFI is what the kernel shows of the UEFI firmware; nil when the OS
	// did not boot with EFI (no /sys/firmware/efi).
	EFI *EFI `json:"efi,omitempty"`
	// Systemd is the service manager's view of the boot.
	Systemd Systemd `json:"systemd"`
	// Net lists the network interfaces and their addresses.
	Net []Interface `json:"net,omitempty"`
	// Errors lists what could not be collected, so that a proof is printed
	// even when part of the evidence is missing.
	Errors []string `json:"errors,omitempty"`
}

// Session is one iSCSI session of the kernel's iSCSI transport class.
type Session struct {
	// Name is the sysfs name, "session<N>".
	Name          string `json:"name"`
	TargetName    string `json:"targetname"`
	InitiatorName string `json:"initiatorname"`
	// State is the session's sysfs state ("LOGGED_IN").
	State string `json:"state,omitempty"`
	// Connections are the session's connections ("connection<N>:<cid>").
	Connections []Connection `json:"connections"`
	// Disks are the SCSI disks reached through the session, by LUN.
	Disks []SessionDisk `json:"disks,omitempty"`
}

// Connection is one iSCSI connection: persistent_address and
// persistent_port are the portal the initiator logged in to (they survive a
// reconnect to a redirected address), address and port the current ones.
type Connection struct {
	Name              string `json:"name"`
	PersistentAddress string `json:"persistent_address"`
	PersistentPort    int    `json:"persistent_port"`
	Address           string `json:"address,omitempty"`
	Port              int    `json:"port,omitempty"`
}

// SessionDisk is a block device on one of a session's LUNs.
type SessionDisk struct {
	// Device is the kernel name ("sda").
	Device string `json:"device"`
	// LUN is the Linux LUN number (the L of H:C:T:L).
	LUN int `json:"lun"`
}

// Root is the root file system's device.
type Root struct {
	// Source and FSType come from /proc/self/mountinfo ("/dev/sda2",
	// "ext4"); MajMin is the device number there ("8:2").
	Source string `json:"source"`
	FSType string `json:"fstype"`
	MajMin string `json:"majmin"`
	// Device is the kernel name of the block device ("sda2") and Disk the
	// whole disk it belongs to ("sda"; equal to Device when unpartitioned).
	Device string `json:"device"`
	Disk   string `json:"disk"`
	// SysPath is the device's resolved sysfs path: for a disk on iSCSI it
	// runs through the session ("/sys/devices/platform/host2/session1/
	// target2:0:0/2:0:0:1/block/sda/sda2").
	SysPath string `json:"syspath"`
	// Session is the iSCSI session the device hangs off ("session1"),
	// empty when the root is not on iSCSI.
	Session string `json:"session,omitempty"`
	// LUN is the Linux LUN of the disk, -1 when not a SCSI device.
	LUN int `json:"lun"`
	// ByPath are the /dev/disk/by-path names of Device, and DiskByPath
	// those of Disk ("ip-10.1.2.1:3260-iscsi-iqn…-lun-1").
	ByPath     []string `json:"by_path"`
	DiskByPath []string `json:"disk_by_path,omitempty"`
}

// Systemd is the state of the boot as systemd reports it.
type Systemd struct {
	// State is `systemctl is-system-running` after waiting for the boot to
	// finish: "running", or "degraded" when some unit failed.
	State string `json:"state"`
	// MultiUser is `systemctl is-active multi-user.target` ("active").
	MultiUser string `json:"multi_user"`
	// Failed lists the failed units.
	Failed []string `json:"failed,omitempty"`
}

// EFI is the OS kernel's view of the UEFI firmware: /sys/firmware/efi
// exists when the kernel booted with EFI, and efivarfs
// (/sys/firmware/efi/efivars) is readable only when the runtime services
// work — after a kexec, only when the previous kernel handed over its
// runtime mapping (arch/x86/kernel/kexec-bzimage64.c, setup_efi_state).
type EFI struct {
	// PlatformSize is /sys/firmware/efi/fw_platform_size: the firmware's
	// word size in bits ("64").
	PlatformSize string `json:"fw_platform_size,omitempty"`
	// Vars is how many variables efivarfs lists.
	Vars int `json:"efivars"`
	// VarRead names a variable read through the runtime services, with
	// its size ("BootCurrent-8be4df61-…: 6 bytes"); empty when none could
	// be read (Errors says why).
	VarRead string `json:"efivar_read,omitempty"`
}

// Interface is a network interface and its addresses.
type Interface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	Addrs []string `json:"addrs,omitempty"`
}

// IBFT maps each attribute file under /sys/firmware/ibft, by its path
// relative to that folder ("initiator/initiator-name", "target0/ip-addr"),
// to its contents without the trailing newline. A nil IBFT means the kernel
// exposes none; it is encoded as the JSON string "absent".
type IBFT map[string]string

// absent is how a missing iBFT is written.
const absent = "absent"

// MarshalJSON writes "absent" for a nil table.
func (t IBFT) MarshalJSON() ([]byte, error) {
	if t == nil {
		return json.Marshal(absent)
	}
	return json.Marshal(map[string]string(t))
}

// UnmarshalJSON reads "absent" or an object of strings.
func (t *IBFT) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != absent {
			return fmt.Errorf("ibft: %q is neither an object nor %q", s, absent)
		}
		*t = nil
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("ibft: %w", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	*t = m
	return nil
}

// Line formats the proof as the console line, without a line ending.
func (p *Proof) Line() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("osproof: encode: %w", err)
	}
	return Marker + string(b), nil
}

// Parse decodes a proof line: the marker followed by the JSON object, or the
// object alone. Surrounding white space is ignored.
func Parse(line string) (*Proof, error) {
	if len(line) > MaxLine {
		return nil, fmt.Errorf("osproof: line of %d bytes exceeds %d", len(line), MaxLine)
	}
	s := strings.TrimSpace(line)
	if i := strings.Index(s, strings.TrimSpace(Marker)); i >= 0 {
		s = strings.TrimSpace(s[i+len(strings.TrimSpace(Marker)):])
	}
	if !strings.HasPrefix(s, "{") {
		return nil, fmt.Errorf("osproof: no JSON object in %.60q", line)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var p Proof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("osproof: decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("osproof: data after the JSON object")
	}
	if p.V != Version {
		return nil, fmt.Errorf("osproof: format version %d, want %d", p.V, Version)
	}
	return &p, nil
}

// Find returns the last proof line in console output. Console output may be
// interleaved with kernel messages; only a line that decodes counts.
func Find(console string) (*Proof, error) {
	ms := Pattern.FindAllStringSubmatch(console, -1)
	var lastErr error
	for i := len(ms) - 1; i >= 0; i-- {
		p, err := Parse(ms[i][1])
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w that decodes: %v", ErrNoProof, lastErr)
	}
	return nil, ErrNoProof
}

// Arg returns the value of the last kernel command-line argument named key
// and whether it is there (a bare flag has an empty value). The line is
// split as the kernel and the hand-off split it (pkg/cmdline).
func (p *Proof) Arg(key string) (string, bool) {
	val, found := "", false
	for _, a := range cmdline.Split(p.Cmdline) {
		if a.Key == key {
			val, found = a.Value, true
		}
	}
	return val, found
}

// Session returns the session named name ("session1"), or nil.
func (p *Proof) Session(name string) *Session {
	for i := range p.Sessions {
		if p.Sessions[i].Name == name {
			return &p.Sessions[i]
		}
	}
	return nil
}

// RootSession returns the iSCSI session that carries the root file system,
// or an error saying why the root is not on iSCSI.
func (p *Proof) RootSession() (*Session, error) {
	if p.Root.Session == "" {
		return nil, fmt.Errorf("root %s (%s, sysfs %s) is not on an iSCSI session", p.Root.Source, p.Root.Device, p.Root.SysPath)
	}
	s := p.Session(p.Root.Session)
	if s == nil {
		return nil, fmt.Errorf("root is on %s, which /sys/class/iscsi_session does not list", p.Root.Session)
	}
	return s, nil
}

// Expect is what a test handed over and wants the OS to have used.
type Expect struct {
	// Target is the target IQN and Initiator the initiator IQN; empty
	// skips the check.
	Target    string
	Initiator string
	// Portal is the target's address and port; the zero value skips it.
	Portal netip.AddrPort
	// LUN is the Linux LUN of the root disk; negative skips it.
	LUN int
	// RootUUID, when set, must be the root= the OS booted with.
	RootUUID string
	// IBFT requires (true) or forbids (false) an iBFT when set.
	IBFT *bool
	// States are the acceptable systemd states (default "running").
	States []string
	// EFI requires the EFI runtime services: /sys/firmware/efi present
	// and an EFI variable read through efivarfs.
	EFI bool
}

// ByPathName is udev's by-path name for LUN lun of target at portal
// (path_id's handle_scsi_iscsi): "ip-<addr>:<port>-iscsi-<target>-lun-<lun>".
func ByPathName(portal netip.AddrPort, target string, lun int) string {
	return "ip-" + portal.Addr().String() + ":" + strconv.Itoa(int(portal.Port())) + "-iscsi-" + target + "-lun-" + strconv.Itoa(lun)
}

// Verify checks the proof against what was handed over: the root is on an
// iSCSI session to the expected target, from the expected initiator, through
// the expected portal and LUN; udev named it accordingly; systemd reached
// multi-user in an accepted state. It reports every mismatch at once.
func (p *Proof) Verify(want Expect) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	s, err := p.RootSession()
	if err != nil {
		bad("%v", err)
	} else {
		if want.Target != "" && s.TargetName != want.Target {
			bad("%s targetname = %q, want %q", s.Name, s.TargetName, want.Target)
		}
		if want.Initiator != "" && s.InitiatorName != want.Initiator {
			bad("%s initiatorname = %q, want %q", s.Name, s.InitiatorName, want.Initiator)
		}
		if want.Portal.IsValid() {
			found := false
			for _, c := range s.Connections {
				a, err := netip.ParseAddr(c.PersistentAddress)
				if err == nil && a.Unmap() == want.Portal.Addr().Unmap() && c.PersistentPort == int(want.Portal.Port()) {
					found = true
				}
			}
			if !found {
				bad("%s has no connection to %s (connections %+v)", s.Name, want.Portal, s.Connections)
			}
		}
		if want.LUN >= 0 && p.Root.LUN != want.LUN {
			bad("root disk LUN = %d, want %d", p.Root.LUN, want.LUN)
		}
		if want.Portal.IsValid() && want.Target != "" && want.LUN >= 0 {
			name := ByPathName(want.Portal, want.Target, want.LUN)
			found := false
			for _, l := range append(append([]string(nil), p.Root.ByPath...), p.Root.DiskByPath...) {
				if l == name || strings.HasPrefix(l, name+"-part") {
					found = true
				}
			}
			if !found {
				bad("no /dev/disk/by-path link %s… for the root (have %v, disk %v)", name, p.Root.ByPath, p.Root.DiskByPath)
			}
		}
	}
	if want.RootUUID != "" {
		if v, _ := p.Arg("root"); !strings.EqualFold(v, "UUID="+want.RootUUID) {
			bad("cmdline root=%s, want UUID=%s", v, want.RootUUID)
		}
	}
	if want.IBFT != nil && *want.IBFT != (p.IBFT != nil) {
		if *want.IBFT {
			bad("no iBFT under /sys/firmware/ibft")
		} else {
			bad("unexpected iBFT under /sys/firmware/ibft (%d attributes)", len(p.IBFT))
		}
	}
	if want.EFI {
		switch {
		case p.EFI == nil:
			bad("no /sys/firmware/efi: the OS kernel did not start with EFI")
		case p.EFI.VarRead == "":
			bad("/sys/firmware/efi present (%d efivars listed) but no EFI variable readable: the runtime services do not work", p.EFI.Vars)
		}
	}
	if p.Systemd.MultiUser != "active" {
		bad("multi-user.target is %q, want active", p.Systemd.MultiUser)
	}
	states := want.States
	if len(states) == 0 {
		states = []string{"running"}
	}
	ok := false
	for _, st := range states {
		ok = ok || p.Systemd.State == st
	}
	if !ok {
		bad("systemd state %q (failed units %v), want one of %v", p.Systemd.State, p.Systemd.Failed, states)
	}
	if len(errs) > 0 {
		return errors.New("osproof: " + strings.Join(errs, "; "))
	}
	return nil
}
