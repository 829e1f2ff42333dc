package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// namespaceExists reports whether ip netns lists ns.
func namespaceExists(t *testing.T, ns string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == ns {
			return true
		}
	}
	return false
}

// nsPIDs returns the processes inside ns.
func nsPIDs(t *testing.T, ns string) []int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", ns).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v: %s", ns, err, out)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ip netns pids %s: %q", ns, f)
		}
		pids = append(pids, n)
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state …: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func kernelImage(t *testing.T) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(testenv.KernelDir(), "boot", "vmlinuz-*"))
	if len(ms) != 1 {
		testenv.Missing(t, "the Debian kernel in "+testenv.KernelDir()+" (make deps)")
	}
	return ms[0]
}

// TestUpDown starts every component, plus a process the lab does not know
// about, and checks that Close leaves no namespace, interface or process
// behind.
func TestUpDown(t *testing.T) {
	labtest.Require(t)
	kernel := kernelImage(t)
	ctx := context.Background()
	// A relative log folder, as make demo passes one (-out out): dnsmasq
	// and tgtd change to / before they write their files, so the lab
	// must hand them absolute paths.
	t.Chdir(t.TempDir())
	l, err := lab.New(ctx, lab.Options{Name: "updown", Taps: 2, LogDir: "logs"})
	if err != nil {
		t.Fatalf("lab.New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	ns := l.NetNS()
	if !namespaceExists(t, ns) {
		t.Fatalf("namespace %s not listed after New", ns)
	}
	out, err := exec.Command("ip", "-n", ns, "-br", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link: %v: %s", ns, err, out)
	}
	for _, want := range []string{l.Bridge(), "tap0", "tap1"} {
		if !regexp.MustCompile(`(?m)^` + want + `\s`).Match(out) {
			t.Errorf("interface %s missing in %s:\n%s", want, ns, out)
		}
	}
	// No route out: the namespace only knows its own subnets.
	routes, _ := exec.Command("ip", "-n", ns, "route", "show", "default").CombinedOutput()
	if strings.TrimSpace(string(routes)) != "" {
		t.Errorf("namespace %s has a default route: %s", ns, routes)
	}

	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: "iscsi:" + l.ServerIP().String() + "::::iqn.2026-11.org.lunboot.lab:x"}); err != nil {
		t.Fatalf("StartDHCP: %v", err)
	}
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		t.Fatalf("StartTarget: %v", err)
	}
	control := tg.ControlPort()
	// Without a root file system the kernel panics; panic=0 leaves it
	// halted, so QEMU is still running when the processes are counted and
	// Close must kill it (with panic=-1 it rebooted, and -no-reboot ended
	// QEMU before the count on a fast run).
	vm, err := l.StartVM(ctx, lab.VMConfig{Kernel: kernel, Cmdline: "panic=0"})
	if err != nil {
		t.Fatalf("StartVM: %v", err)
	}
	if _, err := vm.ExpectWithin(ctx, 3*time.Minute, regexp.MustCompile(`Linux version \S+`)); err != nil {
		t.Fatal(err)
	}
	// The fault API reaches the guest through its monitor socket.
	for _, up := range []bool{false, true} {
		if err := vm.SetLink(ctx, 0, up); err != nil {
			t.Errorf("SetLink(NIC 0, up=%v): %v", up, err)
		}
	}
	if err := vm.SetLink(ctx, 1, false); err == nil {
		t.Errorf("SetLink(NIC 1) on a guest with one NIC succeeded, want an error")
	}
	// A process the lab did not start, inside its namespace.
	stray := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	if err := stray.Start(); err != nil {
		t.Fatalf("stray process: %v", err)
	}
	go stray.Wait()

	// ip netns exec enters the namespace after Start returns: give it a
	// moment before counting.
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pids = nsPIDs(t, ns)
		if len(pids) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	if len(pids) < 4 { // dnsmasq, tgtd, qemu, sleep
		t.Errorf("processes in %s = %v, want at least dnsmasq, tgtd, qemu and sleep", ns, pids)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if namespaceExists(t, ns) {
		t.Errorf("namespace %s still listed after Close", ns)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d (%s) still running after Close", pid, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", control)); err == nil {
		t.Errorf("tgtd control socket %d still present after Close", control)
	}
	if _, err := os.Stat(l.WorkDir()); err == nil {
		t.Errorf("work folder %s still present after Close", l.WorkDir())
	}
	if _, err := l.StartVM(ctx, lab.VMConfig{Kernel: kernel}); err == nil {
		t.Errorf("StartVM after Close succeeded, want an error")
	}
}

