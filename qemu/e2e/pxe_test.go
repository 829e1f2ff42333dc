package e2e

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
	"github.com/lunboot/lunboot/qemu/probe"
	"github.com/lunboot/lunboot/qemu/pxe"
)

// netbootTimeout bounds QEMU's start to lunboot's first line on a network
// boot: SeaBIOS, iPXE's DHCP, and the kernel and initramfs over TFTP.
const netbootTimeout = 5 * time.Minute

// sanMessage is what iPXE prints when it hooks or boots a SAN disk
// ("Registered SAN device 0x80", "Booting from SAN device 0x80", "Could
// not open SAN device…").
var sanMessage = regexp.MustCompile(`SAN device`)

// pxeLab starts a lab with tgtd exporting the disk as the documentation's
// node7 target, LUN 1a (26), and dnsmasq configured from
// docs/dhcp/dnsmasq.conf, serving script (docs/dhcp/lunboot.ipxe when
// empty) by TFTP.
func (s *suite) pxeLab(t *testing.T, name, script string, http bool, disk *fixtures.Disk) (*lab.Lab, *lab.Export, *lab.DHCP, *pxe.Recipe) {
	t.Helper()
	testenv.RequireFile(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "make deps (Debian package ipxe-qemu)")
	l := labtest.Start(t, lab.Options{Name: name})
	tg, exp := export(t, l, disk, lab.ExportSpec{IQN: pxe.NodeTarget})
	// The recipe's LUN is 1a: the disk moves from LUN 1 to LUN 26, so
	// that only a boot that reached LUN 1a finds it.
	if err := pxe.MoveLUN(tg.Server, exp.TID, 1, pxe.NodeLUN, exp.LUNs[0]); err != nil {
		t.Fatal(err)
	}
	r, err := pxe.Prepare(l, pxe.Options{Repo: testenv.RepoRoot(), Kernel: s.kernel, Initrd: s.image,
		Script: script, KernelArgs: baseCmdline, HTTP: http})
	if err != nil {
		t.Fatal(err)
	}
	d := labtest.DHCP(t, l, lab.DHCPConfig{ConfFile: r.ConfFile})
	return l, exp, d, r
}

// netboot starts a guest that boots from its NIC's iPXE ROM and waits for
// lunboot's first line.
func (s *suite) netboot(t *testing.T, l *lab.Lab, mac net.HardwareAddr) *machine {
	t.Helper()
	cfg := lab.VMConfig{Name: "pxe", NetBoot: true}
	if mac != nil {
		cfg.NICs = []lab.NIC{{Tap: 0, MAC: mac}}
	}
	vm := labtest.VM(t, l, cfg)
	m := &machine{VM: vm, t: t}
	labtest.Expect(t, vm, netbootTimeout, regexp.MustCompile(regexp.QuoteMeta(bootlog.StartLine)))
	return m
}

// firmwareConsole is the console before lunboot's first line: SeaBIOS's,
// iPXE's and the kernel's.
func firmwareConsole(t *testing.T, m *machine) string {
	t.Helper()
	c := m.Console()
	i := strings.Index(c, bootlog.StartLine)
	if i < 0 {
		t.Fatalf("no %q on the console", bootlog.StartLine)
	}
	return c[:i]
}

// TestPXEChainload boots the documented PXE chain: the NIC's iPXE ROM
// gets docs/dhcp/lunboot.ipxe by TFTP from a dnsmasq configured with
// docs/dhcp/dnsmasq.conf (only its example addresses, interface and TFTP
// folder replaced), the script loads lunboot with BOOTIF=, lunboot alone
// gets node7's root-path and initiator name (by its vendor class), logs in
// to tgtd and boots the probe OS, which logs in again. iPXE must not have
// tried the SAN: the recipe keeps the root-path from it.
func TestPXEChainload(t *testing.T) { pxeChain(t, false) }

// TestPXEChainloadHTTP is TestPXEChainload with the HTTP variant
// dnsmasq.conf's comment describes: iPXE is handed the script's URL, and
// the script, kernel and initramfs come from an HTTP server in the lab.
func TestPXEChainloadHTTP(t *testing.T) { pxeChain(t, true) }

