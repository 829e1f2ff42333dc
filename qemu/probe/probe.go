// Package probe defines the lab's "probe OS": the small operating system the
// disk fixtures carry in place of a real distribution. Its /init
// (qemu/cmd/probe) reports what it was booted with — the kernel command line,
// everything /sys/firmware/ibft holds — and then proves that the hand-off it
// received is usable by logging in to the iSCSI target again with lunboot's
// own initiator, reading sector 0 and logging out, before powering off.
//
// This package holds what the guest and the host share: the console markers,
// the machine-readable Result printed on one line, and the parsers that turn
// a command line or an iBFT into hand-offs. It has no Linux-only code, so host
// tests decode results with it.
package probe

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Console markers. The start marker line is printed as soon as /init runs;
// the result line is the last thing printed before power-off.
const (
	StartMarker  = "LUNBOOT-PROBE-START"
	ResultMarker = "LUNBOOT-PROBE-RESULT"
	// LogPrefix starts the probe's human-readable progress lines.
	LogPrefix = "lunboot-probe:"
)

// StartPattern matches the start marker line; its first group is the
// fixture token (lunboot.fixture=) or empty.
var StartPattern = regexp.MustCompile(StartMarker + ` fixture=(\S*)[^\n]*\n`)

// ResultPattern matches a complete result line; its first group is the JSON.
var ResultPattern = regexp.MustCompile(ResultMarker + ` (\{[^\n]*\})\n`)

// ResultVersion is the version of the Result format.
const ResultVersion = 1

// Result is everything the probe found, printed as one JSON line after
// ResultMarker. Secrets (CHAP passwords) never appear in it.
type Result struct {
	Version int `json:"version"`
	// Fixture and Entry are the lunboot.fixture= and lunboot.entry=
	// tokens of the boot entry that started the probe.
	Fixture string `json:"fixture,omitempty"`
	Entry   string `json:"entry,omitempty"`
	// Kernel is the running kernel's release (uname -r).
	Kernel string `json:"kernel"`
	// Cmdline is /proc/cmdline with passwords masked.
	Cmdline string `json:"cmdline"`
	// Lunboot holds every lunboot.* parameter of the command line.
	Lunboot map[string]string `json:"lunboot,omitempty"`
	// Firmware lists the parameters asking the OS to take its boot
	// target from firmware (iscsi_auto, rd.iscsi.firmware, rd.iscsi.ibft,
	// ip=ibft).
	Firmware []string `json:"firmware,omitempty"`
	// IBFT is /sys/firmware/ibft, nil when the kernel found no iBFT.
	IBFT *IBFT `json:"ibft,omitempty"`
	// Handoffs are the boot targets found: one per command-line dialect
	// present, then the iBFT's.
	Handoffs []Handoff `json:"handoffs,omitempty"`
	// Net is how the probe configured its network.
	Net *Net `json:"net,omitempty"`
	// Logins has one entry per hand-off, in the same order: the proof.
	Logins []Login `json:"logins,omitempty"`
	// Lockdown is the OS kernel's lockdown level as it reports it in
	// /sys/kernel/security/lockdown ("none", "integrity",
	// "confidentiality"); empty when the kernel has no lockdown LSM.
	Lockdown string `json:"lockdown,omitempty"`
	// Errors collects stage failures (module loads, sysfs reads…).
	Errors []string `json:"errors,omitempty"`
	// Uptime is the kernel's uptime when the result was printed, seconds.
	Uptime float64 `json:"uptime_s"`
}

// IBFT is the content of /sys/firmware/ibft, attribute by attribute, as the
// kernel's iscsi_ibft module shows it. CHAP secrets are masked.
type IBFT struct {
	// Signature, OEMID and OEMTableID come from acpi_header/.
	Signature  string            `json:"signature,omitempty"`
	OEMID      string            `json:"oem_id,omitempty"`
	OEMTableID string            `json:"oem_table_id,omitempty"`
	Initiator  map[string]string `json:"initiator,omitempty"`
	NICs       []IBFTEntry       `json:"nics,omitempty"`
	Targets    []IBFTEntry       `json:"targets,omitempty"`
}

// IBFTEntry is one ethernetN or targetN directory.
type IBFTEntry struct {
	Name  string            `json:"name"`
	Attrs map[string]string `json:"attrs"`
}

// Handoff is one boot target the OS was told about.
type Handoff struct {
	// Source is where it came from: "dracut" (netroot=), "root=iscsi",
	// "initramfs-tools" (iscsi_target_*), "lunboot" (lunboot.target=) or
	// "ibft".
	Source string `json:"source"`
	// Portal is host:port; Target the target name; LUN the RFC 4173 hex
	// LUN, empty when the source names none (the probe then takes the
	// first disk LUN, as Linux would scan them all).
	Portal string `json:"portal"`
	Target string `json:"target"`
	LUN    string `json:"lun,omitempty"`
	// Initiator is the initiator name handed over, empty if none.
	Initiator string `json:"initiator,omitempty"`
	// CHAPUser and ReverseUser name the CHAP accounts; the secrets are
	// kept out of JSON.
	CHAPUser    string `json:"chap_user,omitempty"`
	ReverseUser string `json:"reverse_user,omitempty"`
	// IP is the network configuration requested with it: the ip= value,
	// or for the iBFT "ibft:<origin>".
	IP string `json:"ip,omitempty"`
	// Warnings note what was odd but usable.
	Warnings []string `json:"warnings,omitempty"`

	secret, reverseSecret string
}

