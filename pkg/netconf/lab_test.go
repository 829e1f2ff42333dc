package netconf

// The tests against dnsmasq run in network namespaces this file creates
// with the project's namespace harness (internal/netns, netnstest):
// a client namespace whose veth ends play the NICs, and peer namespaces
// holding dnsmasq (or nothing, for a link without a server, or a peer left
// down, for a link without carrier).
//
// The client code runs by re-executing this test binary under
// `ip netns exec <client-ns>` with LUNBOOT_NETCONF_CHILD naming a scenario
// (TestNetnsChild dispatches it). That puts every thread of the process in
// the namespace — the package spawns goroutines, nclient4 a receive loop,
// netlink opens sockets per call — and `ip netns exec` also remounts /sys
// so /sys/class/net shows the namespace's links, exactly as the package
// sees them in a real boot. Switching one locked OS thread with setns would
// leave the other threads, and sysfs, in the host namespace.
//
// Every namespace and process is registered with t.Cleanup (a namespace's
// removal kills whatever is still inside); dnsmasq also gets SIGKILL if the
// test binary dies (Pdeathsig), and namespaces left by a killed run are
// removed by the next one, or by the next lab (names carry the creator's
// pid).

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/internal/netns/netnstest"
	"github.com/lunboot/lunboot/internal/testenv"
)

const childEnv = "LUNBOOT_NETCONF_CHILD"

// lab is a set of network namespaces for one test, made and removed by the
// project's one namespace harness (internal/netns).
type lab struct {
	t *testing.T
	*netnstest.Set
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return &lab{t: t, Set: netnstest.New(t, "netconf")}
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	l.Run(args...)
}

// netns creates a namespace (loopback up) and returns its name.
func (l *lab) netns(short string) string {
	l.t.Helper()
	return l.Add(short)
}

// veth joins ifA (MAC macA, left down: the code under test raises it) in
// nsA to ifB in nsB; ifB is set up when peerUp, else it stays down and ifA
// never gets carrier.
func (l *lab) veth(nsA, ifA, macA, nsB, ifB string, peerUp bool) {
	l.t.Helper()
	mac, err := net.ParseMAC(macA)
	if err != nil {
		l.t.Fatal(err)
	}
	l.Veth(nsA, ifA, mac, nsB, ifB, peerUp)
}

// dnsmasq is a dnsmasq serving DHCP in a namespace.
type dnsmasq struct {
	log string
}

// dnsmasq starts dnsmasq on iface (given addr, e.g. 192.168.77.1/24) in ns
// with the DHCP options in extra, waits until it serves, and registers its
// end with t.Cleanup.
func (l *lab) dnsmasq(ns, iface, addr string, extra ...string) *dnsmasq {
	l.t.Helper()
	bin := testenv.RequireBinaries(l.t, "dnsmasq")[0]
	l.run("ip", "-n", ns, "addr", "add", addr, "dev", iface)
	l.run("ip", "-n", ns, "link", "set", iface, "up")
	dir := l.t.TempDir()
	d := &dnsmasq{log: filepath.Join(dir, "dnsmasq.log")}
	args := netns.Exec(ns, bin,
		"--no-daemon", // foreground, no fork, no pid file, no user change
		"--conf-file=/dev/null",
		"--port=0", // no DNS
		"--interface="+iface, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"),
		"--log-facility="+d.log, "--log-dhcp",
		"--dhcp-authoritative",
	)
	args = append(args, extra...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if l.t.Failed() || os.Getenv("LUNBOOT_NETCONF_DNSMASQ_LOG") != "" {
			b, _ := os.ReadFile(d.log)
			l.t.Logf("dnsmasq log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(d.log)
		if bytes.Contains(b, []byte("DHCP, IP range")) {
			return d
		}
		select {
		case err := <-exited:
			exited <- err
			l.t.Fatalf("dnsmasq exited at start: %v\n%s\n%s", err, stderr.Bytes(), b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("dnsmasq not serving after 10s; log:\n%s\nstderr:\n%s", b, stderr.Bytes())
		}
	}
}

// contains fails the test unless dnsmasq's log has every string in want.
func (d *dnsmasq) contains(t *testing.T, want ...string) {
	t.Helper()
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !bytes.Contains(b, []byte(w)) {
			t.Errorf("dnsmasq log lacks %q", w)
		}
	}
}

// child runs scenario in namespace ns by re-executing the test binary
// there, and fails the test if the scenario failed (or did not run).
func (l *lab) child(ns, scenario string) {
	l.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := netns.Exec(ns, exe, "-test.run=^TestNetnsChild$", "-test.v", "-test.count=1", "-test.timeout=150s")
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+scenario)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	l.t.Logf("child %s in %s:\n%s", scenario, ns, out)
	if err != nil {
		l.t.Fatalf("child scenario %s failed: %v", scenario, err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestNetnsChild")) {
		l.t.Fatalf("child scenario %s did not run", scenario)
	}
}

// TestNetnsChild runs a scenario inside a namespace; the tests in this file
// start it through lab.child.
func TestNetnsChild(t *testing.T) {
	name := os.Getenv(childEnv)
	if name == "" {
		t.Skip("helper: runs only when re-executed inside a network namespace by the lab tests")
	}
	f, ok := scenarios[name]
	if !ok {
		t.Fatalf("unknown scenario %q", name)
	}
	f(t)
}
