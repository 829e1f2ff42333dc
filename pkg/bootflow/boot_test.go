package bootflow

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/nbd"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/osfind"
	"github.com/lunboot/lunboot/pkg/scsi"
	"github.com/u-root/u-root/pkg/cpio"
)

// These tests run Boot in-process: the target is iscsitest with a LUN in
// memory, reached over a pipe; the Machine's network, NBD device, OS
// search and kexec are fakes that record what they are asked. Everything
// runs in a synctest bubble, so the retries' backoff takes no real time.

const (
	testRelease = "6.1.0-56-amd64"
	testTarget  = "iqn.2026-11.org.lunboot.test:disk"
	// Where the OS kernel and initrd lie on the LUN: the fake OS search
	// reads them through the iSCSI session, as osfind reads a partition.
	kernelOff = 1 << 20
	initrdOff = 4 << 20
)

// testKernel is an x86 bzImage as far as the hand-off reads it: the setup
// header's kernel_version (Documentation/arch/x86/boot.rst).
func testKernel() []byte {
	b := make([]byte, 64<<10)
	binary.LittleEndian.PutUint16(b[0x1fe:], 0xaa55)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x100)
	copy(b[0x300:], testRelease+" (test@lunboot) #1 SMP PREEMPT_DYNAMIC\x00")
	return b
}

// testInitrd is a Debian initramfs-tools image with open-iscsi and the
// boot NIC's driver, as a newc archive; drop leaves out the files whose
// name contains it.
func testInitrd(t testing.TB, drop string) []byte {
	m := "usr/lib/modules/" + testRelease + "/kernel/"
	recs := []cpio.Record{
		cpio.Symlink("bin", "usr/bin"), cpio.Symlink("sbin", "usr/sbin"), cpio.Symlink("lib", "usr/lib"),
		cpio.StaticFile("init", "#!/bin/sh\n", 0o755),
		cpio.StaticFile("conf/initramfs.conf", "MODULES=most\n", 0o644),
		cpio.StaticFile("scripts/functions", "configure_networking() { :; }\n", 0o644),
		cpio.StaticFile("scripts/local-top/iscsi", "#!/bin/sh\n", 0o755),
		cpio.StaticFile("usr/sbin/iscsistart", "\x7fELF", 0o755),
		cpio.StaticFile("usr/bin/ipconfig", "\x7fELF", 0o755),
		cpio.StaticFile(m+"drivers/scsi/iscsi_tcp.ko", "ko", 0o644),
		cpio.StaticFile(m+"drivers/firmware/iscsi_ibft.ko", "ko", 0o644),
		cpio.StaticFile(m+"drivers/net/virtio_net.ko", "ko", 0o644),
		cpio.StaticFile("usr/lib/modules/"+testRelease+"/modules.builtin", "kernel/lib/crc32c.ko\n", 0o644),
	}
	var kept []cpio.Record
	for _, r := range recs {
		if drop == "" || !strings.Contains(r.Name, drop) {
			kept = append(kept, r)
		}
	}
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	if err := cpio.WriteRecordsAndDirs(w, kept); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// fakeDevice is the NBD device: the disk, recorded.
type fakeDevice struct {
	l    *lab
	disk *scsi.Disk
}

func (d *fakeDevice) Path() string         { return "/dev/nbd0" }
func (d *fakeDevice) Partitions() []string { return []string{"/dev/nbd0p1"} }
func (d *fakeDevice) Detach(ctx context.Context) error {
	d.l.record(fmt.Sprintf("detach (sessions %d)", d.l.tgt.Sessions()))
	return d.l.fail("detach")
}

// failingReader fails every read, as a LUN that stops answering.
type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("read error") }

// lab is one in-process boot.
type lab struct {
	t      *testing.T
	tgt    *iscsitest.Target
	kernel []byte
	initrd []byte

	mu       sync.Mutex
	events   []string
	failures map[string]error // the Machine call that fails, and how
	netFails int              // network attempts that fail before one succeeds
	sysfs    string           // the Sysfs option; a new empty folder when ""
	device   *fakeDevice
	loaded   struct {
		kernel, initrd []byte
		cmdline        string
	}
}

