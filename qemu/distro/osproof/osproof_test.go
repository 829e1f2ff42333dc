package osproof

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	testTarget    = "iqn.2026-11.org.lunboot.lab:disk"
	testInitiator = "iqn.2026-11.org.lunboot:guest"
)

// fakeTree lays out the files a Debian system booted from an iSCSI LUN
// shows: one session with one connection, root on sda2 below it, udev's
// by-path links, and optionally an iBFT. The sysfs shapes follow a real
// 6.1 kernel (class entries linking into /sys/devices).
func fakeTree(t *testing.T, withIBFT bool) string {
	t.Helper()
	root := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/cmdline", "root=UUID=0b9c rw console=ttyS0,115200 ip=dhcp iscsi_initiator="+testInitiator+" iscsi_target_name="+testTarget+" iscsi_target_ip=10.1.2.1 lunboot.proof.poweroff=1\n")
	write("proc/uptime", "41.27 70.02\n")
	write("proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
	write("etc/os-release", "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
	write("proc/self/mountinfo", strings.Join([]string{
		"1 0 0:2 / / rw - rootfs rootfs rw",
		"22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro",
		"23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
		"30 22 8:1 / /boot rw,relatime shared:20 - ext4 /dev/sda1 rw",
	}, "\n")+"\n")
	dev := "sys/devices/platform/host2/session1"
	write(dev+"/iscsi_session/session1/targetname", testTarget+"\n")
	write(dev+"/iscsi_session/session1/initiatorname", testInitiator+"\n")
	write(dev+"/iscsi_session/session1/state", "LOGGED_IN\n")
	link(dev+"/iscsi_session/session1/device", "../../../session1")
	link("sys/class/iscsi_session/session1", "../../devices/platform/host2/session1/iscsi_session/session1")
	conn := dev + "/connection1:0/iscsi_connection/connection1:0"
	write(conn+"/persistent_address", "10.1.2.1\n")
	write(conn+"/persistent_port", "3260\n")
	write(conn+"/address", "10.1.2.1\n")
	write(conn+"/port", "3260\n")
	link("sys/class/iscsi_connection/connection1:0", "../../devices/platform/host2/session1/connection1:0/iscsi_connection/connection1:0")
	disk := dev + "/target2:0:0/2:0:0:1/block/sda"
	write(disk+"/size", "4718592\n")
	write(disk+"/sda2/partition", "2\n")
	write(disk+"/sda1/partition", "1\n")
	link("sys/dev/block/8:2", "../../devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sda/sda2")
	link("sys/dev/block/8:0", "../../devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sda")
	// LUN 0 is tgtd's controller: a SCSI device without a block device.
	write(dev+"/target2:0:0/2:0:0:0/type", "12\n")
	byPath := "ip-10.1.2.1:3260-iscsi-" + testTarget + "-lun-1"
	link("dev/disk/by-path/"+byPath, "../../sda")
	link("dev/disk/by-path/"+byPath+"-part1", "../../sda1")
	link("dev/disk/by-path/"+byPath+"-part2", "../../sda2")
	link("dev/disk/by-path/pci-0000:00:01.1-ata-1", "../../sr0")
	if withIBFT {
		write("sys/firmware/ibft/initiator/initiator-name", testInitiator+"\n")
		write("sys/firmware/ibft/target0/target-name", testTarget+"\n")
		write("sys/firmware/ibft/target0/ip-addr", "10.1.2.1\n")
		write("sys/firmware/ibft/target0/lun", "0001000000000000\n")
		write("sys/firmware/ibft/target0/chap-name", "node\n")
		write("sys/firmware/ibft/target0/chap-secret", "out-secret-4c7e91\n")
		write("sys/firmware/ibft/target0/rev-chap-name-secret", "in-secret-b2d5a8\n")
		write("sys/firmware/ibft/ethernet0/mac", "52:54:00:12:34:56\n")
		link("sys/firmware/ibft/ethernet0/device", "../../../devices/pci0000:00/0000:00:03.0")
	}
	return root
}

// fakeSystemctl answers like systemd 252 on a booted system.
func fakeSystemctl(state string, failed ...string) func(context.Context, ...string) (string, error) {
	return func(_ context.Context, args ...string) (string, error) {
		switch args[0] {
		case "is-system-running":
			return state, nil
		case "is-active":
			return "active", nil
		case "list-units":
			var lines []string
			for _, f := range failed {
				lines = append(lines, f+" loaded failed failed Some unit")
			}
			return strings.Join(lines, "\n"), nil
		}
		return "", errors.New("unexpected systemctl " + strings.Join(args, " "))
	}
}

func TestCollect(t *testing.T) {
	root := fakeTree(t, true)
	p := Collect(context.Background(), Env{Root: root, Systemctl: fakeSystemctl("running")})
	byPath := "ip-10.1.2.1:3260-iscsi-" + testTarget + "-lun-1"
	want := &Proof{
		V:             Version,
		Kernel:        "6.1.0-28-amd64",
		OS:            "Debian GNU/Linux 12 (bookworm)",
		Cmdline:       "root=UUID=0b9c rw console=ttyS0,115200 ip=dhcp iscsi_initiator=" + testInitiator + " iscsi_target_name=" + testTarget + " iscsi_target_ip=10.1.2.1 lunboot.proof.poweroff=1",
		UptimeSeconds: 41.27,
		Sessions: []Session{{
			Name: "session1", TargetName: testTarget, InitiatorName: testInitiator, State: "LOGGED_IN",
			Connections: []Connection{{Name: "connection1:0", PersistentAddress: "10.1.2.1", PersistentPort: 3260, Address: "10.1.2.1", Port: 3260}},
			Disks:       []SessionDisk{{Device: "sda", LUN: 1}},
		}},
		Root: Root{
			Source: "/dev/sda2", FSType: "ext4", MajMin: "8:2", Device: "sda2", Disk: "sda",
			SysPath:    "/sys/devices/platform/host2/session1/target2:0:0/2:0:0:1/block/sda/sda2",
			Session:    "session1",
			LUN:        1,
			ByPath:     []string{byPath + "-part2"},
			DiskByPath: []string{byPath},
		},
		IBFT: IBFT{
			"initiator/initiator-name": testInitiator,
			"target0/target-name":      testTarget,
			"target0/ip-addr":          "10.1.2.1",
			"target0/lun":              "0001000000000000",
			"target0/chap-name":        "node",
			// Secrets never leave the guest (iscsi_ibft shows them in clear).
			"target0/chap-secret":          "***",
			"target0/rev-chap-name-secret": "***",
			"ethernet0/mac":                "52:54:00:12:34:56",
		},
		Systemd: Systemd{State: "running", MultiUser: "active"},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("Collect(fake iSCSI root) mismatch (-want +got):\n%s", diff)
	}
}

func TestCollectLocalRoot(t *testing.T) {
	// A system without iSCSI, iBFT or by-path links: the proof says so
	// rather than failing.
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "proc/self"), 0o755))
	must(os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte("root=/dev/vda1\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "proc/uptime"), []byte("3.00 1.00\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte("22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1"), 0o755))
	must(os.WriteFile(filepath.Join(root, "sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1/partition"), []byte("1\n"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "sys/dev/block"), 0o755))
	must(os.Symlink("../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1", filepath.Join(root, "sys/dev/block/254:1")))

	p := Collect(context.Background(), Env{Root: root})
	if p.IBFT != nil {
		t.Errorf("Collect(local root).IBFT = %v, want nil (absent)", p.IBFT)
	}
	if len(p.Sessions) != 0 {
		t.Errorf("Collect(local root).Sessions = %v, want none", p.Sessions)
	}
	if p.Root.Device != "vda1" || p.Root.Disk != "vda" || p.Root.Session != "" || p.Root.LUN != -1 {
		t.Errorf("Collect(local root).Root = %+v, want vda1 on vda, no session, LUN -1", p.Root)
	}
	if _, err := p.RootSession(); err == nil {
		t.Errorf("RootSession() on a local root = nil error, want one")
	}
	line, err := p.Line()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, `"ibft":"absent"`) {
		t.Errorf("Line() = %s, want \"ibft\":\"absent\"", line)
	}
}