func pxeChain(t *testing.T, http bool) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	name := "e2e-pxe"
	if http {
		name += "-http"
	}
	l, exp, d, rec := s.pxeLab(t, name, "", http, disk)
	mac := pxe.NodeHardwareAddr()

	m := s.netboot(t, l, mac)
	r, _ := m.probeResult()

	fw := firmwareConsole(t, m)
	if loc := sanMessage.FindStringIndex(fw); loc != nil {
		t.Errorf("iPXE went for the SAN before lunboot ran: %q", fw[loc[0]:min(len(fw), loc[1]+60)])
	}
	want := "tftp://" + l.ServerIP().String() + "/" + pxe.Script
	if http {
		want = rec.ScriptURL
		cmds, err := os.ReadFile(l.LogPath("commands.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{pxe.Script, pxe.Kernel, pxe.Initrd} {
			contains(t, "the lab's HTTP log", string(cmds), "# http GET /lunboot/"+f+" iPXE/")
		}
	}
	contains(t, "iPXE's console", fw, want)
	bootif := "BOOTIF=01-" + strings.ReplaceAll(mac.String(), ":", "-")
	contains(t, "the kernel's command line", fw, bootif)

	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "config stage", summary(evs, "config"), "target from DHCP", "no firmware iBFT")
	contains(t, "network stage", summary(evs, "network"), "DHCP from "+l.ServerIP().String(), "root-path from option 17")
	contains(t, "target stage", summary(evs, "target"),
		fmt.Sprintf("%s LUN 1a (Linux LUN 26) at %s as %s", pxe.NodeTarget, exp.Portal, pxe.NodeInitiator))

	xs, err := pxe.CheckChain(d.LogFile(), rec.ScriptURL, true)
	if err != nil {
		t.Error(err)
	}
	for _, x := range xs {
		t.Logf("DHCP %s: vendor class %q user class %q file %q root-path %q", x.XID, x.VendorClass, x.UserClass, x.BootFile, x.Options[17])
	}

	checkProbe(t, r, disk, "bls-default")
	checkNode7(t, r, disk, exp, pxe.NodeInitiator)
}

// checkNode7 checks that the OS got node7's LUN 26 in the hand-off and
// read the disk there.
func checkNode7(t *testing.T, r *probe.Result, disk *fixtures.Disk, exp *lab.Export, initiator string) {
	t.Helper()
	if h, ok := handoff(r, "dracut"); !ok || h.Target != pxe.NodeTarget || h.Portal != exp.Portal.String() || h.LUN != "26" {
		t.Errorf("the OS's dracut hand-off = %+v, want %s at %s LUN 26", h, pxe.NodeTarget, exp.Portal)
	}
	if lg := checkLogin(t, r, "dracut", disk, initiator); lg.OK && lg.LUN != "1a" {
		t.Errorf("the OS read LUN %q, want 1a (26), the only LUN with the disk", lg.LUN)
	}
}

// TestIPXESanhookIBFT boots docs/deploy.md's "firmware that already
// logged in" with the real iPXE as that firmware: the NIC ROM gets the
// page's sanhook script (served as lunboot.ipxe, with the same dnsmasq
// configuration), iPXE logs in to node7's LUN, publishes an iBFT and loads
// lunboot, which gets no root-path by DHCP (the guest is not node7) and must
// take its target and initiator name from the firmware's table.
func TestIPXESanhookIBFT(t *testing.T) {
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	script, err := pxe.SanhookScript(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	l, exp, d, rec := s.pxeLab(t, "e2e-sanhook", script, false, disk)

	m := s.netboot(t, l, nil)
	r, _ := m.probeResult()

	fw := firmwareConsole(t, m)
	contains(t, "iPXE's console", fw, "Registered SAN device 0x80")
	if strings.Contains(fw, "Booting from SAN device") {
		t.Errorf("iPXE booted from the SAN instead of loading lunboot")
	}

	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "config stage", summary(evs, "config"), "target from the firmware iBFT", "firmware iBFT found")
	target := summary(evs, "target")
	contains(t, "target stage", target, fmt.Sprintf("%s LUN 1a (Linux LUN 26) at %s as iqn.2010-04.org.ipxe:", pxe.NodeTarget, exp.Portal))
	if strings.Contains(summary(evs, "network"), "root-path from") {
		t.Errorf("network stage %q: lunboot got a root-path by DHCP; it must come from the iBFT", summary(evs, "network"))
	}
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "LUN 1a = Linux LUN 26) (from iBFT target)", "(from iBFT initiator)")

	if _, err := pxe.CheckChain(d.LogFile(), rec.ScriptURL, false); err != nil {
		t.Error(err)
	}

	checkProbe(t, r, disk, "bls-default")
	i := strings.Index(target, " as ")
	checkNode7(t, r, disk, exp, target[i+len(" as "):])
}
