package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
	"github.com/lunboot/lunboot/qemu/probe"
)

// Bounds for one guest under TCG on a loaded two-core machine. They guard
// against hangs; they are not speed targets (a boot to the probe takes
// 15–25 s of guest time).
const (
	// powerOnTimeout: QEMU start to lunboot's first line.
	powerOnTimeout = 3 * time.Minute
	// bootTimeout: lunboot's start to the probe's result.
	bootTimeout = 5 * time.Minute
	// failTimeout: lunboot's start to its final failure report.
	failTimeout = 3 * time.Minute
	// rescueTimeout: the failure report to the rescue shell's answer, or
	// to QEMU's exit after lunboot.rescue=0 (which waits 10 s first).
	rescueTimeout = 90 * time.Second
)

// baseCmdline starts every lunboot command line. The probe OS's initrd is
// of no known generator, so the hand-off check refuses it without
// lunboot.force=1 (real distributions are booted by qemu/distro's tests).
// The rest is for TCG on a loaded host: the kernel's check that the timer
// interrupt works (check_timer, arch/x86/kernel/apic/io_apic.c) counts
// ticks during a short busy loop and panics ("IO-APIC + timer doesn't
// work!") when the host deschedules the guest meanwhile; no_timer_check
// skips it. panic=-1 turns any other panic into a reboot, which ends QEMU
// (-no-reboot) at once instead of leaving the test to its time limit.
const baseCmdline = "lunboot.force=1 no_timer_check panic=-1"

// suite is what every case needs: the image and the fixtures.
type suite struct {
	kernel, image string
	fx            *fixtures.Set
}

// setup checks the prerequisites (skipping locally, failing under CI when
// one is missing), then waits for a free slot and marks the test parallel.
func setup(t *testing.T) *suite {
	t.Helper()
	if testing.Short() {
		t.Skip("boots QEMU guests under TCG (minutes); skipped with -short")
	}
	labtest.Require(t)
	s := &suite{}
	s.kernel, s.image = labtest.Image(t)
	dir := filepath.Join(testenv.OutDir(), "fixtures")
	testenv.RequireFile(t, filepath.Join(dir, fixtures.ManifestFile), "make fixtures")
	fx, err := fixtures.Load(dir)
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("fixtures in %s: %v (built by make fixtures)", dir, err))
	}
	s.fx = fx
	t.Parallel()
	// Registered first, so it is released last: after the lab is gone.
	testenv.GuestSlot(t)
	return s
}

