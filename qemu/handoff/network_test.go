package handoff_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	pkghandoff "github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
)

// The lab networks of issue 14 (VLAN, host names, static), each booted to
// the OS's proof.

// stageText returns lunboot's stage line for name.
func (b *booted) stageText(t *testing.T, name string) string {
	t.Helper()
	s, ok := bootlog.Find(b.stages, name)
	if !ok {
		t.Errorf("no %s stage line", name)
	}
	return s.Text
}

// osHas reports whether the OS has an interface named name with mac, and
// lists what it has.
func (b *booted) osHas(name, mac string) (bool, []string) {
	var nics []string
	found := false
	for _, n := range b.os.Proof.Net {
		found = found || n.Name == name && n.MAC == mac
		nics = append(nics, n.Name+" "+n.MAC+" "+strings.Join(n.Addrs, ","))
	}
	return found, nics
}

// TestVLANDracut: the target and DHCP exist only on VLAN 100 (the guest's
// port is a trunk, untagged frames reach nothing). lunboot boots with
// dracut's vlan=eth0.100:eth0 ip=eth0.100:dhcp, and the dracut OS gets the
// VLAN both on its command line (ifname=/vlan=/ip=) and in the iBFT, and
// logs in again over the VLAN.
func TestVLANDracut(t *testing.T) { vlanDracut(t, setup(t)) }

func vlanDracut(t *testing.T, e *env) {
	m := e.startOn(t, e.set.Dracut, poweroff, nil, "", handoff.Network{VLAN: 100}, qemuvm.BIOS)
	// Mode both: the OS kernel installs the table (boot checks), but
	// dracut loads iscsi_ibft only in firmware mode, so /sys/firmware/ibft
	// is absent; TestVLANDracutIBFT covers the table's VLAN.
	b := boot(t, m, nil)
	b.wantMode(t, "both")
	if s := b.stageText(t, "network"); !strings.Contains(s, "eth0.100 (") || !strings.Contains(s, "VLAN 100 on eth0") {
		t.Errorf("network stage %q, want the lease on eth0.100, VLAN 100 on eth0", s)
	}
	dev := pkghandoff.VLANParent + ".100"
	b.wantArgs(t, map[string]string{
		"netroot": fmt.Sprintf("iscsi:%s::%d:1:%s", m.Export.Portal.Addr(), m.Export.Portal.Port(), m.Export.IQN),
		"ifname":  pkghandoff.VLANParent + ":" + m.MAC().String(),
		"vlan":    dev + ":" + pkghandoff.VLANParent,
		"ip":      dev + ":dhcp",
	})
	b.noArgs(t, "BOOTIF")
	if ok, nics := b.osHas(dev, m.MAC().String()); !ok {
		t.Errorf("the OS's interfaces are %v, want %s with MAC %s", nics, dev, m.MAC())
	}
	t.Logf("OS command line: %s", b.os.Proof.Cmdline)
}

// TestVLANDracutIBFT: the same in firmware mode (lunboot.handoff=ibft):
// the target from the table, whose NIC record carries VLAN 100, and the
// VLAN on the command line (dracut 059's own iBFT reader would put the
// address on the untagged parent).
func TestVLANDracutIBFT(t *testing.T) {
	testenv.Full(t)
	vlanDracutIBFT(t, setup(t))
}

func vlanDracutIBFT(t *testing.T, e *env) {
	m := e.startOn(t, e.set.Dracut, "lunboot.handoff=ibft "+poweroff, nil, "", handoff.Network{VLAN: 100}, qemuvm.BIOS)
	b := boot(t, m, &yes)
	b.wantMode(t, "ibft")
	b.wantArgs(t, map[string]string{"rd.iscsi.firmware": "1", "vlan": pkghandoff.VLANParent + ".100:" + pkghandoff.VLANParent})
	b.noArgs(t, "netroot", "rd.iscsi.ibft")
	b.wantIBFT(t, map[string]string{"ethernet0/vlan": "100"})
	t.Logf("OS command line: %s; its interfaces: %v", b.os.Proof.Cmdline, b.os.Proof.Net)
}