func newLab(t *testing.T, o iscsitest.Options) *lab {
	l := &lab{t: t, kernel: testKernel(), initrd: testInitrd(t, ""), failures: map[string]error{}}
	if o.Name == "" {
		o.Name = testTarget
	}
	if o.LUNs == nil {
		o.LUNs = []iscsitest.LUNOptions{{ID: 0, Size: 8 << 20}}
	}
	l.tgt = iscsitest.NewTarget(o)
	t.Cleanup(func() { l.tgt.Close() })
	l.tgt.LUN(0).WriteAt(l.kernel, kernelOff)
	l.tgt.LUN(0).WriteAt(l.initrd, initrdOff)
	return l
}

func (l *lab) record(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *lab) fail(call string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[call]
}

func (l *lab) machine() Machine {
	return Machine{
		Network: func(ctx context.Context, o netconf.Options) (*netconf.Config, error) {
			l.mu.Lock()
			failing := l.netFails > 0
			if failing {
				l.netFails--
			}
			l.mu.Unlock()
			if failing {
				l.record("network failed")
				return nil, fmt.Errorf("dhcp: eth0: %w", netconf.ErrNoOffer)
			}
			if err := l.fail("network"); err != nil {
				return nil, err
			}
			l.record("network")
			mac, _ := net.ParseMAC("52:54:00:12:34:56")
			return &netconf.Config{
				Link:    netconf.Link{Name: "eth0", MAC: mac, Driver: "virtio_net", Module: "virtio_net", PCI: "0000:00:03.0"},
				Origin:  netconf.OriginDHCP,
				Address: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
				Server: netip.MustParseAddr("10.0.2.2"), DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")},
			}, nil
		},
		Dial: l.tgt.Dial,
		AttachNBD: func(ctx context.Context, d *scsi.Disk, o nbd.AttachOptions) (BlockDevice, error) {
			if err := l.fail("nbd"); err != nil {
				return nil, err
			}
			l.record("attach")
			l.device = &fakeDevice{l: l, disk: d}
			return l.device, nil
		},
		FindOS: func(ctx context.Context, log *slog.Logger, device string) (*osfind.Found, error) {
			if err := l.fail("os"); err != nil {
				return nil, err
			}
			l.record("scan " + device)
			var k io.ReaderAt = io.NewSectionReader(l.device.disk, kernelOff, int64(len(l.kernel)))
			if l.fail("read") != nil {
				k = failingReader{}
			}
			e := &osfind.Entry{
				Label: "Test OS " + testRelease, Format: osfind.BLS, Device: "/dev/nbd0p1",
				Cmdline: "root=UUID=1234 ro",
				Kernel:  k,
				Initrd:  io.NewSectionReader(l.device.disk, initrdOff, int64(len(l.initrd))),
			}
			return &osfind.Found{Entries: []*osfind.Entry{e}, Partitions: []osfind.Partition{{Device: "/dev/nbd0p1"}}}, nil
		},
		KexecLoad: func(kernel, initrd *os.File, cmdline string) error {
			if err := l.fail("kexec-load"); err != nil {
				return err
			}
			l.record("kexec-load")
			l.loaded.kernel, _ = io.ReadAll(kernel)
			if initrd != nil {
				l.loaded.initrd, _ = io.ReadAll(initrd)
			}
			l.loaded.cmdline = cmdline
			return nil
		},
		Kexec: func() error {
			l.record("kexec")
			return errors.New("no jump in tests")
		},
	}
}

// boot runs Boot against the lab with the given extra command line.
func (l *lab) boot(extra string, noExec bool) (*recorder, string, error) {
	con := &recorder{}
	tmp := l.t.TempDir()
	sysfs := l.sysfs
	if sysfs == "" {
		sysfs = l.t.TempDir()
	}
	err := Boot(context.Background(), Options{
		Console:     con,
		Cmdline:     strings.TrimSpace("netroot=iscsi:10.0.2.2::3260:0:" + testTarget + " " + extra),
		Sysfs:       sysfs,
		TempDir:     tmp,
		NoExec:      noExec,
		SkipModules: true,
		Machine:     l.machine(),
	})
	return con, tmp, err
}

