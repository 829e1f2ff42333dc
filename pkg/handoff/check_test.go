package handoff

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

// without returns files minus those whose name contains any of drop.
func without(files []tfile, drop ...string) []tfile {
	var out []tfile
next:
	for _, f := range files {
		for _, d := range drop {
			if strings.Contains(f.name, d) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

func missingNames(c *Capability) string {
	var n []string
	for _, it := range c.Missing() {
		n = append(n, it.Name)
	}
	return strings.Join(n, ", ")
}

func TestCheck(t *testing.T) {
	debianDHCP := func(files ...tfile) *Initrd {
		return inspectBytes(t, cat(microcode(), compress(t, CompressionGzip, cpioOf(files...))))
	}
	for _, tt := range []struct {
		name        string
		in          *Initrd
		req         Requirements
		wantMissing string
		wantFix     string // substring of the error
		wantIBFT    bool
	}{
		{"debian complete", debianDHCP(debianFiles()...), Requirements{NICModule: "virtio_net"}, "", "", true},
		{"debian built-in NIC driver", debianDHCP(debianFiles()...), Requirements{NICModule: "virtio_blk", KernelVersion: testKver}, "", "", true},
		{"debian without open-iscsi", debianDHCP(without(debianFiles(), "iscsi")...), Requirements{NICModule: "virtio_net"},
			"open-iscsi boot script, iscsistart, iscsi_tcp kernel module", "apt install open-iscsi", false},
		{"debian without NIC driver", debianDHCP(debianFiles()...), Requirements{NICModule: "e1000e"},
			"e1000e kernel module", "add e1000e to /etc/initramfs-tools/modules", true},
		{"debian ibft mode without iscsi_ibft", debianDHCP(without(debianFiles(), "iscsi_ibft")...), Requirements{Mode: ModeIBFT},
			"iscsi_ibft kernel module", "update-initramfs -u", false},
		{"debian wrong kernel version", debianDHCP(debianFiles()...), Requirements{KernelVersion: "6.12.0-1-amd64"},
			"iscsi_tcp kernel module", "", false},
		{"dracut complete", inspectBytes(t, cpioOf(dracutFiles()...)), Requirements{NICModule: "virtio_net"}, "", "", true},
		{"dracut hostonly without iscsi", inspectBytes(t, cpioOf(append(without(dracutFiles(), "iscsi", "modules.txt"),
			file("usr/lib/dracut/modules.txt", "base\nnetwork-legacy\n"))...)), Requirements{},
			"dracut iscsi module, iscsiadm, iscsid, iscsi_tcp kernel module", `dracut -f --add "iscsi network"`, false},
		{"dracut without network", inspectBytes(t, cpioOf(append(without(dracutFiles(), "modules.txt"),
			file("usr/lib/dracut/modules.txt", "base\niscsi\n"))...)), Requirements{},
			"dracut network module", "--add network", true},
		{"dracut without NIC driver", inspectBytes(t, cpioOf(dracutFiles()...)), Requirements{NICModule: "mlx5_core"},
			"mlx5_core kernel module", "--add-drivers mlx5_core", true},
		{"dracut Debian iscsid without startup-checks", inspectBytes(t, cpioOf(append(dracutFiles(),
			file("usr/lib/systemd/system/iscsid.service", "[Service]\nExecStartPre=/lib/open-iscsi/startup-checks.sh\n"))...)), Requirements{},
			"open-iscsi startup-checks.sh", "install_items+=", true},
		{"unknown generator", inspectBytes(t, cpioOf(file("init", ""))), Requirements{},
			"a known initrd generator", "dracut and initramfs-tools", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in.Check(tt.req)
			if got := missingNames(c); got != tt.wantMissing {
				t.Errorf("Check().Missing() = [%s], want [%s]", got, tt.wantMissing)
			}
			err := c.Err()
			if tt.wantMissing == "" {
				if err != nil || !c.OK() {
					t.Errorf("Check().Err() = %v, want nil", err)
				}
			} else {
				if !errors.Is(err, ErrNotReady) {
					t.Fatalf("Check().Err() = %v, want ErrNotReady", err)
				}
				if !strings.Contains(err.Error(), tt.wantFix) {
					t.Errorf("Check().Err() = %q, want a fix mentioning %q", err, tt.wantFix)
				}
			}
			if c.IBFT != tt.wantIBFT {
				t.Errorf("Check().IBFT = %v, want %v", c.IBFT, tt.wantIBFT)
			}
		})
	}
}

// TestCheckMissingProgramWhere: a missing program's line names every
// directory the check looked in, not a subset.
func TestCheckMissingProgramWhere(t *testing.T) {
	in := inspectBytes(t, cat(microcode(), compress(t, CompressionGzip, cpioOf(without(debianFiles(), "iscsi")...))))
	const want = "not in /usr/sbin, /sbin, /usr/bin, /bin, /usr/lib/klibc/bin, /usr/libexec or /usr/lib/systemd"
	for _, it := range in.Check(Requirements{}).Missing() {
		if it.Name == "iscsistart" {
			if it.Where != want {
				t.Errorf("Check() iscsistart Where = %q, want %q", it.Where, want)
			}
			return
		}
	}
	t.Errorf("Check().Missing() has no iscsistart item")
}

func TestCheckUnknownBuiltin(t *testing.T) {
	// Without modules.builtin, a missing driver may be built in: not a
	// refusal, but marked unknown; ExtraBuiltin from the OS root settles it.
	in := inspectBytes(t, cpioOf(without(debianFiles(), "modules.builtin")...))
	c := in.Check(Requirements{NICModule: "e1000e"})
	var it Item
	for _, i := range c.Items {
		if strings.HasPrefix(i.Name, "e1000e") {
			it = i
		}
	}
	if !it.Unknown || it.Present || !c.OK() {
		t.Errorf("e1000e item = %+v, OK = %v; want unknown, not blocking", it, c.OK())
	}
	c = in.Check(Requirements{NICModule: "e1000e", ExtraBuiltin: []string{"e1000e"}})
	if !c.OK() || len(c.Notes) != 0 {
		t.Errorf("with ExtraBuiltin: OK = %v, notes %q", c.OK(), c.Notes)
	}
}

func TestCheckNotes(t *testing.T) {
	in := inspectBytes(t, cpioOf(append(dracutFiles(),
		file("etc/cmdline.d/20-iscsi.conf", "netroot=iscsi:192.0.2.1::::iqn.t:old ifname=bootnet:52:54:00:12:34:56 quiet\n"))...))
	c := in.Check(Requirements{})
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "netroot=iscsi:192.0.2.1::::iqn.t:old ifname=bootnet") || strings.Contains(c.Notes[0], "quiet") {
		t.Errorf("Notes = %q, want one naming the baked iSCSI arguments", c.Notes)
	}
	deb := inspectBytes(t, cpioOf(append(debianFiles(), file("etc/iscsi.initramfs", "ISCSI_AUTO=true\n"))...))
	if c := deb.Check(Requirements{}); len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "ISCSI_AUTO") {
		t.Errorf("Notes = %q, want the baked ISCSI_AUTO", c.Notes)
	}
}

