package bootlog

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// fail-login.txt: a failed boot as the lab records it, with kernel lines, a
// library's log line, retries and the final report.
func TestFailures(t *testing.T) {
	c := readConsole(t, "fail-login.txt")
	stages := ParseStages(Section(c))
	if got := strings.Join(Finished(stages), " "); got != "modules config network target" {
		t.Errorf("Finished = %q, want the four stages that succeeded", got)
	}
	if s, ok := Find(stages, "login"); ok {
		t.Errorf("Find(login) = %+v, want none (the login never succeeded)", s)
	}
	failed, retries := Failures(stages, "login")
	if len(failed) != 2 || retries != 1 {
		t.Errorf("Failures(login) = %d failed, %d retries; want 2, 1", len(failed), retries)
	}
	f, err := ParseFailure(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.ErrorText(), "dial tcp 10.21.133.250:3260: connect: no route to host\nsecond line"; got != want {
		t.Errorf("ErrorText = %q, want %q", got, want)
	}
	if f.Stage != "login" || f.Then != "rescue" {
		t.Errorf("ParseFailure stage %q then %q, want login, rescue", f.Stage, f.Then)
	}
	reboot := strings.Replace(c, "lunboot: dropping to the rescue shell", "lunboot: rebooting in 10s (lunboot.rescue=0)\nx", 1)
	if f, err := ParseFailure(reboot); err != nil || f.Then != "reboot" {
		t.Errorf("ParseFailure(reboot) = %+v, %v; want then reboot", f, err)
	}
	// A report still being printed is not complete.
	if _, err := ParseFailure(c[:strings.Index(c, "lunboot: dropping")]); err == nil {
		t.Errorf("ParseFailure(report without its last line): no error")
	}
	if leaks := SecretLeaks(c, "hunter2-secret"); len(leaks) != 0 {
		t.Errorf("SecretLeaks: the kernel's own command line print counted as a leak: %q", leaks)
	}
}

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []string
	}{
		{"a\nb\nc\n", 2, []string{"b", "c"}},
		{"a\nb\nc", 5, []string{"a", "b", "c"}},
		{"a\n\nc\n\n", 2, []string{"", "c"}}, // inner empty lines are lines
		{"", 3, nil},
		{"\n\n", 3, nil},
		{"a\nb", 0, nil},
	} {
		if got := LastLines(tc.in, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
