package e2e

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
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

// pxeExtra is what a PXE test adds to the documented recipe.
type pxeExtra struct {
	// DHCPArgs are dnsmasq arguments added to docs/dhcp/dnsmasq.conf.
	DHCPArgs []string
	// ACL, when set, are the only initiator names the target accepts
	// (by default it accepts any).
	ACL []string
}

// pxeLab starts a lab with tgtd exporting the disk as the documentation's
// node7 target, LUN 1a (26), and dnsmasq configured from
// docs/dhcp/dnsmasq.conf, serving script (docs/dhcp/lunboot.ipxe when
// empty) by TFTP.
func (s *suite) pxeLab(t *testing.T, name, script string, http bool, disk *fixtures.Disk, extra pxeExtra) (*lab.Lab, *lab.Export, *lab.DHCP, *pxe.Recipe) {
	t.Helper()
	testenv.RequireFile(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "make deps (Debian package ipxe-qemu)")
	l := labtest.Start(t, lab.Options{Name: name})
	tg, exp := export(t, l, disk, lab.ExportSpec{IQN: pxe.NodeTarget})
	// The recipe's LUN is 1a: the disk moves from LUN 1 to LUN 26, so
	// that only a boot that reached LUN 1a finds it.
	if err := pxe.MoveLUN(tg.Server, exp.TID, 1, pxe.NodeLUN, exp.LUNs[0]); err != nil {
		t.Fatal(err)
	}
	if len(extra.ACL) > 0 {
		// tgtd's target ACL (tgtadm --op bind --mode target
		// --initiator-name): tgtd answers a login by any other name with
		// status 02/03, "not found" (RFC 7143 §11.13.5), as if the target
		// did not exist, not with 02/02.
		tid := strconv.Itoa(exp.TID)
		if err := tg.Admin("--op", "unbind", "--mode", "target", "--tid", tid, "-I", "ALL"); err != nil {
			t.Fatal(err)
		}
		for _, name := range extra.ACL {
			if err := tg.Admin("--op", "bind", "--mode", "target", "--tid", tid, "--initiator-name", name); err != nil {
				t.Fatal(err)
			}
		}
		// The export is the only target: its ACL ends tgtadm's listing.
		out, err := tg.AdminOutput("--op", "show", "--mode", "target")
		if err != nil {
			t.Fatal(err)
		}
		_, acl, _ := strings.Cut(out, "ACL information:")
		if got := strings.Fields(acl); strings.Join(got, " ") != strings.Join(extra.ACL, " ") {
			t.Fatalf("tgtd's ACL = %q, want only %q; tgtadm --op show:\n%s", got, extra.ACL, out)
		}
	}
	r, err := pxe.Prepare(l, pxe.Options{Repo: testenv.RepoRoot(), Kernel: s.kernel, Initrd: s.image,
		Script: script, KernelArgs: baseCmdline, HTTP: http})
	if err != nil {
		t.Fatal(err)
	}
	d := labtest.DHCP(t, l, lab.DHCPConfig{ConfFile: r.ConfFile, Args: extra.DHCPArgs})
	return l, exp, d, r
}

// netboot starts a guest that boots from its NIC's iPXE ROM, with extra
// QEMU arguments qemuArgs, and waits for lunboot's first line.
func (s *suite) netboot(t *testing.T, l *lab.Lab, mac net.HardwareAddr, qemuArgs ...string) *machine {
	t.Helper()
	cfg := lab.VMConfig{Name: "pxe", NetBoot: true, Args: qemuArgs}
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
	l, exp, d, rec := s.pxeLab(t, name, "", http, disk, pxeExtra{})
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
	l, exp, d, rec := s.pxeLab(t, "e2e-sanhook", script, false, disk, pxeExtra{})

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

// TestIPXEInitiatorName checks lunboot.initiator=ipxe against the real
// iPXE (issue 17): a target whose ACL was written for iPXE's sanboot keeps
// working when the machine moves to lunboot. The target accepts only
// iqn.2010-04.org.ipxe:<the guest's SMBIOS UUID>, set with QEMU's -uuid (a
// UUID whose fields show a byte-order mistake); the NIC ROM runs
// docs/deploy.md's sanhook script, so iPXE's own login, accepted by that
// ACL, proves the name is iPXE's. lunboot, started with
// lunboot.initiator=ipxe instead of the script's rd.iscsi.firmware=1, gets
// node7's root-path and initiator name (options 17 and 203, by a host line
// without a host name, so neither iPXE nor lunboot gets option 12): the
// target comes from DHCP, not the iBFT, and the initiator name must be
// lunboot's own derivation from the UUID, beating both option 203 (which
// the ACL refuses) and the iBFT's.
func TestIPXEInitiatorName(t *testing.T) {
	const (
		uuid = "01234567-89ab-cdef-0123-456789abcdef"
		name = "iqn.2010-04.org.ipxe:" + uuid // iPXE's iscsi_fetch_settings
		mac  = "52:54:00:12:34:57"            // not node7's, tagged node7
	)
	s := setup(t)
	disk := s.disk(t, fixtures.GPTBLS)
	script, err := pxe.SanhookScript(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	const firmwareFirst = " rd.iscsi.firmware=1"
	if !strings.Contains(script, firmwareFirst) {
		t.Fatalf("docs/deploy.md's sanhook script no longer has %q on its kernel line:\n%s", firmwareFirst, script)
	}
	script = strings.Replace(script, firmwareFirst, " lunboot.initiator=ipxe", 1)
	l, exp, d, rec := s.pxeLab(t, "e2e-ipxe-name", script, false, disk, pxeExtra{
		DHCPArgs: []string{"--dhcp-host=" + mac + ",set:node7"},
		ACL:      []string{name},
	})
	hw, _ := net.ParseMAC(mac)

	m := s.netboot(t, l, hw, "-uuid", uuid)
	r, _ := m.probeResult()

	fw := firmwareConsole(t, m)
	contains(t, "iPXE's console", fw, "Registered SAN device 0x80")

	evs := m.stages()
	bootsOS(t, evs)
	contains(t, "config stage", summary(evs, "config"), "firmware iBFT found")
	contains(t, "network stage", summary(evs, "network"), "root-path from option 17")
	contains(t, "target stage", summary(evs, "target"),
		fmt.Sprintf("%s LUN 1a (Linux LUN 26) at %s as %s", pxe.NodeTarget, exp.Portal, name))
	sec := bootlog.Section(m.Console())
	contains(t, "lunboot console", sec, "LUN 1a = Linux LUN 26) (from DHCP option 17)",
		"initiator "+name+" (from kernel cmdline lunboot.initiator=ipxe, iPXE's form with the SMBIOS system UUID)")
	if strings.Contains(sec, "(from iBFT") {
		t.Errorf("lunboot took its target or initiator name from the iBFT, want option 17 and lunboot.initiator=ipxe")
	}

	xs, err := pxe.CheckChain(d.LogFile(), rec.ScriptURL, true)
	if err != nil {
		t.Error(err)
	}
	for _, x := range xs {
		// A host name would have been iPXE's name instead of the UUID.
		if h, ok := x.Options[12]; ok {
			t.Errorf("dnsmasq sent host name %q (transaction %s): the names come from the UUID only without one", h, x.XID)
		}
		if _, ok := x.Options[203]; x.VendorClass == "lunboot" && !ok {
			t.Errorf("dnsmasq's answer to lunboot (transaction %s) had no option 203 for lunboot.initiator=ipxe to beat", x.XID)
		}
	}

	checkProbe(t, r, disk, "bls-default")
	checkNode7(t, r, disk, exp, name)
}