// TestStaleNamespaceSwept checks that a new lab removes a namespace and a
// work folder left by a lab process that died without cleaning up.
func TestStaleNamespaceSwept(t *testing.T) {
	labtest.Require(t)
	// Find a process ID that is not in use.
	dead := 0
	for pid := 4000000; pid > 3000000; pid -= 997 {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			dead = pid
			break
		}
	}
	if dead == 0 {
		t.Fatal("no unused process ID found")
	}
	stale := fmt.Sprintf("lunboot-%d-1-stale", dead)
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", stale, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", stale).Run() })
	staleWork := filepath.Join(os.TempDir(), fmt.Sprintf("lunboot-lab-%d-1-x", dead))
	if err := os.MkdirAll(filepath.Join(staleWork, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(staleWork) })
	l := labtest.Start(t, lab.Options{Name: "sweep"})
	if namespaceExists(t, stale) {
		t.Errorf("stale namespace %s survived lab.New", stale)
	}
	if _, err := os.Stat(staleWork); err == nil {
		t.Errorf("stale work folder %s survived lab.New", staleWork)
	}
	if !namespaceExists(t, l.NetNS()) {
		t.Errorf("the new lab's namespace %s is missing", l.NetNS())
	}
}

// TestDHCPLease checks what dnsmasq hands a DHCP client in a second
// namespace: option 17, 203 and 43 exactly as configured, and the root-path
// only to a client that asks for it.
func TestDHCPLease(t *testing.T) {
	l := labtest.Start(t, lab.Options{Name: "dhcp"})
	rootPath := "iscsi:" + l.ServerIP().String() + "::3260:1:iqn.2026-11.org.lunboot.lab:disk"
	vendor := []lab.SubOption{{Code: 201, Data: []byte(rootPath)}, {Code: 203, Data: []byte("iqn.2026-11.org.lunboot:v")}}
	d := labtest.DHCP(t, l, lab.DHCPConfig{
		RootPath:      rootPath,
		InitiatorName: "iqn.2026-11.org.lunboot:client",
		VendorOptions: vendor,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01}
	lease, err := l.RequestLease(ctx, mac, dhcpv4.WithRequestedOptions(
		dhcpv4.OptionRootPath, dhcpv4.GenericOptionCode(203), dhcpv4.OptionVendorSpecificInformation))
	if err != nil {
		t.Fatalf("RequestLease: %v", err)
	}
	ack := lease.ACK
	if !l.Prefix().Contains(mustAddr(t, ack.YourIPAddr)) {
		t.Errorf("leased address %s outside the lab's %s", ack.YourIPAddr, l.Prefix())
	}
	if got := ack.RootPath(); got != rootPath {
		t.Errorf("option 17 = %q, want %q", got, rootPath)
	}
	if got := string(ack.Options.Get(dhcpv4.GenericOptionCode(203))); got != "iqn.2026-11.org.lunboot:client" {
		t.Errorf("option 203 = %q, want %q", got, "iqn.2026-11.org.lunboot:client")
	}
	var want43 []byte
	for _, o := range vendor {
		want43 = append(append(want43, o.Code, byte(len(o.Data))), o.Data...)
	}
	if got := ack.Options.Get(dhcpv4.OptionVendorSpecificInformation); string(got) != string(want43) {
		t.Errorf("option 43 = %x, want %x", got, want43)
	}
	leases, err := d.Leases()
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	found := false
	for _, ls := range leases {
		found = found || ls.MAC.String() == mac.String() && ls.IP == mustAddr(t, ack.YourIPAddr)
	}
	if !found {
		t.Errorf("Leases() = %v, want one for %s at %s", leases, mac, ack.YourIPAddr)
	}

	// A client that does not ask for option 17 does not get it, as with
	// ISC dhcpd: lunboot must put 17 in its parameter request list.
	plain, err := l.RequestLease(ctx, net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02},
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask))
	if err != nil {
		t.Fatalf("RequestLease without option 17: %v", err)
	}
	if got := plain.ACK.RootPath(); got != "" {
		t.Errorf("client that did not request option 17 got %q", got)
	}
}

func mustAddr(t *testing.T, ip net.IP) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		t.Fatalf("bad address %v", ip)
	}
	return a
}

// TestTargetLateStartRestart checks the target's life cycle from the host,
// through the lab's namespace (DialContext, as an initiator under test would
// connect): a portal that appears after a delay, a restart that keeps the
// exports, and a stop that closes the portal.
func TestTargetLateStartRestart(t *testing.T) {
	l := labtest.Start(t, lab.Options{Name: "late"})
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	const delay = 3 * time.Second
	var exp *lab.Export
	began := time.Now()
	lt, err := l.StartTargetAfter(delay, lab.TargetOptions{}, func(tg *lab.Target) error {
		var err error
		exp, err = tg.Export(lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:late", Images: []string{img}})
		return err
	})
	if err != nil {
		t.Fatalf("StartTargetAfter: %v", err)
	}
	portal := netip.AddrPortFrom(l.ServerIP(), 3260).String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := l.DialContext(ctx, "tcp", portal); err == nil {
		c.Close()
		if time.Since(began) < delay {
			t.Errorf("portal %s accepted a connection before the target's delay", portal)
		}
	}
	tg, err := lt.Wait(ctx)
	if err != nil {
		t.Fatalf("late target: %v", err)
	}
	if time.Since(began) < delay {
		t.Errorf("late target up after %s, want at least %s", time.Since(began), delay)
	}
	// serving: the portal takes connections from the host through the
	// namespace, and iscsi-ls (libiscsi, run inside the namespace) sees the
	// export in a SendTargets discovery.
	serving := func() error {
		c, err := l.DialContext(ctx, "tcp", portal)
		if err != nil {
			return err
		}
		c.Close()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.NetNS(), "iscsi-ls", "iscsi://"+portal).CombinedOutput()
		if err != nil {
			return fmt.Errorf("iscsi-ls: %v: %s", err, out)
		}
		if !strings.Contains(string(out), exp.IQN) {
			return fmt.Errorf("iscsi-ls does not list %s: %s", exp.IQN, out)
		}
		return nil
	}
	testenv.RequireBinaries(t, "iscsi-ls")
	if err := serving(); err != nil {
		t.Fatalf("after late start: %v", err)
	}
	if err := tg.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if err := serving(); err != nil {
		t.Errorf("after Restart (exports replayed): %v", err)
	}
	tg.Stop()
	if c, err := l.DialContext(ctx, "tcp", portal); err == nil {
		c.Close()
		t.Errorf("portal %s still accepts connections after Stop", portal)
	}
}

