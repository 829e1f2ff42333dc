package handoff_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	pkghandoff "github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/distro/derive"
	"github.com/lunboot/lunboot/qemu/distro/distrotest"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// Bounds for one guest under TCG on a loaded two-core machine. They guard
// against hangs, they are not speed targets: lunboot reaches kexec in 15–60
// s, and Debian's boot after it takes 35–115 s (dracut's about 85 s).
const (
	jumpTimeout     = 5 * time.Minute
	osTimeout       = 8 * time.Minute
	poweroffTimeout = 2 * time.Minute
	rescueTimeout   = 90 * time.Second
)

// poweroff makes the OS power off right after its proof (passed through
// lunboot.append=), so that each case ends as soon as it has its evidence.
const poweroff = "lunboot.append=" + osproof.PoweroffForceArg

// tableInstalled is the OS kernel's message when it takes the iBFT from the
// front of its initrd (drivers/acpi/tables.c acpi_table_upgrade).
var tableInstalled = regexp.MustCompile(`ACPI: Table Upgrade: install \[IBFT`)

// env is what every case needs: lunboot's image and the Debian systems.
type env struct {
	kernel, image string
	set           *distro.Set
	// lio boots from the LIO target VM instead of tgtd.
	lio bool
}

// setup checks the prerequisites (skipping locally, failing under CI when
// one is missing), then marks the test parallel and waits for a slot.
func setup(t *testing.T) *env {
	t.Helper()
	return setupSlots(t, false)
}

// setupSlots is setup, taking two guest slots when the boot is from the
// LIO target VM (a guest of its own).
func setupSlots(t *testing.T, lio bool) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("boots Debian through lunboot under TCG (1–3 minutes per case); skipped with -short")
	}
	labtest.Require(t)
	e := &env{set: distrotest.Systems(t)}
	e.kernel, e.image = labtest.Image(t)
	e.lio = lio
	t.Parallel()
	// Registered first, so it is released last: after the lab is gone.
	if lio {
		testenv.GuestSlots(t)
	} else {
		testenv.GuestSlot(t)
	}
	return e
}

// start boots sys through lunboot with args on its command line.
func (e *env) start(t *testing.T, sys *distro.System, args string, chap *lab.CHAP, raw string) *handoff.Machine {
	t.Helper()
	return e.startOn(t, sys, args, chap, raw, handoff.Network{}, qemuvm.BIOS)
}

