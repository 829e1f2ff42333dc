package netns_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/internal/netns/netnstest"
)

// deadPID returns a process ID that is not in use.
func deadPID(t *testing.T) int {
	t.Helper()
	for pid := 4000000; pid > 3000000; pid -= 997 {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return pid
		}
	}
	t.Fatal("no unused process ID found")
	return 0
}

func TestNames(t *testing.T) {
	a, sa := netns.NewName("x")
	b, sb := netns.NewName("x")
	if a == b || sb != sa+1 {
		t.Errorf("NewName twice = %q (%d), %q (%d); want distinct names, consecutive numbers", a, sa, b, sb)
	}
	if want := fmt.Sprintf("lunboot-%d-%d-x", os.Getpid(), sa); a != want {
		t.Errorf("NewName = %q, want %q", a, want)
	}
	dead := deadPID(t)
	for _, tt := range []struct {
		name string
		gone bool
	}{
		{a, false}, // this process
		{fmt.Sprintf("lunboot-%d-3-lab", dead), true},
		{fmt.Sprintf("lunboot-%d-3", dead), true},
		{"lunboot-1-3-init", false}, // init is alive
		{fmt.Sprintf("other-%d-3", dead), false},
		{"lunboot-x-3", false},
	} {
		if got := netns.OwnerGone(tt.name); got != tt.gone {
			t.Errorf("OwnerGone(%q) = %v, want %v", tt.name, got, tt.gone)
		}
	}
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func exists(t *testing.T, ns string) bool {
	t.Helper()
	names, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(names, ns)
}

// TestWiring builds what the lab builds — a bridge with addresses and a
// tap, and a client namespace joined to the bridge by a veth — and checks
// the result, that nothing routes out, and that Delete ends a process left
// inside.
func TestWiring(t *testing.T) {
	set := netnstest.New(t, "wiring")
	srv, cli := set.Add("s"), set.Add("c")
	var h netns.Harness
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := netip.MustParsePrefix("10.99.1.1/24")
	if err := h.AddBridge(ctx, srv, netns.Bridge{Name: "br0", Addrs: []netip.Prefix{addr, netip.MustParsePrefix("fd00:99::1/64")}}); err != nil {
		t.Fatal(err)
	}
	if err := h.AddTap(ctx, srv, "tap0", "br0"); err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0x02, 0, 0, 0x99, 0, 1}
	if err := h.AddVeth(ctx, netns.End{NS: srv, Name: "vc1", Master: "br0", Up: true}, netns.End{NS: cli, Name: "eth0", MAC: mac, Up: true}); err != nil {
		t.Fatal(err)
	}
	if out := ip(t, "-n", srv, "-br", "addr", "show", "br0"); !strings.Contains(out, "10.99.1.1/24") || !strings.Contains(out, "fd00:99::1/64") {
		t.Errorf("br0 in %s: %q, want both addresses", srv, out)
	}
	for _, port := range []string{"tap0", "vc1"} {
		if out := ip(t, "-n", srv, "link", "show", port); !strings.Contains(out, "master br0") {
			t.Errorf("%s in %s: %q, want a port of br0", port, srv, out)
		}
	}
	if out := ip(t, "-n", cli, "link", "show", "eth0"); !strings.Contains(out, mac.String()) || !strings.Contains(out, ",UP") {
		t.Errorf("eth0 in %s: %q, want %s and up", cli, out, mac)
	}
	for _, ns := range []string{srv, cli} {
		for _, fam := range []string{"-4", "-6"} {
			if out := strings.TrimSpace(ip(t, fam, "-n", ns, "route", "show", "default")); out != "" {
				t.Errorf("ip %s route in %s: a default route %q", fam, ns, out)
			}
		}
	}

	// A process inside keeps a namespace's interfaces alive; Delete
	// kills it first.
	stray := exec.Command("ip", "netns", "exec", cli, "sleep", "600")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { stray.Wait(); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); strings.TrimSpace(ip(t, "netns", "pids", cli)) == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the process did not enter %s", cli)
		}
	}
	if err := h.Delete(ctx, cli); err != nil {
		t.Fatalf("Delete(%s) = %v", cli, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("the process inside %s survived Delete", cli)
	}
	if exists(t, cli) {
		t.Errorf("%s still listed after Delete", cli)
	}
	// The veth pair goes with its end, once the kernel's namespace
	// cleanup (a work queue, net/core/net_namespace.c) has run.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := ip(t, "-n", srv, "-br", "link")
		if !strings.Contains(out, "vc1") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("vc1 survived in %s for 10 s: %q", srv, out)
			break
		}
	}
}

// TestSweepStale checks that a namespace named by a process that is gone
// is removed, and one of a live process is not.
func TestSweepStale(t *testing.T) {
	set := netnstest.New(t, "sweep")
	live := set.Add("live")
	stale := fmt.Sprintf("lunboot-%d-1-stale", deadPID(t))
	ip(t, "netns", "add", stale)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", stale).Run() })
	var notes []string
	h := netns.Harness{Logf: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }}
	if err := h.SweepStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exists(t, stale) {
		t.Errorf("stale namespace %s survived SweepStale", stale)
	}
	if !exists(t, live) {
		t.Errorf("SweepStale removed %s, whose process is alive", live)
	}
	if !slices.ContainsFunc(notes, func(s string) bool { return strings.Contains(s, stale) }) {
		t.Errorf("notes %q do not name %s", notes, stale)
	}
}
