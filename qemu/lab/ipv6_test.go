package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// TestIPv6OnlyLab: the bridge has no IPv4 address, tgtd listens on the
// ULA address, the export's root-path brackets it, and dnsmasq serves
// DHCPv6 (not DHCPv4) with router advertisements and option 59.
func TestIPv6OnlyLab(t *testing.T) {
	l := labtest.Start(t, lab.Options{Name: "ipv6", IPv6Only: true})
	if !l.IPv6Only() || l.ServerAddr() != l.ServerIP6() {
		t.Fatalf("ServerAddr() = %v, want the ULA address %v", l.ServerAddr(), l.ServerIP6())
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := labtest.Target(t, l)
	exp, err := tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:v6", Images: []string{img}})
	if err != nil {
		t.Fatal(err)
	}
	want := "iscsi:[" + l.ServerIP6().String() + "]::3260:1:iqn.2026-11.org.lunboot.lab:v6"
	if exp.RootPath() != want {
		t.Errorf("RootPath() = %q, want %q", exp.RootPath(), want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.DialContext(ctx, "tcp", exp.Portal.String())
	if err != nil {
		t.Fatalf("dial the portal %s in the namespace: %v", exp.Portal, err)
	}
	c.Close()
	if c, err := l.DialContext(ctx, "tcp", "10.0.0.1:3260"); err == nil {
		c.Close()
		t.Errorf("an IPv4 portal answers in an IPv6-only lab")
	}
	d := labtest.DHCP(t, l, lab.DHCPConfig{DHCPv6: true, BootFileURL: exp.RootPath()})
	b, err := os.ReadFile(d.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	if !strings.Contains(log, "DHCPv6, IP range") || strings.Contains(log, "DHCP, IP range") || !strings.Contains(log, "router advertisement") {
		t.Errorf("dnsmasq log does not show DHCPv6 and router advertisements without DHCPv4:\n%s", log)
	}
	cmds, err := os.ReadFile(filepath.Join(l.LogDir(), "commands.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cmds), "(no IPv4)") || !strings.Contains(string(cmds), "option6:bootfile-url,"+exp.RootPath()) {
		t.Errorf("commands.log does not show the IPv6-only bridge and option 59")
	}
}