// TestVLANInitramfsToolsRefused: over a VLAN, lunboot refuses the
// initramfs-tools disk before kexec, saying why.
func TestVLANInitramfsToolsRefused(t *testing.T) {
	testenv.Full(t)
	e := setup(t)
	m := e.startOn(t, e.set.Debian, "", nil, "", handoff.Network{VLAN: 100}, qemuvm.BIOS)
	err := m.WaitJump(t.Context(), jumpTimeout)
	var bf *handoff.BootFailedError
	if !errors.As(err, &bf) || bf.Stage != "handoff" || !strings.Contains(bf.Error(), "klibc's ipconfig has no VLANs") {
		t.Fatalf("WaitJump() = %v, want lunboot to refuse in its handoff stage naming klibc's ipconfig", err)
	}
}

// TestHostNameDracut: option 17 names the portal by host name, which the
// lab's dnsmasq resolves; lunboot resolves it through the lease's DNS
// server, and the dracut OS gets the name (it resolves it itself).
func TestHostNameDracut(t *testing.T) { hostNameDracut(t, setup(t)) }

func hostNameDracut(t *testing.T, e *env) {
	host := "target." + lab.DNSDomain
	m := e.startOn(t, e.set.Dracut, poweroff, nil, "", handoff.Network{TargetHost: host}, qemuvm.BIOS)
	b := boot(t, m, nil)
	if !regexp.MustCompile(`login: ` + regexp.QuoteMeta(host) + ` is ` + regexp.QuoteMeta(m.Export.Portal.Addr().String()) + ` \(DNS `).MatchString(bootlog.Section(m.Console())) {
		t.Errorf("lunboot's console does not say it resolved %s to %s", host, m.Export.Portal.Addr())
	}
	b.wantArgs(t, map[string]string{"netroot": fmt.Sprintf("iscsi:%s::%d:1:%s", host, m.Export.Portal.Port(), m.Export.IQN)})
	t.Logf("OS command line: %s", b.os.Proof.Cmdline)
}

// TestHostNameInitramfsTools: the same for the initramfs-tools OS, which
// gets the address (its iSCSI script has no resolver configured).
func TestHostNameInitramfsTools(t *testing.T) {
	testenv.Full(t)
	hostNameInitramfsTools(t, setup(t))
}

func hostNameInitramfsTools(t *testing.T, e *env) {
	host := "target." + lab.DNSDomain
	m := e.startOn(t, e.set.Debian, poweroff, nil, "", handoff.Network{TargetHost: host}, qemuvm.BIOS)
	b := boot(t, m, nil)
	b.wantArgs(t, map[string]string{"iscsi_target_ip": m.Export.Portal.Addr().String()})
	if strings.Contains(b.os.Proof.Cmdline, host) {
		t.Errorf("OS command line %q names %s, want the address only", b.os.Proof.Cmdline, host)
	}
	t.Logf("OS command line: %s", b.os.Proof.Cmdline)
}

// TestStatic: no DHCP server at all; lunboot configures the static ip=
// and logs in to netroot=, and the initramfs-tools OS gets the same static
// address on its command line and in the iBFT.
func TestStatic(t *testing.T) {
	e := setup(t)
	m := e.startOn(t, e.set.Debian, poweroff, nil, "", handoff.Network{Static: true}, qemuvm.BIOS)
	b := boot(t, m, nil)
	a := handoff.StaticAddr(m.Lab())
	if s := b.stageText(t, "network"); !strings.Contains(s, a.String()) || !strings.Contains(s, "static") {
		t.Errorf("network stage %q, want the static %s", s, a)
	}
	ip, _ := pkghandoff.Get(pkghandoff.ParseCmdline(b.os.Proof.Cmdline), "ip")
	if want := a.Addr().String() + "::" + m.Lab().ServerIP().String() + ":255.255.255.0:" + handoff.StaticHostname + "::off"; ip != want {
		t.Errorf("OS ip=%q, want %q", ip, want)
	}
	t.Logf("OS command line: %s", b.os.Proof.Cmdline)
}