// disk returns a fixture disk.
func (s *suite) disk(t *testing.T, name string) *fixtures.Disk {
	t.Helper()
	d, err := s.fx.Disk(name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// export starts tgtd on l and exports spec (the disk as LUN 1 unless spec
// names images).
func export(t *testing.T, l *lab.Lab, disk *fixtures.Disk, spec lab.ExportSpec) (*lab.Target, *lab.Export) {
	t.Helper()
	tg := labtest.Target(t, l)
	if len(spec.Images) == 0 {
		spec.Images = []string{disk.Path}
	}
	exp, err := tg.Export(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tg, exp
}

// machine is one lunboot guest.
type machine struct {
	*lab.VM
	t *testing.T
	// raw is the second serial port's file (ttyS1): the firmware
	// kernel's and lunboot's output as written, before the lab masks
	// secrets in what it records, for the secret checks.
	raw string
}

// powerOn starts a guest booting the lunboot image with args after
// baseCmdline, and waits for lunboot's first line. The console is ttyS0;
// ttyS1 gets lunboot's output too, unmasked: u-root's init writes the
// uinit's output to every console= device. (The kernel's serial console
// and /dev/console are the first console=ttySn given, so ttyS0 comes
// first: the shell reads what is typed there.)
func (s *suite) powerOn(t *testing.T, l *lab.Lab, args string) *machine {
	t.Helper()
	return s.powerOnWith(t, l, qemuvm.BIOS, args)
}

// powerOnWith is powerOn on the named firmware.
func (s *suite) powerOnWith(t *testing.T, l *lab.Lab, fw qemuvm.Firmware, args string) *machine {
	t.Helper()
	return s.powerOnVM(t, l, lab.VMConfig{Firmware: fw, Kernel: s.kernel}, args)
}

// powerOnVM is powerOn with the firmware, Secure Boot and the firmware
// kernel taken from cfg (the rest is filled in).
func (s *suite) powerOnVM(t *testing.T, l *lab.Lab, cfg lab.VMConfig, args string) *machine {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "ttyS1.log")
	vm := labtest.VM(t, l, lab.VMConfig{
		Name:       "lunboot",
		Firmware:   cfg.Firmware,
		SecureBoot: cfg.SecureBoot,
		Kernel:     cfg.Kernel,
		Initrd:     s.image,
		Cmdline:    strings.TrimSpace("console=ttyS0 console=ttyS1 " + baseCmdline + " " + args),
		Args:       []string{"-serial", "file:" + raw},
	})
	m := &machine{VM: vm, t: t, raw: raw}
	labtest.Expect(t, vm, powerOnTimeout, regexp.MustCompile(regexp.QuoteMeta(bootlog.StartLine)))
	return m
}

// checkStartLine checks that lunboot's console section sec starts with a
// line naming the version and commit make image stamped into the image
// (mkimage records it in lunboot.version next to the image): firmware in
// flash must say what it is.
func (s *suite) checkStartLine(t *testing.T, sec string) {
	t.Helper()
	b, err := os.ReadFile(testenv.RequireFile(t, filepath.Join(filepath.Dir(s.image), "lunboot.version"), "make image"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(sec, "\n")
	if want := bootlog.StartLine + ", version " + strings.TrimSpace(string(b)); strings.TrimRight(first, "\r") != want {
		t.Errorf("lunboot's first line = %q, want %q", first, want)
	}
}

// expect waits (bounded by d) for re, failing the test if it does not come.
func (m *machine) expect(d time.Duration, re string) *lab.Match {
	m.t.Helper()
	return labtest.Expect(m.t, m.VM, d, regexp.MustCompile(re))
}

// resultOrFailure matches the probe's result line or lunboot giving up,
// whichever comes first.
var resultOrFailure = regexp.MustCompile(probe.ResultPattern.String() + `|` + regexp.QuoteMeta(bootlog.FailedLine))

// probeResult waits for the probe OS's result; the raw line is returned
// too, for checks on what it contains. A boot that fails instead ends the
// test with lunboot's report, without waiting out the time limit.
func (m *machine) probeResult() (*probe.Result, string) {
	m.t.Helper()
	match := m.expect(bootTimeout, resultOrFailure.String())
	if match.Groups[1] == "" {
		m.expect(time.Minute, `(`+regexp.QuoteMeta(bootlog.RescueLine)+`|`+regexp.QuoteMeta(bootlog.RebootLine)+`)[^\n]*\n`)
		f, err := bootlog.ParseFailure(m.Console())
		if err != nil {
			m.t.Fatalf("the boot failed: %v", err)
		}
		m.t.Fatalf("the boot failed in stage %s:\n  %s\n  check: %s", f.Stage, strings.Join(f.Error, "\n  "), f.Check)
	}
	r, err := probe.DecodeResult(match.Groups[1])
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Logf("%s (at +%s)", r.Summary(), match.At.Round(time.Millisecond))
	return r, match.Groups[0]
}

// stages returns lunboot's stage lines so far (up to the OS kernel's start).
func (m *machine) stages() []bootlog.Stage {
	m.t.Helper()
	sec := bootlog.Section(m.Console())
	if sec == "" {
		m.t.Fatalf("no %q line in the console", bootlog.StartLine)
	}
	return bootlog.ParseStages(sec)
}

// summary returns the success line of the named stage without its time,
// or "" if it has none.
func summary(stages []bootlog.Stage, name string) string {
	s, _ := bootlog.Find(stages, name)
	return s.Text
}

// failure waits for lunboot's final failure report and returns it with the
// stage lines before it.
func (m *machine) failure() (*bootlog.Failure, []bootlog.Stage) {
	m.t.Helper()
	m.expect(failTimeout, `(`+regexp.QuoteMeta(bootlog.RescueLine)+`|`+regexp.QuoteMeta(bootlog.RebootLine)+`)[^\n]*\n`)
	f, err := bootlog.ParseFailure(m.Console())
	if err != nil {
		m.t.Fatalf("%v; console:\n%s", err, m.Console())
	}
	evs := m.stages()
	for _, e := range evs {
		m.t.Logf("stage: %s", e.Line)
	}
	m.t.Logf("BOOT FAILED in stage %s:\n  %s\n  check: %s", f.Stage, strings.Join(f.Error, "\n  "), f.Check)
	return f, evs
}

// bootsOS checks that every stage finished, in order, once each.
func bootsOS(t *testing.T, evs []bootlog.Stage) {
	t.Helper()
	if got := bootlog.Finished(evs); strings.Join(got, " ") != strings.Join(bootlog.Stages, " ") {
		t.Errorf("finished stages = %v, want %v", got, bootlog.Stages)
	}
	for _, e := range evs {
		t.Logf("stage: %s", e.Line)
	}
}

// contains checks that got holds each of want, naming what it is.
func contains(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s = %q, want it to contain %q", what, got, w)
		}
	}
}

// rescueShell checks that the rescue shell runs on the console after a
// failed boot: it types a command whose output differs from what is typed
// (the terminal echoes input, so the text typed would match itself) and
// waits for the output. The command is repeated until it is answered,
// since what is typed while the shell is still starting may be dropped.
func (m *machine) rescueShell() {
	m.t.Helper()
	if strings.Contains(m.Console(), bootlog.RebootLine) {
		m.t.Fatalf("lunboot reboots instead of starting the rescue shell")
	}
	re := regexp.MustCompile(`RESCUE-OK-42\b`)
	deadline := time.Now().Add(rescueTimeout)
	for {
		if err := m.Send("echo RESCUE-OK-$((6*7))\n"); err != nil {
			m.t.Fatalf("typing into the console: %v", err)
		}
		_, err := m.ExpectWithin(context.Background(), 3*time.Second, re)
		if err == nil {
			return
		}
		if m.Exited() || time.Now().After(deadline) {
			m.t.Fatalf("the rescue shell never answered: %v", err)
		}
	}
}

// checkLogin checks the probe's login with the hand-off from source: it
// worked, with the initiator name lunboot used, and read the fixture's own
// sector 0.
func checkLogin(t *testing.T, r *probe.Result, source string, disk *fixtures.Disk, initiator string) probe.Login {
	t.Helper()
	l, ok := r.Login(source)
	if !ok {
		t.Errorf("the probe made no login with a %q hand-off; hand-offs %+v", source, r.Handoffs)
		return l
	}
	if !l.OK {
		t.Errorf("probe login with the %s hand-off failed: %s", source, l.Error)
		return l
	}
	if l.Sector0SHA256 != disk.Sector0SHA256 {
		t.Errorf("probe login %s: sector 0 sha256 = %s, want %s (fixture %s)", source, l.Sector0SHA256, disk.Sector0SHA256, disk.Name)
	}
	if initiator != "" && l.Initiator != initiator {
		t.Errorf("probe login %s: initiator %q, want %q (the one lunboot logged in with)", source, l.Initiator, initiator)
	}
	if l.InitiatorDefaulted {
		t.Errorf("probe login %s: the hand-off named no initiator", source)
	}
	if !l.LoggedOut {
		t.Errorf("probe login %s: no clean logout", source)
	}
	return l
}

// checkProbe checks what every successful boot must show: the fixture and
// entry the probe says it is, a login with every hand-off.
func checkProbe(t *testing.T, r *probe.Result, disk *fixtures.Disk, entry string) {
	t.Helper()
	if r.Fixture != disk.Name || r.Entry != entry {
		t.Errorf("the probe booted fixture %q entry %q, want %q entry %q", r.Fixture, r.Entry, disk.Name, entry)
	}
	if !r.OK() {
		t.Errorf("the probe's logins did not all succeed: %s", r.Summary())
	}
	if len(r.Errors) > 0 {
		t.Errorf("the probe reported errors: %q", r.Errors)
	}
}

// checkTakeover checks what a boot of the probe OS from LUN 1 must show for
// the OS to take over: lunboot's iBFT, and the OS's own logins to the disk
// as initiator, from the dracut parameters and from the iBFT.
func checkTakeover(t *testing.T, r *probe.Result, exp *lab.Export, disk *fixtures.Disk, initiator string) {
	t.Helper()
	checkIBFT(t, r, exp, "01000000", initiator)
	checkLogin(t, r, "dracut", disk, initiator)
	checkLogin(t, r, "ibft", disk, initiator)
}

// checkIBFT checks the iBFT the OS found: lunboot's table, with the
// initiator and the target lunboot logged in to.
func checkIBFT(t *testing.T, r *probe.Result, exp *lab.Export, lun, initiator string) map[string]string {
	t.Helper()
	if r.IBFT == nil {
		t.Errorf("the OS found no iBFT (/sys/firmware/ibft missing)")
		return nil
	}
	if r.IBFT.Signature != "IBFT" || r.IBFT.OEMID != "LUNBOT" {
		t.Errorf("iBFT signature %q OEM %q, want IBFT from LUNBOT", r.IBFT.Signature, r.IBFT.OEMID)
	}
	if got := r.IBFT.Initiator["initiator-name"]; got != initiator {
		t.Errorf("iBFT initiator-name = %q, want %q", got, initiator)
	}
	if len(r.IBFT.Targets) != 1 || len(r.IBFT.NICs) != 1 {
		t.Errorf("iBFT has %d targets and %d NICs, want 1 and 1", len(r.IBFT.Targets), len(r.IBFT.NICs))
		return nil
	}
	a := r.IBFT.Targets[0].Attrs
	want := map[string]string{"target-name": exp.IQN, "ip-addr": exp.Portal.Addr().String(), "port": strconv.Itoa(int(exp.Portal.Port())), "lun": lun}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("iBFT %s/%s = %q, want %q", r.IBFT.Targets[0].Name, k, a[k], v)
		}
	}
	h, ok := handoff(r, "ibft")
	if !ok || h.Portal != exp.Portal.String() || h.Target != exp.IQN {
		t.Errorf("probe's iBFT hand-off = %+v, want portal %s target %s", h, exp.Portal, exp.IQN)
	}
	return a
}