// startOn is start over the lab network nw (a VLAN, a host name, a
// static address) under firmware fw.
func (e *env) startOn(t *testing.T, sys *distro.System, args string, chap *lab.CHAP, raw string, nw handoff.Network, fw qemuvm.Firmware) *handoff.Machine {
	t.Helper()
	opts := lab.Options{Name: "handoff-" + sys.Name, VLAN: nw.VLAN, IPv6Only: nw.IPv6Only}
	if e.lio {
		opts.Taps = 2 // lunboot on tap 0, the LIO target VM on tap 1
	}
	l := labtest.Start(t, opts)
	iqn := ""
	if e.lio {
		// As a Synology names its targets: mixed case, which the OS's
		// initiator must receive unchanged to log in (LIO compares names
		// byte for byte; qemu/interop "mixed-case target name").
		iqn = "iqn.2000-01.com.synology:DiskStation.Target-1." + sys.Name
	}
	m, err := handoff.Start(context.Background(), l, handoff.Config{
		Kernel: e.kernel, Image: e.image, System: sys, Args: args, CHAP: chap, Firmware: fw, LIO: e.lio, IQN: iqn,
		RawConsole: raw, OnConsole: labtest.Console(t, strings.TrimPrefix(t.Name(), "Test")),
		Network: nw,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.LIO != nil {
		labtest.KillAtEnd(t, l, m.LIO.VM())
	}
	labtest.KillAtEnd(t, l, m.VM)
	t.Logf("lunboot command line: %s; DHCP option 17 %q", m.Cmdline, m.RootPath)
	return m
}

// booted is a case's evidence once the OS has reported.
type booted struct {
	m      *handoff.Machine
	os     *handoff.OS
	stages []bootlog.Stage
	// mode is the hand-off lunboot chose, from its handoff stage line.
	mode string
	// osConsole is what the OS printed after the jump.
	osConsole string
}

var (
	modePattern = regexp.MustCompile(`hand-off (\S+)`)
	bootingLine = regexp.MustCompile(`(?m)^ +booting .* after \S+$`)
)

// boot waits for the jump and the OS's proof, checks what every case must
// show, and logs the record: the command line the OS received and its iBFT.
// ibft requires (true) or forbids (false) /sys/firmware/ibft in the OS; nil
// leaves it unchecked.
func boot(t *testing.T, m *handoff.Machine, ibft *bool) *booted {
	t.Helper()
	ctx := context.Background()
	if err := m.WaitJump(ctx, jumpTimeout); err != nil {
		t.Fatalf("lunboot did not jump to %s: %v", m.System.Name, err)
	}
	res, err := m.WaitOS(ctx, osTimeout, true)
	if err != nil {
		t.Fatalf("%s did not report in: %v", m.System.Name, err)
	}
	b := &booted{m: m, os: res, stages: m.Stages()}
	con := m.Console()
	if i := strings.Index(con, bootlog.StartLine); i >= 0 {
		b.osConsole = con[i+len(bootlog.Section(con)):]
	}
	if got := strings.Join(bootlog.Finished(b.stages), " "); got != strings.Join(bootlog.Stages, " ") {
		t.Errorf("finished stages = %s, want %s", got, strings.Join(bootlog.Stages, " "))
	}
	// lunboot's last line must reach the serial console before kexec
	// discards the firmware kernel's buffers.
	if !bootingLine.MatchString(bootlog.Section(con)) {
		t.Errorf("lunboot's console lacks its last line before the jump (\"booting … after …\"); it ends:\n%s", strings.Join(bootlog.LastLines(bootlog.Section(con), 5), "\n"))
	}
	if s, ok := bootlog.Find(b.stages, "handoff"); ok {
		if mm := modePattern.FindStringSubmatch(s.Text); mm != nil {
			b.mode = mm[1]
		}
	}
	var sum strings.Builder
	handoff.WriteSummary(&sum, b.stages, res)
	t.Logf("%s, lunboot.handoff mode %q:\n%s", m.System.Name, b.mode, sum.String())
	p := res.Proof
	if err := handoff.Verify(p, m.Want(ibft)); err != nil {
		t.Errorf("%s booted, but: %v", m.System.Name, err)
	}
	if len(p.Errors) > 0 {
		t.Logf("the proof could not collect: %v", p.Errors)
	}
	// The entry's own arguments survive, and lunboot.append= is added
	// (an EFI executable's built-in command line has none: that OS does
	// not power off by itself, and KillAtEnd stops it).
	asked := strings.Contains(m.Cmdline, poweroff)
	want := map[string]string{"root": "UUID=" + m.System.RootUUID, "console": "ttyS0,115200"}
	if asked {
		want["lunboot.proof.poweroff"] = "force"
	}
	b.wantArgs(t, want)
	if got := tableInstalled.MatchString(b.osConsole); got != (b.mode != "cmdline") {
		t.Errorf("OS kernel installed an iBFT from its initrd = %v, want %v in mode %q", got, b.mode != "cmdline", b.mode)
	}
	if !asked {
		return b
	}
	wctx, cancel := context.WithTimeout(ctx, poweroffTimeout)
	defer cancel()
	if err := m.Wait(wctx); err != nil {
		t.Logf("%s did not power off within %s after its proof: %v", m.System.Name, poweroffTimeout, err)
	}
	return b
}

// wantArgs checks that the OS command line has each key with its value
// (a bare flag when the value is "").
func (b *booted) wantArgs(t *testing.T, want map[string]string) {
	t.Helper()
	args := pkghandoff.ParseCmdline(b.os.Proof.Cmdline)
	for k, v := range want {
		got, ok := pkghandoff.Get(args, k)
		if !ok || got != v {
			t.Errorf("OS command line %q: %s = %q (present %v), want %q", b.os.Proof.Cmdline, k, got, ok, v)
		}
	}
}

// noArgs checks that the OS command line has none of keys.
func (b *booted) noArgs(t *testing.T, keys ...string) {
	t.Helper()
	args := pkghandoff.ParseCmdline(b.os.Proof.Cmdline)
	for _, k := range keys {
		if v, ok := pkghandoff.Get(args, k); ok {
			t.Errorf("OS command line %q has %s=%q, want none", b.os.Proof.Cmdline, k, v)
		}
	}
}

// wantConsole checks that the OS printed each of the patterns.
func (b *booted) wantConsole(t *testing.T, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(b.osConsole) {
			t.Errorf("the OS's console shows no %q", p)
		}
	}
}

// iscsistartFirmware are the OS console lines that show open-iscsi's
// local-top script logging in with iscsistart -b: the kernel's iscsi_ibft
// found the table (iscsi_ibft.c "iBFT detected."), then iscsistart logged
// in to the table's target. Without iscsi_target_name= on the command
// line, iscsistart -b with the table is the script's only way in.
func iscsistartFirmware(m *handoff.Machine) []string {
	return []string{
		`iBFT detected\.`,
		`iscsistart: Logging into ` + regexp.QuoteMeta(m.Export.IQN+" "+m.Export.Portal.String()),
		`iscsistart: Connection\d+:0 to \[target: ` + regexp.QuoteMeta(m.Export.IQN) + `, portal: [^\]]*\] through \[iface: default\] is operational now`,
	}
}

// wantMode checks the hand-off mode lunboot reported.
func (b *booted) wantMode(t *testing.T, mode string) {
	t.Helper()
	if b.mode != mode {
		s, _ := bootlog.Find(b.stages, "handoff")
		t.Errorf("lunboot's hand-off mode = %q, want %q (stage line %q)", b.mode, mode, s.Line)
	}
}

// wantIBFT checks the table the OS exposes under /sys/firmware/ibft:
// lunboot's, naming the initiator, the NIC and the target it booted from.
func (b *booted) wantIBFT(t *testing.T, extra map[string]string) {
	t.Helper()
	tab := b.os.Proof.IBFT
	if tab == nil {
		t.Errorf("the OS has no /sys/firmware/ibft")
		return
	}
	m := b.m
	want := map[string]string{
		"acpi_header/signature":    "IBFT",
		"initiator/initiator-name": m.Initiator(),
		"ethernet0/mac":            m.MAC().String(),
		"target0/target-name":      m.Export.IQN,
		"target0/ip-addr":          m.Export.Portal.Addr().String(),
		"target0/port":             strconv.Itoa(int(m.Export.Portal.Port())),
		// LUN 1 as iscsi_ibft.c prints the SAM bytes; iPXE's table for
		// LUN 1 reads the same (qemu/README.md). LIO's disk is LUN 0.
		"target0/lun": map[int]string{0: "00000000", 1: "01000000"}[m.Export.LUNBase],
	}
	for k, v := range extra {
		want[k] = v
	}
	for k, v := range want {
		if got, ok := tab[k]; !ok || got != v {
			t.Errorf("/sys/firmware/ibft/%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
}

var yes, no = true, false

// The initramfs-tools and dracut parameters lunboot writes: what each
// mode must put on the OS command line, and what it must leave off.
var (
	itoolsExplicit = []string{"iscsi_initiator", "iscsi_target_name", "iscsi_target_ip", "iscsi_target_port"}
	dracutExplicit = []string{"netroot"}
	chapArgs       = []string{
		"iscsi_username", "iscsi_password", "iscsi_in_username", "iscsi_in_password",
		"rd.iscsi.username", "rd.iscsi.password", "rd.iscsi.in.username", "rd.iscsi.in.password",
	}
)

// bootif is BOOTIF= for the machine's NIC (PXELINUX form, as lunboot
// writes it).
func bootif(m *handoff.Machine) string {
	return "01-" + strings.ReplaceAll(m.MAC().String(), ":", "-")
}

// TestInitramfsToolsCmdline: Debian's initramfs-tools + open-iscsi initrd
// logs in with the parameters lunboot writes on its command line
// (lunboot.handoff=cmdline), without any iBFT.
func TestInitramfsToolsCmdline(t *testing.T) {
	e := setup(t)
	m := e.start(t, e.set.Debian, "lunboot.handoff=cmdline "+poweroff, nil, "")
	b := boot(t, m, &no)
	b.wantMode(t, "cmdline")
	b.wantArgs(t, map[string]string{
		"ip": "dhcp", "BOOTIF": bootif(m),
		"iscsi_initiator":   m.Initiator(),
		"iscsi_target_name": m.Export.IQN,
		"iscsi_target_ip":   m.Export.Portal.Addr().String(),
		"iscsi_target_port": strconv.Itoa(int(m.Export.Portal.Port())),
	})
	b.noArgs(t, append([]string{"iscsi_auto"}, chapArgs...)...)
}

// TestInitramfsToolsIBFT: the same initrd in firmware mode
// (lunboot.handoff=ibft): iscsi_auto on the command line, the session in
// the iBFT lunboot put in front of the initrd, which iscsistart -b reads.
func TestInitramfsToolsIBFT(t *testing.T) {
	e := setup(t)
	m := e.start(t, e.set.Debian, "lunboot.handoff=ibft "+poweroff, nil, "")
	b := boot(t, m, &yes)
	b.wantMode(t, "ibft")
	b.wantArgs(t, map[string]string{"iscsi_auto": "", "ip": "dhcp", "BOOTIF": bootif(m)})
	b.noArgs(t, append(itoolsExplicit, chapArgs...)...)
	b.wantIBFT(t, nil)
	b.wantConsole(t, iscsistartFirmware(m)...)
}

// TestDracutCmdline: the dracut initrd logs in with netroot=iscsi:…,
// rd.iscsi.initiator= and ip= (lunboot.handoff=cmdline).
func TestDracutCmdline(t *testing.T) {
	e := setup(t)
	m := e.start(t, e.set.Dracut, "lunboot.handoff=cmdline "+poweroff, nil, "")
	b := boot(t, m, &no)
	b.wantMode(t, "cmdline")
	b.wantArgs(t, map[string]string{
		"netroot":            fmt.Sprintf("iscsi:%s::%d:%x:%s", m.Export.Portal.Addr(), m.Export.Portal.Port(), m.Export.LUNBase, m.Export.IQN),
		"rd.iscsi.initiator": m.Initiator(),
		"ip":                 "dhcp", "BOOTIF": bootif(m), "rd.bootif": "1", "rd.neednet": "1",
	})
	b.noArgs(t, append([]string{"rd.iscsi.firmware", "rd.iscsi.ibft"}, chapArgs...)...)
}

// TestInitramfsToolsCmdlineLIO: TestInitramfsToolsCmdline booting from
// LIO, as from a storage appliance: the disk at LUN 0, an ACL that admits
// only lunboot's default initiator name, which the hand-off gives the OS's
// open-iscsi so that it gets in too, and a Synology-style mixed-case target
// name that both must send unchanged. The one LIO boot in make test (two
// guest slots, about 4–5 minutes under contention); the iBFT and dracut
// variants below are make test-full.
func TestInitramfsToolsCmdlineLIO(t *testing.T) {
	e := setupSlots(t, true)
	m := e.start(t, e.set.Debian, "lunboot.handoff=cmdline "+poweroff, nil, "")
	b := boot(t, m, &no)
	b.wantMode(t, "cmdline")
	b.wantArgs(t, map[string]string{
		"iscsi_initiator":   m.Initiator(),
		"iscsi_target_name": m.Export.IQN,
		"iscsi_target_ip":   m.Export.Portal.Addr().String(),
		"iscsi_target_port": strconv.Itoa(int(m.Export.Portal.Port())),
	})
}

// TestInitramfsToolsIBFTLIO: the iBFT hand-off from LIO (make test-full).
func TestInitramfsToolsIBFTLIO(t *testing.T) {
	testenv.Full(t)
	e := setupSlots(t, true)
	m := e.start(t, e.set.Debian, "lunboot.handoff=ibft "+poweroff, nil, "")
	b := boot(t, m, &yes)
	b.wantMode(t, "ibft")
	b.wantIBFT(t, nil)
	b.wantConsole(t, iscsistartFirmware(m)...)
}

// TestDracutCmdlineLIO: the dracut disk from LIO, command-line hand-off
// (make test-full).
func TestDracutCmdlineLIO(t *testing.T) {
	testenv.Full(t)
	e := setupSlots(t, true)
	m := e.start(t, e.set.Dracut, "lunboot.handoff=cmdline "+poweroff, nil, "")
	b := boot(t, m, &no)
	b.wantMode(t, "cmdline")
	b.wantArgs(t, map[string]string{
		"netroot":            fmt.Sprintf("iscsi:%s::%d:%x:%s", m.Export.Portal.Addr(), m.Export.Portal.Port(), m.Export.LUNBase, m.Export.IQN),
		"rd.iscsi.initiator": m.Initiator(),
	})
}

// TestDracutIBFT: the dracut initrd in firmware mode (lunboot.handoff=ibft):
// rd.iscsi.firmware=1 and rd.iscsi.ibft=1, the target and the network in
// the iBFT.
func TestDracutIBFT(t *testing.T) {
	e := setup(t)
	m := e.start(t, e.set.Dracut, "lunboot.handoff=ibft "+poweroff, nil, "")
	b := boot(t, m, &yes)
	b.wantMode(t, "ibft")
	b.wantArgs(t, map[string]string{
		"rd.iscsi.firmware": "1", "rd.iscsi.ibft": "1", "rd.iscsi.initiator": m.Initiator(), "rd.neednet": "1",
	})
	b.noArgs(t, append(dracutExplicit, chapArgs...)...)
	b.wantIBFT(t, nil)
	// dracut's network-legacy configures the NIC from the table
	// (ibft_to_cmdline) and names it ibft0.
	b.wantConsole(t, `iBFT detected\.`)
	found := false
	var nics []string
	for _, n := range b.os.Proof.Net {
		found = found || n.Name == "ibft0" && n.MAC == m.MAC().String()
		nics = append(nics, n.Name+" "+n.MAC)
	}
	if !found {
		t.Errorf("the OS's interfaces are %v, want ibft0 with MAC %s (configured from the iBFT)", nics, m.MAC())
	}
}

// TestMutualCHAP: the target requires mutual CHAP; the credentials go to
// lunboot on its command line, in dracut's spelling. In the default mode
// lunboot hands them over in the iBFT only: the OS command line carries no
// credential, lunboot's console shows no secret beyond the firmware
// kernel's echo of its own command line, and the OS logs in with the table.
func TestMutualCHAP(t *testing.T) {
	e := setup(t)
	chap := &lab.CHAP{Username: "node-debian", Secret: "out-secret-4c7e91", TargetUsername: "target-debian", TargetSecret: "in-secret-b2d5a8"}
	raw := filepath.Join(t.TempDir(), "ttyS1.log")
	args := fmt.Sprintf("rd.iscsi.username=%s rd.iscsi.password=%s rd.iscsi.in.username=%s rd.iscsi.in.password=%s %s",
		chap.Username, chap.Secret, chap.TargetUsername, chap.TargetSecret, poweroff)
	m := e.start(t, e.set.Debian, args, chap, raw)
	b := boot(t, m, &yes)
	b.wantMode(t, "ibft")
	b.wantArgs(t, map[string]string{"iscsi_auto": "", "ip": "dhcp", "BOOTIF": bootif(m)})
	b.noArgs(t, append(itoolsExplicit, chapArgs...)...)
	// The lab masks registered secrets as "***" in everything it records,
	// the proof included: a secret on the OS command line shows up so.
	if strings.Contains(b.os.Proof.Cmdline, "***") {
		t.Errorf("OS command line %q carries a CHAP secret", b.os.Proof.Cmdline)
	}
	b.wantIBFT(t, map[string]string{
		"target0/chap-name": chap.Username, "target0/chap-secret": "***",
		// The kernel's name for the reverse secret (drivers/scsi/
		// iscsi_boot_sysfs.c ISCSI_BOOT_TGT_REV_CHAP_SECRET).
		"target0/rev-chap-name": chap.TargetUsername, "target0/rev-chap-name-secret": "***",
	})
	b.wantConsole(t, iscsistartFirmware(m)...)
	if s, ok := bootlog.Find(b.stages, "login"); !ok || !strings.Contains(s.Text, "mutual") {
		t.Errorf("lunboot's login line %q does not say it used mutual CHAP", s.Line)
	}
	rawLog, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rawLog), bootlog.StartLine) {
		t.Fatalf("the unmasked console %s has no lunboot output", raw)
	}
	if leaks := bootlog.SecretLeaks(string(rawLog), chap.Secret, chap.TargetSecret); len(leaks) > 0 {
		t.Errorf("lunboot's console shows a CHAP secret:\n%s", strings.Join(leaks, "\n"))
	}
}

// TestDefaultMode: without lunboot.handoff=, on the initramfs-tools initrd
// and without CHAP, lunboot hands over both ways (pkg/handoff ModeAuto):
// the explicit parameters on the command line and the iBFT in front of the
// initrd, which the OS kernel installs as an ACPI table. Nothing in the
// initramfs-tools explicit path loads iscsi_ibft, so /sys/firmware/ibft is
// not there to read; the table is the fallback the OS could use.
func TestDefaultMode(t *testing.T) {
	e := setup(t)
	m := e.start(t, e.set.Debian, poweroff, nil, "")
	b := boot(t, m, nil)
	b.wantMode(t, "both")
	b.wantArgs(t, map[string]string{
		"ip": "dhcp", "BOOTIF": bootif(m),
		"iscsi_initiator":   m.Initiator(),
		"iscsi_target_name": m.Export.IQN,
		"iscsi_target_ip":   m.Export.Portal.Addr().String(),
	})
	b.noArgs(t, "iscsi_auto")
}

// TestRefuseNoISCSI: the disk whose initrd cannot log in (open-iscsi
// purged) and whose OS kernel has no nbd module either (derive.NoNBD: the
// noiscsi disk with nbd.ko and its modules.dep line removed), under the
// default lunboot.handoff=auto: the initrd cannot take over and carry-in,
// which serves the root over NBD, cannot work, so lunboot must refuse in
// its handoff stage, before kexec_file_load: the console names what is
// missing for both (open-iscsi's iscsistart; the OS kernel's nbd) and what
// to do for each, the rescue shell runs, the OS kernel never starts and
// lunboot has logged out of the target. (With nbd the same disk boots by
// carry-in: TestCarryNoISCSI; the OS kernel without its module tree is
// refused the same way, unit-tested in pkg/handoff TestPlanCarry.)
func TestRefuseNoISCSI(t *testing.T) {
	e := setup(t)
	testenv.RequireBinaries(t, derive.Tools...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sys, err := derive.Build(ctx, e.set.NoISCSI, derive.NoNBD, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := e.start(t, sys, poweroff, nil, "")
	err = m.WaitJump(context.Background(), jumpTimeout)
	bf, ok := err.(*handoff.BootFailedError)
	if !ok {
		t.Fatalf("lunboot with an initrd without open-iscsi and a kernel without nbd: WaitJump = %v, want a failed boot", err)
	}
	f := bf.Failure
	stages := m.Stages()
	var sum strings.Builder
	handoff.WriteSummary(&sum, stages, nil)
	t.Logf("BOOT FAILED in stage %s:\n  %s\n  check: %s\n%s", f.Stage, strings.Join(f.Error, "\n  "), f.Check, sum.String())
	section := bootlog.Section(m.Console())
	t.Logf("lunboot console:\n%s", section)
	if f.Stage != "handoff" {
		t.Errorf("failed stage = %q, want handoff", f.Stage)
	}
	if f.Then != "rescue" {
		t.Errorf("after the failure lunboot goes to %q, want the rescue shell", f.Then)
	}
	got := strings.Join(bootlog.Finished(stages), " ")
	if want := strings.Join(bootlog.Stages[:8], " "); got != want {
		t.Errorf("finished stages = %s, want %s (nothing after load)", got, want)
	}
	// What is missing, and how to fix it, must be on the console: the
	// initrd's lack in the failure report, carry-in's in the note before.
	msg := strings.Join(f.Error, "\n")
	for _, want := range []string{"open-iscsi", "iscsistart"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failure report does not name %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(msg, "apt") && !strings.Contains(msg, "install") {
		t.Errorf("the failure report does not say how to fix it:\n%s", msg)
	}
	for _, want := range []string{"carry-in cannot work either: the OS kernel has no module nbd", "CONFIG_BLK_DEV_NBD"} {
		if !strings.Contains(section, want) {
			t.Errorf("lunboot's console does not say %q", want)
		}
	}
	if f.Check == "" {
		t.Errorf("the failure report has no check line")
	}
	rescue(t, m)
	if con := m.Console(); strings.Contains(con[strings.Index(con, bootlog.StartLine):], "Linux version ") {
		t.Errorf("an OS kernel started after lunboot refused")
	}
	// lunboot's undo logs out: the target holds no session.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := m.Target.Sessions(m.Export.TID)
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("target sessions after the refusal = %d, %v; want 0 (lunboot logs out)", n, err)
			break
		}
		time.Sleep(time.Second)
	}
}

// rescue checks that the rescue shell answers on the console. The command
// is repeated until answered, since what is typed while the shell is still
// starting may be dropped; its output differs from what is typed, which
// the terminal echoes.
func rescue(t *testing.T, m *handoff.Machine) {
	t.Helper()
	re := regexp.MustCompile(`RESCUE-OK-42\b`)
	deadline := time.Now().Add(rescueTimeout)
	for {
		if err := m.Send("echo RESCUE-OK-$((6*7))\n"); err != nil {
			t.Fatalf("typing into the console: %v", err)
		}
		_, err := m.ExpectWithin(context.Background(), 3*time.Second, re)
		if err == nil {
			return
		}
		if m.Exited() || time.Now().After(deadline) {
			t.Fatalf("the rescue shell never answered: %v", err)
		}
	}
}

// TestDracutIPv6 boots the dracut disk in an IPv6-only lab: no IPv4
// address on the bridge, dnsmasq answering DHCPv6 with the root-path as
// the boot file URL (option 59) and sending router advertisements, tgtd
// on the ULA address. lunboot configures its NIC by DHCPv6 (ip=dhcp6),
// logs in over IPv6 and hands dracut ip=dhcp6 with a bracketed netroot=,
// plus an iBFT whose NIC carries the IPv6 address, the advertised prefix
// length, origin 3 (DHCP) and the global flag. The OS's session must be on
// the IPv6 portal.
func TestDracutIPv6(t *testing.T) {
	e := setup(t)
	m := e.startOn(t, e.set.Dracut, "ip=dhcp6 "+poweroff, nil, "", handoff.Network{IPv6Only: true}, qemuvm.BIOS)
	if !m.Export.Portal.Addr().Is6() {
		t.Fatalf("portal %v is not IPv6", m.Export.Portal)
	}
	b := boot(t, m, nil)
	t.Logf("the OS's command line: %s", b.os.Proof.Cmdline)
	if s, ok := bootlog.Find(b.stages, "network"); !ok || !strings.Contains(s.Text, "DHCPv6") || !strings.Contains(s.Text, "option 59") {
		t.Errorf("lunboot's network line %q does not say DHCPv6 and option 59", s.Line)
	}
	host := "[" + m.Export.Portal.Addr().String() + "]"
	b.wantArgs(t, map[string]string{
		"netroot":            fmt.Sprintf("iscsi:%s::%d:1:%s", host, m.Export.Portal.Port(), m.Export.IQN),
		"rd.iscsi.initiator": m.Initiator(),
		"ip":                 "dhcp6", "BOOTIF": bootif(m), "rd.neednet": "1",
	})
	// In mode both, dracut without rd.iscsi.firmware does not load
	// iscsi_ibft, so the OS installs the table (checked by boot) but may
	// not expose /sys/firmware/ibft; its IPv6 fields are checked when it
	// does (the unit tests check them at their offsets either way).
	if tab := b.os.Proof.IBFT; len(tab) > 0 {
		keys := []string{"ethernet0/ip-addr", "ethernet0/prefix-len", "ethernet0/origin", "ethernet0/flags", "ethernet0/gateway", "target0/ip-addr"}
		var rec []string
		for _, k := range keys {
			rec = append(rec, k+"="+tab[k])
		}
		t.Logf("the OS's iBFT: %s", strings.Join(rec, " "))
		p6 := netip.PrefixFrom(m.Export.Portal.Addr(), 64).Masked() // the lab's ULA /64
		ip, err := netip.ParseAddr(tab["ethernet0/ip-addr"])
		if err != nil || !ip.Is6() || !p6.Contains(ip) {
			t.Errorf("iBFT ethernet0/ip-addr = %q, want an address in %v", tab["ethernet0/ip-addr"], p6)
		}
		if tab["ethernet0/prefix-len"] != "64" || tab["ethernet0/origin"] != "3" || tab["ethernet0/flags"] != "7" {
			t.Errorf("iBFT ethernet0 prefix-len, origin, flags = %q, %q, %q; want 64, 3 (DHCP), 7 (valid, boot, global)",
				tab["ethernet0/prefix-len"], tab["ethernet0/origin"], tab["ethernet0/flags"])
		}
		if tp, err := netip.ParseAddr(tab["target0/ip-addr"]); err != nil || tp != m.Export.Portal.Addr() {
			t.Errorf("iBFT target0/ip-addr = %q, want %v", tab["target0/ip-addr"], m.Export.Portal.Addr())
		}
	} else {
		t.Logf("hand-off mode %q; the OS does not expose /sys/firmware/ibft (iscsi_ibft not loaded)", b.mode)
	}
}
