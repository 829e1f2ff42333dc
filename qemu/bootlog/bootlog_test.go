package handoff

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// The testdata consoles are lunboot's real output in the lab: a boot of
// the Debian disk that reached kexec (hand-off both), as VM.Console cleans
// it, and the refusal of the initrd without open-iscsi, as the raw serial
// log has it (CR LF line ends).
func readConsole(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseStages(t *testing.T) {
	type stage struct {
		Name     string
		At, Took time.Duration
		Text     string
		OK       bool
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		in   string
		want []stage
	}{
		{"boot-both.txt", readConsole(t, "boot-both.txt"), []stage{
			{"modules", 1590 * ms, 1580 * ms, "44 loaded, 0 already present", true},
			{"config", 1600 * ms, 10 * ms, "target from DHCP; no firmware iBFT", true},
			{"network", 5040 * ms, 3440 * ms, "eth0 (52:54:00:15:d8:00, virtio_net) 10.21.216.123/24 via 10.21.216.1, DHCP from 10.21.216.1 in 3.36s; root-path from option 17", true},
			{"target", 5080 * ms, 30 * ms, "iqn.2026-11.org.lunboot.lab:debian LUN 1 (Linux LUN 1) at 10.21.216.1:3260 as iqn.2026-11.org.lunboot:52540015d800", true},
			{"login", 5170 * ms, 90 * ms, "iqn.2026-11.org.lunboot.lab:debian at 10.21.216.1:3260 (no CHAP, no digests); LUN 1: IET VIRTUAL-DISK, 2.3 GiB, 512-byte blocks", true},
			{"nbd", 5280 * ms, 110 * ms, "/dev/nbd0 (2.3 GiB, 2 partitions)", true},
			{"os", 5520 * ms, 230 * ms, `BLS entry "Debian GNU/Linux 12 (bookworm, debian) 6.1.0-50-amd64" on /dev/nbd0p1 (1 entry found)`, true},
			{"load", 7040 * ms, 1520 * ms, "kernel 7.8 MiB, initrd 34.9 MiB: 42.7 MiB in 1.52s (29.4 MB/s)", true},
			// A summary with its own parentheses: only the last is the time.
			{"handoff", 14420 * ms, 7370 * ms, "initramfs-tools (klibc ipconfig) initrd; hand-off both (iBFT 392 bytes in the initrd)", true},
			{"kexec-load", 16100 * ms, 1680 * ms, "Debian GNU/Linux 12 (bookworm, debian) 6.1.0-50-amd64 loaded", true},
			// After a kernel message with six decimals, which is no stage.
			{"shutdown", 16590 * ms, 500 * ms, "unmounted, /dev/nbd0 detached, logged out, eth0 down", true},
		}},
		{"retries", "[   5.90s] login      FAILED (attempt 1/4) after 10ms: refused\n[   5.90s] login      retrying in 1s\n[   7.00s] login      ok (1.1s)\n", []stage{
			{"login", 5900 * ms, 0, "FAILED (attempt 1/4) after 10ms: refused", false},
			{"login", 5900 * ms, 0, "retrying in 1s", false},
			{"login", 7000 * ms, 1100 * ms, "ok", true},
		}},
		{"no duration", "[   1.00s] odd        no time given\n", []stage{{"odd", time.Second, 0, "no time given", true}}},
		{"kernel lines only", "[    0.000000] Linux version 6.1\n[    5.123456] virtio_net virtio0 ens3: renamed\n", nil},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if strings.Contains(in, StartLine) {
				in = Section(in)
			}
			var got []stage
			for _, s := range ParseStages(in) {
				got = append(got, stage{s.Name, s.At, s.Took, s.Text, s.OK()})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseStages(%s) mismatch (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}

func TestSection(t *testing.T) {
	con := readConsole(t, "boot-both.txt")
	s := Section(con)
	if !strings.HasPrefix(s, StartLine) {
		t.Errorf("Section(boot-both.txt) starts %q, want %q", s[:min(len(s), 40)], StartLine)
	}
	if strings.Contains(s, "Linux version") || !strings.Contains(s, "booting Debian GNU/Linux 12") {
		t.Errorf("Section(boot-both.txt) = …%q, want it to end before the OS kernel's first line", s[max(0, len(s)-80):])
	}
	if got := Section("[    0.000000] Linux version 6.1\nno lunboot here\n"); got != "" {
		t.Errorf("Section(without lunboot) = %q, want \"\"", got)
	}
	if got := Finished(ParseStages(s)); strings.Join(got, " ") != strings.Join(Stages, " ") {
		t.Errorf("Finished(boot-both.txt) = %v, want %v", got, Stages)
	}
	if h, ok := Find(ParseStages(s), "handoff"); !ok || !strings.Contains(h.Text, "hand-off both") {
		t.Errorf("Find(handoff) = %+v, %v; want the handoff stage line", h, ok)
	}
	if _, ok := Find(ParseStages(s), "nosuch"); ok {
		t.Errorf("Find(nosuch) found a stage")
	}
}

func TestParseFailure(t *testing.T) {
	f, err := ParseFailure(readConsole(t, "refuse-noiscsi.txt"))
	if err != nil {
		t.Fatalf("ParseFailure(refuse-noiscsi.txt): %v", err)
	}
	want := &Failure{
		Stage: "handoff",
		Error: []string{
			"the OS initrd (initramfs-tools (klibc ipconfig)) cannot log in to the iSCSI target after kexec:",
			"  missing open-iscsi boot script (scripts/local-top/iscsi)",
			"    fix: in the OS: `apt install open-iscsi`, make sure /etc/initramfs-tools/conf.d has no NO_ISCSI_IN_INITRAMFS=yes, then `update-initramfs -u`",
			"  missing iscsistart (not in /usr/sbin, /sbin, /usr/bin or /bin)",
			"    fix: in the OS: `apt install open-iscsi`, make sure /etc/initramfs-tools/conf.d has no NO_ISCSI_IN_INITRAMFS=yes, then `update-initramfs -u`",
		},
		Check: "rebuild the OS initrd with iSCSI support (see above), or boot with lunboot.force=1 to kexec anyway",
		Then:  "rescue",
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Errorf("ParseFailure(refuse-noiscsi.txt) mismatch (-want +got):\n%s", diff)
	}
	if got := strings.Join(Finished(ParseStages(Section(readConsole(t, "refuse-noiscsi.txt")))), " "); got != strings.Join(Stages[:8], " ") {
		t.Errorf("Finished(refuse-noiscsi.txt) = %s, want %s", got, strings.Join(Stages[:8], " "))
	}

	for _, tc := range []struct{ name, in, then string }{
		{"reboot", FailedLine + "login after 9.2s\nlunboot:   denied\n" + RebootLine + " 10s (lunboot.rescue=0)\n", "reboot"},
		{"no error lines", FailedLine + "login after 9.2s\n" + RescueLine + "; …\n", ""},
		{"incomplete", FailedLine + "login after 9.2s\nlunboot:   denied\n", ""},
		{"none", "lunboot: iSCSI boot starting\n", ""},
	} {
		f, err := ParseFailure(tc.in)
		if (err == nil) != (tc.then != "") {
			t.Errorf("ParseFailure(%s) error = %v, want error %v", tc.name, err, tc.then == "")
			continue
		}
		if err == nil && (f.Then != tc.then || f.Stage != "login" || len(f.Error) != 1) {
			t.Errorf("ParseFailure(%s) = %+v, want stage login, one error line, then %s", tc.name, f, tc.then)
		}
	}
}

func TestSecretLeaks(t *testing.T) {
	const secret = "s3cret-in-test"
	for _, tc := range []struct {
		name, console string
		want          []string
	}{
		{"kernel echo before lunboot", "[    0.000000] Command line: console=ttyS0 rd.iscsi.password=" + secret + "\n" +
			"[    0.068228] Kernel command line: console=ttyS0 rd.iscsi.password=" + secret + "\n" + StartLine + "\nchap one-way user \"u\" (***)\n", nil},
		{"after lunboot started", StartLine + "\n[   5.00s] login      as u/" + secret + "\n",
			[]string{"[   5.00s] login      as u/<SECRET>"}},
		{"anything else before lunboot", "init: password " + secret + "\n" + StartLine + "\n", []string{"init: password <SECRET>"}},
		{"kernel echo after lunboot (the OS's)", StartLine + "\n[    0.000000] Command line: iscsi_password=" + secret + "\n",
			[]string{"[    0.000000] Command line: iscsi_password=<SECRET>"}},
		{"no secret", StartLine + "\nall clear\n", nil},
	} {
		if got := SecretLeaks(tc.console, secret, ""); !cmp.Equal(got, tc.want) {
			t.Errorf("SecretLeaks(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestIBFTSummary(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   osproof.IBFT
		want string
	}{
		{"absent", nil, "absent"},
		{"empty", osproof.IBFT{}, "present, empty"},
		{"table", osproof.IBFT{
			"acpi_header/signature":    "IBFT",
			"initiator/initiator-name": "iqn.2026-11.org.lunboot:525400123456",
			"initiator/index":          "0",
			"initiator/isns-server":    "0.0.0.0",
			"target0/ip-addr":          "10.1.2.1",
			"target0/chap-name":        "",
			"ethernet0/mac":            "52:54:00:12:34:56",
		}, "acpi_header: signature=IBFT\nethernet0: mac=52:54:00:12:34:56\ninitiator: initiator-name=iqn.2026-11.org.lunboot:525400123456\ntarget0: ip-addr=10.1.2.1"},
	} {
		if got := IBFTSummary(tc.in); got != tc.want {
			t.Errorf("IBFTSummary(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestWriteSummary(t *testing.T) {
	stages := ParseStages(Section(readConsole(t, "boot-both.txt")))
	p := &osproof.Proof{V: 1, Kernel: "6.1.0-50-amd64", OS: "Debian GNU/Linux 12 (bookworm)", Cmdline: "root=UUID=x rw iscsi_auto",
		Sessions: []osproof.Session{{Name: "session1", TargetName: "iqn.t", InitiatorName: "iqn.i", State: "LOGGED_IN",
			Connections: []osproof.Connection{{PersistentAddress: "10.1.2.1", PersistentPort: 3260}}}},
		Root:    osproof.Root{Source: "/dev/sda2", FSType: "ext4", Device: "sda2", Session: "session1", LUN: 1, ByPath: []string{"ip-10.1.2.1:3260-iscsi-iqn.t-lun-1-part2"}},
		Systemd: osproof.Systemd{State: "running", MultiUser: "active"}}
	var b strings.Builder
	WriteSummary(&b, stages, &OS{Proof: p, ProofAt: 58130 * time.Millisecond, LoginAt: 58810 * time.Millisecond})
	got := b.String()
	for _, want := range []string{
		"  handoff     +14.42s    7.37s  initramfs-tools (klibc ipconfig) initrd; hand-off both (iBFT 392 bytes in the initrd)\n",
		"proof at +58.13s QEMU time",
		"login prompt at +58.81s",
		"  command line  root=UUID=x rw iscsi_auto\n",
		"  iBFT          absent\n",
		"  iSCSI         session1 LOGGED_IN: target iqn.t, initiator iqn.i, portal 10.1.2.1:3260\n",
		"  root          /dev/sda2 (ext4) = sda2 on session1 LUN 1, /dev/disk/by-path/ip-10.1.2.1:3260-iscsi-iqn.t-lun-1-part2\n",
		"  systemd       running, multi-user.target active\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("WriteSummary wrote:\n%s\nwant it to contain %q", got, want)
		}
	}
	b.Reset()
	WriteSummary(&b, nil, nil)
	if !strings.Contains(b.String(), "the OS did not report") {
		t.Errorf("WriteSummary(no OS) = %q, want it to say the OS did not report", b.String())
	}
}
