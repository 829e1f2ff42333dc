package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// mpIQN is the target both controllers of the multipath scenario export.
const mpIQN = "iqn.2026-11.org.lunboot.e2e:multipath"

// twoControllers starts the multipath scenario's target host: tgtd on the
// lab's server address and a second tgtd on a second address, both
// exporting the same backing file (the first's private copy of disk) as
// LUN 1 with the SCSI identifiers tgtadm sets (scsi_id, scsi_sn: VPD pages
// 0x83 and 0x80). secondID is the second one's scsi_id: the same as the
// first's for two paths to one disk, another for the refusal case.
func twoControllers(t *testing.T, l *lab.Lab, disk *fixtures.Disk, secondID string) (first, second *lab.Target, e1, e2 *lab.Export) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr, err := l.AddServerAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first = labtest.Target(t, l)
	if second, err = l.StartTarget(ctx, lab.TargetOptions{Addr: addr}); err != nil {
		t.Fatal(err)
	}
	if e1, err = first.Export(lab.ExportSpec{IQN: mpIQN, Images: []string{disk.Path}, LUNParams: "scsi_id=lunboot-mp-disk,scsi_sn=LBMP0001"}); err != nil {
		t.Fatal(err)
	}
	if e2, err = second.Export(lab.ExportSpec{IQN: mpIQN, Images: e1.LUNs, Direct: true,
		LUNParams: fmt.Sprintf("scsi_id=%s,scsi_sn=LBMP0001", secondID)}); err != nil {
		t.Fatal(err)
	}
	return first, second, e1, e2
}

// TestBootMultipathFailover is the multipath scenario: the root-path names
// the first portal, lunboot.portal= the second; the first tgtd is killed
// at lunboot's nbd stage line and not restarted. The boot continues
// through the second without a failed stage, says so in one warning
// naming both portals, and hands the OS the path in use.
func TestBootMultipathFailover(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-multipath"})
	first, second, e1, e2 := twoControllers(t, l, disk, "lunboot-mp-disk")
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: e1.RootPath()})

	m := s.powerOn(t, l, "lunboot.portal="+second.Portal().String())
	nbdLine := m.expect(bootTimeout, `\] nbd +/dev/nbd0[^\n]*\n`)
	first.Kill()
	l.Logf("first controller %s killed at +%s", first.Portal(), nbdLine.At.Round(time.Millisecond))
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	sec := bootlog.Section(m.Console())
	warning := fmt.Sprintf("warning: path %s,1 failed", e1.Portal)
	if n := strings.Count(sec, warning); n != 1 {
		t.Errorf("console has %d lines %q, want one", n, warning)
	}
	contains(t, "lunboot console", sec, "paths: "+e1.Portal.String()+" in use; failover through "+e2.Portal.String(),
		"continuing through "+e2.Portal.String()+",1")
	for _, e := range evs {
		if !e.OK() {
			t.Errorf("stage line %q: the failover must not fail a stage", e.Line)
		}
	}
	checkProbe(t, r, disk, "bls-default")
	initiator := lunbootInitiator(m.MAC())
	// The OS gets the path in use: the second portal.
	if got, _ := param(r.Cmdline, "netroot"); got != e2.RootPath() {
		t.Errorf("OS netroot= %q, want the path in use %q", got, e2.RootPath())
	}
	checkTakeover(t, r, e2, disk, initiator)
	t.Logf("multipath: killed %s at +%s; the OS booted through %s (netroot=%s)", first.Portal(), nbdLine.At.Round(time.Millisecond), e2.Portal, e2.RootPath())
}

// TestBootMultipathOtherLU is the refusal: the second portal serves a
// logical unit with another scsi_id. lunboot must not fail over to it and
// must say why; the OS's reads then fail (the only good path is dead)
// instead of being served from another disk. Slow (the reads wait out the
// session's recovery timeout), so it runs in make test-full; the
// in-process tests (pkg/iscsi TestFailoverRefusesOtherLU, pkg/bootflow
// TestBootFailoverOtherLU) cover the logic, the boot's failure included,
// in make test.
func TestBootMultipathOtherLU(t *testing.T) {
	testenv.Full(t)
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-multipath-otherlu"})
	first, second, e1, _ := twoControllers(t, l, disk, "another-disk")
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: e1.RootPath()})

	m := s.powerOn(t, l, "lunboot.portal="+second.Portal().String()+" lunboot.retries=0")
	m.expect(bootTimeout, `\] nbd +/dev/nbd0[^\n]*\n`)
	first.Kill()
	refused := m.expect(3*time.Minute, `warning: not failing over to `+regexp.QuoteMeta(second.Portal().String())+`[^\n]*another-disk[^\n]*\n`)
	// The reads that were waiting fail once the session's recovery
	// timeout passes: nothing was read from the other disk.
	failed := m.expect(3*time.Minute, `nbd: device read failed[^\n]*\n`)
	if bootlog.Section(m.Console()) != "" {
		if _, ok := bootlog.Find(m.stages(), "os"); ok {
			t.Errorf("the os stage succeeded with only the other disk's portal alive")
		}
	}
	t.Logf("refused %s at +%s: %s; first failed read at +%s", second.Portal(), refused.At.Round(time.Millisecond),
		strings.TrimSpace(refused.Groups[0]), failed.At.Round(time.Millisecond))
}

// TestBootLinkFault takes the boot NIC's link down for 5 s, as the guest
// sees it (QEMU set_link), at the nbd stage line: the os and load stages
// read the OS from the LUN across the outage. The boot must go on without
// a failed stage, and lunboot's console says when the carrier went and
// when it came back.
func TestBootLinkFault(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	l := labtest.Start(t, lab.Options{Name: "e2e-linkfault"})
	_, exp := export(t, l, disk, lab.ExportSpec{})
	labtest.DHCP(t, l, lab.DHCPConfig{RootPath: exp.RootPath()})

	m := s.powerOn(t, l, "")
	m.expect(bootTimeout, `\] nbd +/dev/nbd0[^\n]*\n`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f, err := m.LinkDown(ctx, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lost := m.expect(time.Minute, `warning: link eth0: carrier lost at \+[0-9.]+s[^\n]*\n`)
	back := m.expect(time.Minute, `link eth0: carrier back at \+[0-9.]+s after [0-9.]+s[^\n]*\n`)
	r, _ := m.probeResult()
	evs := m.stages()
	bootsOS(t, evs)
	for _, e := range evs {
		if !e.OK() {
			t.Errorf("stage line %q: the outage must not fail a stage", e.Line)
		}
	}
	checkProbe(t, r, disk, "bls-default")
	os, _ := bootlog.Find(evs, "os")
	load, _ := bootlog.Find(evs, "load")
	if os.Took+load.Took < 4*time.Second {
		t.Errorf("os and load took %s and %s: the reads did not wait for the 5 s outage (taken at the nbd line)", os.Took, load.Took)
	}
	t.Logf("link down at +%s, up at +%s (QEMU time); console: %q, %q; os %s, load %s",
		f.Down.Round(time.Millisecond), f.Up.Round(time.Millisecond), strings.TrimSpace(lost.Groups[0]), strings.TrimSpace(back.Groups[0]), os.Took, load.Took)
}