// Secrets returns the CHAP secrets (never serialised).
func (h *Handoff) Secrets() (secret, reverseSecret string) { return h.secret, h.reverseSecret }

// SetSecrets sets the CHAP secrets (for tests and the iBFT reader).
func (h *Handoff) SetSecrets(secret, reverseSecret string) {
	h.secret, h.reverseSecret = secret, reverseSecret
}

// CHAPMode returns "none", "one-way" or "mutual".
func (h *Handoff) CHAPMode() string {
	switch {
	case h.CHAPUser == "" && h.secret == "":
		return "none"
	case h.ReverseUser != "" || h.reverseSecret != "":
		return "mutual"
	default:
		return "one-way"
	}
}

// Net is the probe's network configuration.
type Net struct {
	Interface string `json:"interface,omitempty"`
	MAC       string `json:"mac,omitempty"`
	// Method is "dhcp", "static" (from ip=) or "ibft" (the iBFT NIC's
	// address, as iscsistart -N would configure it).
	Method  string `json:"method,omitempty"`
	Address string `json:"address,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// RootPath and InitiatorName are DHCP options 17 and 203 when the
	// probe did DHCP and the server sent them.
	RootPath      string `json:"dhcp_root_path,omitempty"`
	InitiatorName string `json:"dhcp_initiator,omitempty"`
	Error         string `json:"error,omitempty"`
}

// Login is the outcome of logging in with one hand-off.
type Login struct {
	Source    string `json:"source"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	Portal    string `json:"portal,omitempty"`
	Target    string `json:"target,omitempty"`
	Initiator string `json:"initiator,omitempty"`
	// InitiatorDefaulted is true when the hand-off named no initiator and
	// the probe used its own default name.
	InitiatorDefaulted bool   `json:"initiator_defaulted,omitempty"`
	CHAP               string `json:"chap"`
	// LUNs is what REPORT LUNS listed (RFC 4173 hex); LUN the one read.
	LUNs []string `json:"luns,omitempty"`
	LUN  string   `json:"lun,omitempty"`
	// LUNScanned is true when the hand-off named no LUN, or one that is
	// not a disk, and the probe read the first disk LUN instead (what the
	// Linux SCSI scan would give the OS).
	LUNScanned bool   `json:"lun_scanned,omitempty"`
	Blocks     uint64 `json:"blocks,omitempty"`
	BlockSize  int    `json:"block_size,omitempty"`
	// Sector0SHA256 is the SHA-256 of the LUN's first 512 bytes, hex.
	Sector0SHA256 string `json:"sector0_sha256,omitempty"`
	// BootSignature reports the 55 AA signature at bytes 510–511.
	BootSignature bool `json:"boot_signature,omitempty"`
	// LoggedOut is true when the logout completed cleanly.
	LoggedOut bool    `json:"logged_out,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// OK reports whether the probe found at least one hand-off and every login
// with them succeeded.
func (r *Result) OK() bool {
	if len(r.Logins) == 0 {
		return false
	}
	for _, l := range r.Logins {
		if !l.OK {
			return false
		}
	}
	return true
}

// Login returns the login made with the hand-off from source, if any.
func (r *Result) Login(source string) (Login, bool) {
	for _, l := range r.Logins {
		if l.Source == source {
			return l, true
		}
	}
	return Login{}, false
}

// Summary is a one-line human summary of the result.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "probe: fixture=%s entry=%s kernel=%s", cmp.Or(r.Fixture, "-"), cmp.Or(r.Entry, "-"), r.Kernel)
	if r.IBFT != nil {
		fmt.Fprintf(&b, " ibft=%s/%s", r.IBFT.Signature, r.IBFT.OEMID)
	} else {
		b.WriteString(" ibft=none")
	}
	if r.Net != nil {
		fmt.Fprintf(&b, " net=%s:%s", r.Net.Method, cmp.Or(r.Net.Address, "-"))
	}
	if len(r.Logins) == 0 {
		b.WriteString(" login=no-handoff")
	}
	for _, l := range r.Logins {
		if l.OK {
			fmt.Fprintf(&b, " login[%s]=ok lun=%s sector0=%.12s", l.Source, l.LUN, l.Sector0SHA256)
		} else {
			fmt.Fprintf(&b, " login[%s]=FAILED(%s)", l.Source, l.Error)
		}
	}
	return b.String()
}

// MaxResultLen bounds a result line: DecodeResult refuses more.
const MaxResultLen = 1 << 20

// EncodeResult renders the result line (without the newline).
func EncodeResult(r *Result) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("probe: encode result: %w", err)
	}
	return ResultMarker + " " + string(b), nil
}

// ErrNoResult is returned by FindResult when the output holds no result line.
var ErrNoResult = errors.New("probe: no " + ResultMarker + " line in the console output")

// DecodeResult decodes the JSON of a result line.
func DecodeResult(js string) (*Result, error) {
	if len(js) > MaxResultLen {
		return nil, fmt.Errorf("probe: result line of %d bytes exceeds %d", len(js), MaxResultLen)
	}
	var r Result
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return nil, fmt.Errorf("probe: decode result: %w", err)
	}
	if r.Version != ResultVersion {
		return nil, fmt.Errorf("probe: result version %d, this host understands %d (rebuild the fixtures)", r.Version, ResultVersion)
	}
	return &r, nil
}

// FindResult finds and decodes the last result line in console output.
func FindResult(console string) (*Result, error) {
	ms := ResultPattern.FindAllStringSubmatch(console, -1)
	if len(ms) == 0 {
		return nil, ErrNoResult
	}
	return DecodeResult(ms[len(ms)-1][1])
}