// stageLines are the console's stage results, "ok <stage>" or "fail <stage>".
func stageLines(con *recorder) []string {
	con.mu.Lock()
	defer con.mu.Unlock()
	var s []string
	for _, line := range con.lines {
		if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "fail ") {
			name, _, _ := strings.Cut(line, ":")
			if f := strings.Fields(name); len(f) >= 2 {
				s = append(s, f[0]+" "+f[1])
			}
		}
	}
	return s
}

func (r *recorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestBootSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		con, tmp, err := l.boot("", false)
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "kexec" {
			t.Fatalf("Boot() = %v, want the fake jump's failure in stage kexec; console:\n%s", err, con.text())
		}
		want := []string{"ok config", "ok network", "ok target", "ok login", "ok nbd", "ok os", "ok load", "ok handoff", "ok kexec-load", "ok shutdown"}
		if got := stageLines(con); !slices.Equal(got, want) {
			t.Errorf("stage lines = %q, want %q", got, want)
		}
		for _, line := range []string{
			"ok network: eth0 (52:54:00:12:34:56, virtio_net) 10.0.2.15/24 via 10.0.2.2, DHCP from 10.0.2.2",
			"ok target: " + testTarget + " LUN 0 (Linux LUN 0) at 10.0.2.2:3260 as iqn.",
			"ok login: " + testTarget + " at 10.0.2.2:3260 (no CHAP, no digests); LUN 0: ",
			"ok nbd: /dev/nbd0 (8.0 MiB, 1 partition)",
			`ok os: BLS entry "Test OS ` + testRelease + `" on /dev/nbd0p1 (1 entry found)`,
			"ok load: kernel 64.0 KiB, initrd ",
			"ok handoff: initramfs-tools (klibc ipconfig) initrd; hand-off both (iBFT ",
			"ok kexec-load: Test OS " + testRelease + " loaded",
			"ok shutdown: unmounted, /dev/nbd0 detached, logged out, eth0 down",
			"booting Test OS " + testRelease + " after ",
		} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		// The order of what was done to the machine: the device is detached
		// while the session still serves it, the jump comes last.
		wantEvents := []string{"network", "attach", "scan /dev/nbd0", "kexec-load", "detach (sessions 1)", "kexec"}
		if !slices.Equal(l.events, wantEvents) {
			t.Errorf("machine events = %q, want %q", l.events, wantEvents)
		}
		if st := l.tgt.Stats(); st.Logouts != 1 || l.tgt.Sessions() != 0 || len(st.Violations) > 0 {
			t.Errorf("target: %d logouts, %d sessions, violations %q; want one logout, none left, no violations", st.Logouts, l.tgt.Sessions(), st.Violations)
		}
		// What kexec got: the kernel as it lies on the LUN, the OS initrd
		// behind the iBFT's early archive, the entry's command line with the
		// hand-off in initramfs-tools' dialect.
		if !bytes.Equal(l.loaded.kernel, l.kernel) {
			t.Errorf("kexec got a kernel of %d bytes, not the LUN's %d", len(l.loaded.kernel), len(l.kernel))
		}
		if !bytes.HasSuffix(l.loaded.initrd, l.initrd) || len(l.loaded.initrd) == len(l.initrd) || !bytes.Contains(l.loaded.initrd, []byte("kernel/firmware/acpi/")) {
			t.Errorf("kexec got an initrd of %d bytes, want the iBFT archive in front of the OS's %d", len(l.loaded.initrd), len(l.initrd))
		}
		if c := l.loaded.cmdline; !strings.HasPrefix(c, "root=UUID=1234 ro ") || !strings.Contains(c, "iscsi_target_name="+testTarget) || !strings.Contains(c, "BOOTIF=01-52-54-00-12-34-56") {
			t.Errorf("kexec command line = %q", c)
		}
		// The jump failed: the copies are removed for the next try.
		if left := leftovers(t, tmp); len(left) > 0 {
			t.Errorf("TempDir after the failed jump holds %q", left)
		}
	})
}

func TestBootNetworkRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.netFails = 2
		start := time.Now()
		con, _, err := l.boot("lunboot.retries=3", true)
		if err != nil {
			t.Fatalf("Boot() = %v; console:\n%s", err, con.text())
		}
		want := []string{"ok config", "fail network", "fail network", "ok network", "ok target"}
		if got := stageLines(con); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Errorf("stage lines = %q, want them to start %q", got, want)
		}
		for _, line := range []string{"fail network 1/4 retry=1s: ", "fail network 2/4 retry=2s: "} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		// The backoff (1 s, then 2 s) is the only time that passes.
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Boot took %s of virtual time, want the 3s of backoff", took)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.netFails = 10
		start := time.Now()
		con, _, err := l.boot("lunboot.retries=2", true)
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "network" || !errors.Is(err, netconf.ErrNoOffer) || !strings.Contains(se.Check, "no DHCP server answered") {
			t.Fatalf("Boot() = %v, want a network StageError with the DHCP advice; console:\n%s", err, con.text())
		}
		if got, want := stageLines(con), []string{"ok config", "fail network", "fail network", "fail network"}; !slices.Equal(got, want) {
			t.Errorf("stage lines = %q, want %q", got, want)
		}
		if !strings.Contains(con.text(), "fail network 3/3 retry=0s: ") {
			t.Errorf("console lacks the last attempt without retry:\n%s", con.text())
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Boot took %s of virtual time, want the 3s of backoff", took)
		}
	})
}

// TestBootLoginRetries: a portal that refuses connections (a target still
// starting) is retried with backoff, on the same ISID.
func TestBootLoginRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		m := l.machine()
		refused := 2
		m.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if refused > 0 {
				refused--
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
			}
			return l.tgt.Dial(ctx, network, addr)
		}
		con := &recorder{}
		start := time.Now()
		err := Boot(context.Background(), Options{
			Console: con, Cmdline: "netroot=iscsi:10.0.2.2::3260:0:" + testTarget,
			Sysfs: t.TempDir(), TempDir: t.TempDir(), NoExec: true, SkipModules: true, Machine: m,
		})
		if err != nil {
			t.Fatalf("Boot() = %v; console:\n%s", err, con.text())
		}
		for _, line := range []string{"fail login 1/4 retry=1s: ", "fail login 2/4 retry=2s: ", "ok login: "} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Boot took %s of virtual time, want the 3s of backoff", took)
		}
	})
}

