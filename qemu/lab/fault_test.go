package lab_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// TestTargetFaults checks the target side of the fault API from where a
// guest stands (a client namespace on the lab's bridge): a second portal
// address with its own tgtd, its link cut and restored, tgtd killed and
// restarted, while the first portal keeps answering throughout.
func TestTargetFaults(t *testing.T) {
	l := labtest.Start(t, lab.Options{Name: "faults"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	addr, err := l.AddServerAddr(ctx)
	if err != nil {
		t.Fatalf("AddServerAddr: %v", err)
	}
	if addr == l.ServerIP() || !l.Prefix().Contains(addr) {
		t.Fatalf("AddServerAddr = %s, want another address in %s", addr, l.Prefix())
	}
	if _, err := l.StartTarget(ctx, lab.TargetOptions{Addr: netip.MustParseAddr("10.254.254.254")}); err == nil {
		t.Errorf("StartTarget on an address the bridge lacks succeeded, want an error")
	}
	first := labtest.Target(t, l)
	second, err := l.StartTarget(ctx, lab.TargetOptions{Addr: addr})
	if err != nil {
		t.Fatalf("StartTarget(%s): %v", addr, err)
	}
	e1, err := first.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:mp", Images: []string{img}, Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Export(lab.ExportSpec{IQN: e1.IQN, Images: e1.LUNs, Direct: true}); err != nil {
		t.Fatal(err)
	}
	if second.Portal().Addr() != addr {
		t.Errorf("second portal = %s, want address %s", second.Portal(), addr)
	}

	// A client namespace, like a guest: eth0 joined to the bridge.
	cns := l.NetNS() + "-c90"
	h := netns.Harness{Run: netns.Run}
	if err := h.Add(ctx, cns); err != nil {
		t.Fatal(err)
	}
	if err := h.AddVeth(ctx, netns.End{NS: l.NetNS(), Name: "vc90", Master: l.Bridge(), Up: true}, netns.End{NS: cns, Name: "eth0", Up: true}); err != nil {
		t.Fatal(err)
	}
	ca := l.Prefix().Addr().As4()
	ca[3] = 90
	if _, err := netns.Run(ctx, "ip", "-n", cns, "addr", "add", netip.PrefixFrom(netip.AddrFrom4(ca), 24).String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	dial := func(p netip.AddrPort) error {
		return netns.Do(cns, func() error {
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			var d net.Dialer
			c, err := d.DialContext(dctx, "tcp", p.String())
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	check := func(when string, p netip.AddrPort, want bool) {
		t.Helper()
		err := dial(p)
		if want && err != nil {
			t.Errorf("%s: dial %s = %v, want a connection", when, p, err)
		}
		if !want && err == nil {
			t.Errorf("%s: dial %s connected, want a failure", when, p)
		}
	}
	check("both up", first.Portal(), true)
	check("both up", second.Portal(), true)

	if err := second.SetLink(ctx, false); err != nil {
		t.Fatalf("SetLink(down): %v", err)
	}
	check("second portal's link down", second.Portal(), false)
	check("second portal's link down", first.Portal(), true)
	if err := second.SetLink(ctx, false); err != nil {
		t.Errorf("SetLink(down) twice: %v", err)
	}
	if err := second.SetLink(ctx, true); err != nil {
		t.Fatalf("SetLink(up): %v", err)
	}
	check("second portal's link back", second.Portal(), true)

	second.Kill()
	check("second tgtd killed", second.Portal(), false)
	check("second tgtd killed", first.Portal(), true)
	if err := second.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	check("second tgtd restarted", second.Portal(), true)
}
