package e2e

import (
	"strings"
	"testing"
)

// sampleFailure is a lunboot console as the lab records it: kernel lines,
// a library log line, stage lines, Info lines and the final report.
const sampleFailure = `[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)
[    0.000000] Command line: console=ttyS0 rd.iscsi.username=u rd.iscsi.password=hunter2-secret
Probing EDD (edd=off to disable)... oklunboot: iSCSI boot starting
[   1.61s] modules    44 loaded, 0 already present (1.61s)
[   1.62s] config     target from DHCP; no firmware iBFT (10ms)
[    4.123456] virtio_net virtio0 eth0: renamed
[   5.09s] network    eth0 (52:54:00:15:85:00, virtio_net) 10.21.133.106/24, DHCP from 10.21.133.1 in 3.38s; root-path from option 17 (3.47s)
             target iscsi:10.21.133.1::3260:1:iqn.2026-11.org.lunboot.e2e:fail (from DHCP option 17)
[   5.13s] target     iqn.2026-11.org.lunboot.e2e:fail LUN 1 (Linux LUN 1) at 10.21.133.1:3260 as iqn.2026-11.org.lunboot:525400158500 (30ms)
[   5.17s] login      FAILED (attempt 1/2) after 3.01s: dial tcp 10.21.133.250:3260: connect: no route to host
[   5.17s] login      retrying in 1s
time=2026-11-21T03:18:04.382Z level=WARN msg="iscsi: something"
[   9.20s] login      FAILED (attempt 2/2) after 3.02s: dial tcp 10.21.133.250:3260: connect: no route to host
lunboot: BOOT FAILED in stage login after 9.20s
lunboot:   dial tcp 10.21.133.250:3260: connect: no route to host
lunboot:   second line
lunboot: check: portal 10.21.133.250:3260 is unreachable: check the address
lunboot: dropping to the rescue shell; ` + "`lunboot boot`" + ` tries again
lunboot: boot failed in stage login
`

func TestParseStages(t *testing.T) {
	sec, err := lunbootSection(sampleFailure, "LUNBOOT-PROBE-START")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sec, "Linux version") {
		t.Errorf("lunbootSection kept the kernel's lines before lunboot started")
	}
	evs := parseStages(sec)
	var got []string
	for _, e := range evs {
		got = append(got, e.Stage)
	}
	if want := "modules config network target login login login"; strings.Join(got, " ") != want {
		t.Errorf("parseStages stages = %q, want %q (kernel lines are not stage lines)", strings.Join(got, " "), want)
	}
	if got := finished(evs); strings.Join(got, " ") != "modules config network target" {
		t.Errorf("finished = %v, want the four stages that succeeded", got)
	}
	if got, want := summary(evs, "target"), "iqn.2026-11.org.lunboot.e2e:fail LUN 1 (Linux LUN 1) at 10.21.133.1:3260 as iqn.2026-11.org.lunboot:525400158500 (30ms)"; got != want {
		t.Errorf("summary(target) = %q, want %q", got, want)
	}
	if got := summary(evs, "login"); got != "" {
		t.Errorf("summary(login) = %q, want empty (the login never succeeded)", got)
	}
	failed, retries := failures(evs, "login")
	if len(failed) != 2 || retries != 1 {
		t.Errorf("failures(login) = %d failed, %d retries; want 2, 1", len(failed), retries)
	}
}

func TestLunbootSectionEnds(t *testing.T) {
	sec, err := lunbootSection("x\n"+startLine+"\n[   1.00s] os   ok\nLUNBOOT-PROBE-START fixture=a\n[   2.00s] late  no\n", "LUNBOOT-PROBE-START")
	if err != nil {
		t.Fatal(err)
	}
	if evs := parseStages(sec); len(evs) != 1 || evs[0].Stage != "os" {
		t.Errorf("parseStages after the end marker = %+v, want only the os line", evs)
	}
	if _, err := lunbootSection("no lunboot here", ""); err == nil {
		t.Errorf("lunbootSection without the start line: no error")
	}
}

func TestParseFailure(t *testing.T) {
	f, err := parseFailure(sampleFailure)
	if err != nil {
		t.Fatal(err)
	}
	if f.Stage != "login" || f.Then != "rescue" {
		t.Errorf("parseFailure stage %q then %q, want login, rescue", f.Stage, f.Then)
	}
	if got, want := f.ErrorText(), "dial tcp 10.21.133.250:3260: connect: no route to host\nsecond line"; got != want {
		t.Errorf("parseFailure error = %q, want %q", got, want)
	}
	if got, want := f.Check, "portal 10.21.133.250:3260 is unreachable: check the address"; got != want {
		t.Errorf("parseFailure check = %q, want %q", got, want)
	}
	reboot := strings.Replace(sampleFailure, "lunboot: dropping to the rescue shell", "lunboot: rebooting in 10s (lunboot.rescue=0)\nx", 1)
	if f, err := parseFailure(reboot); err != nil || f.Then != "reboot" {
		t.Errorf("parseFailure(reboot) = %+v, %v; want then reboot", f, err)
	}
	// A report still being printed is not complete.
	partial := sampleFailure[:strings.Index(sampleFailure, "lunboot: dropping")]
	if _, err := parseFailure(partial); err == nil {
		t.Errorf("parseFailure(report without its last line): no error")
	}
}

func TestSecretLeaks(t *testing.T) {
	const secret = "hunter2-secret"
	if got := secretLeaks(sampleFailure, secret); len(got) != 0 {
		t.Errorf("secretLeaks: the kernel's own command line print counted as a leak: %q", got)
	}
	leaky := sampleFailure + "             chap one-way user \"u\" password " + secret + "\n" +
		"[    0.000000] Command line: console=ttyS0 rd.iscsi.password=" + secret + "\n"
	got := secretLeaks(leaky, secret)
	if len(got) != 2 {
		t.Fatalf("secretLeaks = %q, want the stage line and the OS kernel's command line after lunboot started", got)
	}
	for _, l := range got {
		if strings.Contains(l, secret) {
			t.Errorf("secretLeaks repeats the secret: %q", l)
		}
	}
}