// TestBootUndo fails each stage in turn and checks that what the stages
// before it set up is released: the NBD device detached, the session
// logged out, the copies removed, nothing jumped to.
func TestBootUndo(t *testing.T) {
	for _, tt := range []struct {
		stage string
		setup func(l *lab) // makes the stage fail
		// what must have been set up, and so released
		attached bool
		loggedIn bool
	}{
		{stage: "network", setup: func(l *lab) { l.failures["network"] = fmt.Errorf("dhcp: %w", netconf.ErrNoLinks) }},
		{stage: "login", setup: func(*lab) {}}, // the target refuses the initiator
		{stage: "nbd", setup: func(l *lab) { l.failures["nbd"] = nbd.ErrModuleNotLoaded }, loggedIn: true},
		{stage: "os", setup: func(l *lab) { l.failures["os"] = osfind.ErrNoEntries }, loggedIn: true, attached: true},
		{stage: "load", setup: func(l *lab) { l.failures["read"] = errors.New("") }, loggedIn: true, attached: true},
		{stage: "handoff", setup: func(l *lab) {
			l.initrd = testInitrd(l.t, "iscsistart")
			l.tgt.LUN(0).WriteAt(l.initrd, initrdOff)
		}, loggedIn: true, attached: true},
		{stage: "kexec-load", setup: func(l *lab) { l.failures["kexec-load"] = errors.New("kexec_file_load: operation not permitted") }, loggedIn: true, attached: true},
	} {
		t.Run(tt.stage, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := iscsitest.Options{}
				if tt.stage == "login" {
					// Authorization failure (RFC 7143 §11.13.5, 02/02): permanent.
					o.Hooks.LoginStatus = func(int) (uint8, uint8) { return 2, 2 }
				}
				l := newLab(t, o)
				tt.setup(l)
				con, tmp, err := l.boot("", false)
				var se *StageError
				if !errors.As(err, &se) || se.Stage != tt.stage {
					t.Fatalf("Boot() = %v, want a StageError in %s; console:\n%s", err, tt.stage, con.text())
				}
				if se.Reboot {
					t.Errorf("StageError.Reboot = true without lunboot.rescue=0")
				}
				lines := stageLines(con)
				if last := lines[len(lines)-1]; last != "fail "+tt.stage {
					t.Errorf("last stage line %q, want fail %s", last, tt.stage)
				}
				detached := slices.ContainsFunc(l.events, func(e string) bool { return strings.HasPrefix(e, "detach") })
				if detached != tt.attached {
					t.Errorf("detached = %v, want %v (events %q)", detached, tt.attached, l.events)
				}
				if tt.attached && !slices.Contains(l.events, "detach (sessions 1)") {
					t.Errorf("the device was not detached before the logout: events %q", l.events)
				}
				st := l.tgt.Stats()
				if l.tgt.Sessions() != 0 || tt.loggedIn && st.Logouts != 1 || len(st.Violations) > 0 {
					t.Errorf("target after the failure: %d sessions, %d logouts, violations %q", l.tgt.Sessions(), st.Logouts, st.Violations)
				}
				if slices.Contains(l.events, "kexec") {
					t.Errorf("a failed boot jumped: events %q", l.events)
				}
				if left := leftovers(t, tmp); len(left) > 0 {
					t.Errorf("TempDir after the failure holds %q", left)
				}
			})
		})
	}
}

// TestBootShutdown: stage 11 releases everything before the jump, in
// order, and a device that does not detach is a warning, not a failure.
func TestBootShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		l.failures["detach"] = errors.New("nbd: detach /dev/nbd0: flush kernel cache: timeout")
		con, _, err := l.boot("", true)
		if err != nil {
			t.Fatalf("Boot(NoExec) = %v; console:\n%s", err, con.text())
		}
		for _, line := range []string{
			"warning: nbd: detach /dev/nbd0: flush kernel cache: timeout",
			"ok shutdown: unmounted, logged out, eth0 down",
		} {
			if !strings.Contains(con.text(), line) {
				t.Errorf("console lacks %q; it is:\n%s", line, con.text())
			}
		}
		if want := []string{"network", "attach", "scan /dev/nbd0", "kexec-load", "detach (sessions 1)"}; !slices.Equal(l.events, want) {
			t.Errorf("machine events = %q, want %q (NoExec: no jump)", l.events, want)
		}
		if l.tgt.Sessions() != 0 || l.tgt.Stats().Logouts != 1 {
			t.Errorf("target after shutdown: %d sessions, %d logouts; want 0, 1", l.tgt.Sessions(), l.tgt.Stats().Logouts)
		}
	})
}

// TestTeardownTwice: the teardown skips what is already released, so the
// undo after a failed jump does not detach or log out a second time.
func TestTeardownTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		con, _, err := l.boot("", false)
		if err == nil {
			t.Fatalf("Boot() = nil, want the fake jump's failure")
		}
		n := 0
		for _, e := range l.events {
			if strings.HasPrefix(e, "detach") {
				n++
			}
		}
		if n != 1 || l.tgt.Stats().Logouts != 1 {
			t.Errorf("%d detaches, %d logouts after shutdown and undo, want 1 each; console:\n%s", n, l.tgt.Stats().Logouts, con.text())
		}
	})
}