func TestLineRoundTrip(t *testing.T) {
	for _, withIBFT := range []bool{false, true} {
		p := Collect(context.Background(), Env{Root: fakeTree(t, withIBFT), Systemctl: fakeSystemctl("degraded", "foo.service")})
		p.Net = []Interface{{Name: "ens3", MAC: "52:54:00:12:34:56", Addrs: []string{"10.1.2.50/24"}}}
		line, err := p.Line()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, Marker) || strings.Contains(line, "\n") {
			t.Fatalf("Line() = %q, want one line starting with %q", line, Marker)
		}
		got, err := Parse(line)
		if err != nil {
			t.Fatalf("Parse(Line()) error: %v", err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("Parse(Line()) mismatch, iBFT %v (-want +got):\n%s", withIBFT, diff)
		}
	}
}

func TestFind(t *testing.T) {
	p := Collect(context.Background(), Env{Root: fakeTree(t, false), Systemctl: fakeSystemctl("running")})
	line, err := p.Line()
	if err != nil {
		t.Fatal(err)
	}
	older := strings.Replace(line, `"uptime_s":41.27`, `"uptime_s":1`, 1)
	for _, tc := range []struct {
		name    string
		console string
		uptime  float64
		wantErr bool
	}{
		{"alone", line + "\n", 41.27, false},
		{"among boot messages", "[  OK  ] Reached target multi-user.target.\n\nDebian GNU/Linux 12 lunboot-debian ttyS0\n\nlunboot-debian login: \n" + line + "\n[   52.1] random: crng init done\n", 41.27, false},
		{"last of two wins", older + "\n" + line + "\n", 41.27, false},
		{"garbled last, earlier good", line + "\n" + line[:len(line)/2] + "}\n", 41.27, false},
		{"unterminated line", line, 0, true},
		{"none", "Debian GNU/Linux 12\nlogin: ", 0, true},
		{"garbled only", Marker + "{\"v\":1,\"cmdline\":}\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Find(tc.console)
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrNoProof) {
					t.Errorf("Find() = %v, %v; want an ErrNoProof error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Find() error: %v", err)
			}
			if got.UptimeSeconds != tc.uptime {
				t.Errorf("Find().UptimeSeconds = %v, want %v", got.UptimeSeconds, tc.uptime)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, line string }{
		{"empty", ""},
		{"no object", Marker + "hello"},
		{"wrong version", Marker + `{"v":2,"cmdline":"","uptime_s":0,"iscsi_sessions":[],"root":{},"ibft":"absent","systemd":{}}`},
		{"unknown field", Marker + `{"v":1,"bogus":1}`},
		{"bad ibft string", Marker + `{"v":1,"ibft":"present"}`},
		{"trailing data", Marker + `{"v":1} {"v":1}`},
		{"too long", Marker + `{"v":1,"cmdline":"` + strings.Repeat("a", MaxLine) + `"}`},
	} {
		if p, err := Parse(tc.line); err == nil {
			t.Errorf("Parse(%s) = %+v, want an error", tc.name, p)
		}
	}
}

func TestVerify(t *testing.T) {
	portal := netip.MustParseAddrPort("10.1.2.1:3260")
	yes, no := true, false
	good := Expect{Target: testTarget, Initiator: testInitiator, Portal: portal, LUN: 1, RootUUID: "0b9c", IBFT: &yes}
	for _, tc := range []struct {
		name    string
		ibft    bool
		state   string
		edit    func(*Proof)
		want    Expect
		wantErr []string
	}{
		{name: "good", ibft: true, state: "running", want: good},
		{name: "degraded accepted", ibft: true, state: "degraded", want: func() Expect { e := good; e.States = []string{"running", "degraded"}; return e }()},
		{name: "degraded refused", ibft: true, state: "degraded", want: good, wantErr: []string{`systemd state "degraded"`}},
		{name: "wrong target", ibft: true, state: "running", want: func() Expect { e := good; e.Target = "iqn.x:other"; return e }(),
			wantErr: []string{"targetname", "by-path"}},
		{name: "wrong initiator", ibft: true, state: "running", want: func() Expect { e := good; e.Initiator = "iqn.x:me"; return e }(),
			wantErr: []string{"initiatorname"}},
		{name: "wrong portal", ibft: true, state: "running", want: func() Expect { e := good; e.Portal = netip.MustParseAddrPort("10.1.2.9:3260"); return e }(),
			wantErr: []string{"no connection to 10.1.2.9:3260", "by-path"}},
		{name: "wrong LUN", ibft: true, state: "running", want: func() Expect { e := good; e.LUN = 2; return e }(),
			wantErr: []string{"LUN = 1, want 2"}},
		{name: "no iBFT wanted", ibft: true, state: "running", want: func() Expect { e := good; e.IBFT = &no; return e }(),
			wantErr: []string{"unexpected iBFT"}},
		{name: "iBFT missing", ibft: false, state: "running", want: good, wantErr: []string{"no iBFT"}},
		{name: "root UUID", ibft: true, state: "running", want: func() Expect { e := good; e.RootUUID = "ffff"; return e }(),
			wantErr: []string{"root=UUID=0b9c, want UUID=ffff"}},
		{name: "root not on iSCSI", ibft: true, state: "running", want: good,
			edit:    func(p *Proof) { p.Root.Session = "" },
			wantErr: []string{"not on an iSCSI session"}},
		{name: "multi-user not reached", ibft: true, state: "starting", want: good,
			edit:    func(p *Proof) { p.Systemd.MultiUser = "inactive" },
			wantErr: []string{"multi-user.target is \"inactive\"", `systemd state "starting"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Collect(context.Background(), Env{Root: fakeTree(t, tc.ibft), Systemctl: fakeSystemctl(tc.state)})
			if tc.edit != nil {
				tc.edit(p)
			}
			err := p.Verify(tc.want)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Errorf("Verify() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify() = nil, want errors mentioning %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestByPathName(t *testing.T) {
	got := ByPathName(netip.MustParseAddrPort("10.1.2.1:3260"), testTarget, 1)
	if want := "ip-10.1.2.1:3260-iscsi-" + testTarget + "-lun-1"; got != want {
		t.Errorf("ByPathName() = %q, want %q", got, want)
	}
}

func TestArg(t *testing.T) {
	p := &Proof{Cmdline: `a=1 quiet root=UUID=x b="two words" a=2`}
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"a", "2", true}, {"quiet", "", true}, {"root", "UUID=x", true}, {"missing", "", false},
		{"b", "two words", true}, {"words\"", "", false},
	} {
		if got, ok := p.Arg(tc.key); got != tc.want || ok != tc.ok {
			t.Errorf("Arg(%q) = %q, %v, want %q, %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Marker + `{"v":1,"cmdline":"root=UUID=x rw","uptime_s":40.5,"iscsi_sessions":[{"name":"session1","targetname":"iqn.t","initiatorname":"iqn.i","connections":[{"name":"connection1:0","persistent_address":"10.1.2.1","persistent_port":3260}]}],"root":{"source":"/dev/sda2","fstype":"ext4","majmin":"8:2","device":"sda2","disk":"sda","syspath":"/sys/x","session":"session1","lun":1,"by_path":["ip-10.1.2.1:3260-iscsi-iqn.t-lun-1-part2"]},"ibft":"absent","systemd":{"state":"running","multi_user":"active"}}`)
	f.Add(Marker + `{"v":1,"ibft":{"initiator/initiator-name":"iqn.i"}}`)
	f.Add(`{"v":1,"ibft":null}`)
	f.Add(Marker + `{"v":1,"ibft":"absent","errors":["read /proc/uptime: no"]}`)
	f.Add(Marker + `{`)
	f.Add("")
	f.Fuzz(func(t *testing.T, line string) {
		p, err := Parse(line)
		if err != nil {
			return
		}
		// A decoded proof encodes and decodes to itself.
		again, err := p.Line()
		if err != nil {
			t.Fatalf("Line() of a parsed proof: %v", err)
		}
		q, err := Parse(again)
		if err != nil {
			t.Fatalf("Parse(Line()) = %v for %q", err, again)
		}
		// omitempty writes an empty list as nothing: equal, not identical.
		if diff := cmp.Diff(p, q, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip mismatch (-first +second):\n%s", diff)
		}
		if (p.IBFT == nil) != (q.IBFT == nil) {
			t.Errorf("round trip turned iBFT %v into %v (absent and empty differ)", p.IBFT, q.IBFT)
		}
		_ = p.Verify(Expect{LUN: -1})
	})
}

func TestCollectEFI(t *testing.T) {
	root := fakeTree(t, false)
	vars := filepath.Join(root, "sys/firmware/efi/efivars")
	if err := os.MkdirAll(vars, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, v := range map[string]string{
		"BootCurrent-8be4df61-93ca-11d2-aa0d-00e098032b8c": "\x06\x00\x00\x00\x01\x00",
		"Lang-8be4df61-93ca-11d2-aa0d-00e098032b8c":        "\x06\x00\x00\x00eng",
	} {
		if err := os.WriteFile(filepath.Join(vars, n), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "sys/firmware/efi/fw_platform_size"), []byte("64\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	p := Collect(context.Background(), Env{Root: root})
	want := &EFI{PlatformSize: "64", Vars: 2, VarRead: "BootCurrent-8be4df61-93ca-11d2-aa0d-00e098032b8c: 6 bytes"}
	if diff := cmp.Diff(want, p.EFI); diff != "" {
		t.Errorf("Collect EFI mismatch (-want +got):\n%s", diff)
	}
	line, err := p.Line()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(line)
	if err != nil || !cmp.Equal(back.EFI, want) {
		t.Errorf("Parse(Line()) EFI = %+v, %v; want %+v", back.EFI, err, want)
	}

	// Without EFI: nil, and no error.
	p = Collect(context.Background(), Env{Root: fakeTree(t, false)})
	if p.EFI != nil {
		t.Errorf("Collect without /sys/firmware/efi: EFI = %+v, want nil", p.EFI)
	}
}

func TestVerifyEFI(t *testing.T) {
	p := Collect(context.Background(), Env{Root: fakeTree(t, false), Systemctl: fakeSystemctl("running")})
	if err := p.Verify(Expect{LUN: -1, EFI: true}); err == nil || !strings.Contains(err.Error(), "/sys/firmware/efi") {
		t.Errorf("Verify(EFI) without EFI = %v, want an error naming /sys/firmware/efi", err)
	}
	p.EFI = &EFI{Vars: 3}
	if err := p.Verify(Expect{LUN: -1, EFI: true}); err == nil || !strings.Contains(err.Error(), "runtime services") {
		t.Errorf("Verify(EFI) with unreadable variables = %v, want an error about the runtime services", err)
	}
	p.EFI.VarRead = "BootCurrent: 6 bytes"
	if err := p.Verify(Expect{LUN: -1, EFI: true}); err != nil && strings.Contains(err.Error(), "EFI") {
		t.Errorf("Verify(EFI) with EFI = %v, want no EFI complaint", err)
	}
}