// TestParallelLabs runs two labs side by side: distinct namespaces, and
// each lab's DHCP client is answered by its own dnsmasq only.
func TestParallelLabs(t *testing.T) {
	a := labtest.Start(t, lab.Options{Name: "par-a"})
	b := labtest.Start(t, lab.Options{Name: "par-b"})
	if a.NetNS() == b.NetNS() {
		t.Fatalf("two labs share namespace %s", a.NetNS())
	}
	for _, l := range []*lab.Lab{a, b} {
		labtest.DHCP(t, l, lab.DHCPConfig{RootPath: "iscsi:" + l.ServerIP().String() + "::::iqn.2026-11.org.lunboot.lab:" + l.NetNS()})
	}
	errc := make(chan error, 2)
	for _, l := range []*lab.Lab{a, b} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			lease, err := l.RequestLease(ctx, nil, dhcpv4.WithRequestedOptions(dhcpv4.OptionRootPath))
			if err != nil {
				errc <- err
				return
			}
			ip, _ := netip.AddrFromSlice(lease.ACK.YourIPAddr.To4())
			switch {
			case !strings.HasSuffix(lease.ACK.RootPath(), l.NetNS()) || !l.Prefix().Contains(ip):
				errc <- fmt.Errorf("lab %s: lease %s with root-path %q, want one from its own server", l.NetNS(), lease.ACK.YourIPAddr, lease.ACK.RootPath())
			default:
				errc <- nil
			}
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// TestSnapshotWhenFailed checks what labtest.KillAtEnd does at the end of a
// test that failed while its guest runs: a snapshot of the lab's threads
// and sockets, taken in its namespace before the guest is killed (tgtd's
// threads, dnsmasq's, QEMU's, the portal's listener), which DumpLogs
// then prints.
func TestSnapshotWhenFailed(t *testing.T) {
	labtest.Require(t)
	kernel := kernelImage(t)
	ctx := context.Background()
	l := labtest.Start(t, lab.Options{Name: "snapshot"})
	labtest.DHCP(t, l, lab.DHCPConfig{})
	tg := labtest.Target(t, l)
	vm, err := l.StartVM(ctx, lab.VMConfig{Kernel: kernel, Cmdline: "panic=0"})
	if err != nil {
		t.Fatalf("StartVM: %v", err)
	}
	t.Cleanup(vm.Kill)
	if _, err := vm.ExpectWithin(ctx, 3*time.Minute, regexp.MustCompile(`Linux version \S+`)); err != nil {
		t.Fatal(err)
	}
	// The fault API reaches the guest through its monitor socket.
	for _, up := range []bool{false, true} {
		if err := vm.SetLink(ctx, 0, up); err != nil {
			t.Errorf("SetLink(NIC 0, up=%v): %v", up, err)
		}
	}
	if err := vm.SetLink(ctx, 1, false); err == nil {
		t.Errorf("SetLink(NIC 1) on a guest with one NIC succeeded, want an error")
	}
	if snaps, _ := filepath.Glob(filepath.Join(l.LogDir(), lab.SnapshotPrefix+"*")); len(snaps) != 0 {
		t.Errorf("snapshots before any failure: %q", snaps)
	}

	failing := &failedTB{TB: t}
	labtest.KillAtEnd(failing, l, vm)
	failing.runCleanups()
	if !vm.Exited() {
		t.Errorf("KillAtEnd's cleanup left the guest running")
	}
	snaps, _ := filepath.Glob(filepath.Join(l.LogDir(), lab.SnapshotPrefix+"*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots in %s after a failed test's cleanup = %q, want one", l.LogDir(), snaps)
	}
	snap, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" tgtd\n", " dnsmasq\n", " qemu-system-x86\n", fmt.Sprintf(":%d ", tg.Portal().Port())} {
		if !strings.Contains(string(snap), want) {
			t.Errorf("snapshot lacks %q:\n%s", want, snap)
		}
	}
}

// failedTB is a test that has failed, whose cleanups run when asked: to
// check what labtest does at the end of a failed test without failing one.
type failedTB struct {
	testing.TB
	cleanups []func()
}

func (f *failedTB) Failed() bool      { return true }
func (f *failedTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *failedTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