func TestParseKernelConfig(t *testing.T) {
	k, err := ParseKernelConfig(strings.NewReader("# comment\nCONFIG_ACPI_TABLE_UPGRADE=y\nCONFIG_ISCSI_IBFT=m\n# CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY is not set\nCONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := KernelSupport{TableUpgrade: Yes, IBFTDriver: Yes, ForcedLockdown: No, LockdownInSecureBoot: Yes}
	if k != want {
		t.Errorf("ParseKernelConfig() = %+v, want %+v", k, want)
	}
	if ok, _ := k.TableAccepted(false); !ok {
		t.Errorf("TableAccepted(no Secure Boot) = false")
	}
	if ok, why := k.TableAccepted(true); ok || !strings.Contains(why, "Secure Boot") {
		t.Errorf("TableAccepted(Secure Boot) = %v, %q", ok, why)
	}
	if ok, why := (KernelSupport{TableUpgrade: No}).TableAccepted(false); ok || !strings.Contains(why, "CONFIG_ACPI_TABLE_UPGRADE") {
		t.Errorf("TableAccepted(no upgrade) = %v, %q", ok, why)
	}
	if ok, _ := (KernelSupport{}).TableAccepted(true); !ok {
		t.Errorf("unknown kernel: TableAccepted = false, want true")
	}
	if _, err := ParseKernelConfig(strings.NewReader("not a config")); err == nil {
		t.Errorf("ParseKernelConfig(garbage) = nil error")
	}
}

func TestParseKernelConfigDebian(t *testing.T) {
	matches, _ := filepath.Glob(filepath.Join(testenv.KernelDir(), "boot", "config-*"))
	if len(matches) == 0 {
		testenv.Missing(t, "no Debian kernel config under "+testenv.KernelDir()+" (make deps)")
	}
	f, err := os.Open(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, err := ParseKernelConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	// DESIGN.md: the Debian 12 kernel has table upgrade and iscsi_ibft.
	if k.TableUpgrade != Yes || k.IBFTDriver != Yes || k.ForcedLockdown != No {
		t.Errorf("Debian kernel config = %+v, want table upgrade and iBFT driver, no forced lockdown", k)
	}
}

func TestSecureBoot(t *testing.T) {
	root := t.TempDir()
	if on, err := SecureBoot(root); on || err != nil {
		t.Errorf("SecureBoot(no EFI) = %v, %v; want false, nil", on, err)
	}
	dir := filepath.Join(root, "firmware", "efi", "efivars")
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")
	for _, tt := range []struct {
		data []byte
		want bool
	}{{[]byte{6, 0, 0, 0, 1}, true}, {[]byte{6, 0, 0, 0, 0}, false}} {
		os.WriteFile(p, tt.data, 0o644)
		if on, err := SecureBoot(root); on != tt.want || err != nil {
			t.Errorf("SecureBoot(% x) = %v, %v; want %v", tt.data, on, err, tt.want)
		}
	}
}

func TestResolveModeNotes(t *testing.T) {
	withIBFT := &Capability{IBFT: true}
	noIBFT := &Capability{IBFT: false}
	for _, tt := range []struct {
		name    string
		req     Mode
		chap    bool
		c       *Capability
		tableOK bool
		want    Mode
		wantErr bool
		note    string
	}{
		{"auto no chap", ModeAuto, false, withIBFT, true, ModeBoth, false, ""},
		{"auto chap", ModeAuto, true, withIBFT, true, ModeIBFT, false, "not on the command line"},
		{"auto no chap, no iscsi_ibft", ModeAuto, false, noIBFT, true, ModeCmdline, false, "iscsi_ibft"},
		{"auto chap, locked down", ModeAuto, true, withIBFT, false, ModeCmdline, false, "/proc/cmdline"},
		{"cmdline chap", ModeCmdline, true, withIBFT, true, ModeCmdline, false, "/proc/cmdline"},
		{"ibft", ModeIBFT, false, withIBFT, true, ModeIBFT, false, ""},
		{"ibft impossible", ModeIBFT, false, withIBFT, false, 0, true, ""},
		{"both chap impossible", ModeBoth, true, noIBFT, true, 0, true, ""},
		{"both no chap, table ignored", ModeBoth, false, withIBFT, false, ModeBoth, false, "ignored"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, notes, err := resolveMode(tt.req, tt.chap, tt.c, tt.tableOK, "locked down")
			if (err != nil) != tt.wantErr {
				t.Fatalf("resolveMode() error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (got != tt.want || reason == "") {
				t.Errorf("resolveMode() = %v (%q), want %v and a reason", got, reason, tt.want)
			}
			if joined := strings.Join(notes, "; "); tt.note != "" && !strings.Contains(joined, tt.note) {
				t.Errorf("resolveMode() notes = %q, want mention of %q", joined, tt.note)
			}
		})
	}
	for _, s := range []string{"auto", "cmdline", "ibft", "both"} {
		m, err := ParseMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if m, err := ParseMode("IBFT"); m != ModeIBFT || err != nil {
		t.Errorf("ParseMode(IBFT) = %v, %v; want ibft", m, err)
	}
	for _, s := range []string{"", "firmware"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) = nil error", s)
		}
	}
}

func TestCapabilityReport(t *testing.T) {
	in := inspectBytes(t, cpioOf(without(debianFiles(), "iscsistart", "modules.builtin")...))
	r := in.Check(Requirements{NICModule: "e1000e"}).Report()
	for _, want := range []string{
		"initrd: initramfs-tools (klibc ipconfig)",
		"ok      open-iscsi boot script (scripts/local-top/iscsi)",
		"MISSING iscsistart",
		"fix: in the OS: `apt install open-iscsi`",
		"unknown e1000e kernel module",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("Report() =\n%s\nwant a line with %q", r, want)
		}
	}
}