// handoff returns the probe's hand-off from source.
func handoff(r *probe.Result, source string) (probe.Handoff, bool) {
	for _, h := range r.Handoffs {
		if h.Source == source {
			return h, true
		}
	}
	return probe.Handoff{}, false
}

// param returns the value of key on a kernel command line.
func param(cmdline, key string) (string, bool) {
	return probe.ParseCmdline(cmdline).Get(key)
}

// probeMasks are the probe's own masks in its result: it records that the
// iBFT holds the secret attributes, not their values.
var probeMasks = strings.NewReplacer(`"chap-secret":"***"`, "", `"rev-chap-name-secret":"***"`, "")

// checkNoSecrets checks that no secret reached lunboot's console output
// (ttyS1's unmasked copy; the kernel printing the command line the user
// typed excepted), and that the probe's result line repeats none: neither
// a secret nor, beyond the probe's own masks, the "***" with which the lab
// replaces one.
func (m *machine) checkNoSecrets(resultLine string, secrets ...string) {
	m.t.Helper()
	raw, err := os.ReadFile(m.raw)
	if err != nil {
		m.t.Fatalf("reading the unmasked console copy: %v", err)
	}
	if !strings.Contains(string(raw), bootlog.StartLine) {
		m.t.Fatalf("the unmasked console copy %s has no lunboot output", m.raw)
	}
	for _, l := range bootlog.SecretLeaks(string(raw), secrets...) {
		m.t.Errorf("a CHAP secret on the console: %s", l)
	}
	rest := probeMasks.Replace(resultLine)
	leak := strings.Contains(rest, "***")
	for _, s := range secrets {
		if s != "" && strings.Contains(rest, s) {
			leak = true
			rest = strings.ReplaceAll(rest, s, "<SECRET>")
		}
	}
	if leak {
		m.t.Errorf("the probe's result line shows a CHAP secret (or the lab's mask for one): %s", rest)
	}
}

// lunbootInitiator is the initiator name lunboot derives from a MAC
// (docs/configuration.md, "The initiator name").
func lunbootInitiator(mac fmt.Stringer) string {
	return "iqn.2026-11.org.lunboot:" + strings.ReplaceAll(mac.String(), ":", "")
}
