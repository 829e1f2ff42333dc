package handoff

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// readTestdata reads a lab console recorded for the bootlog tests.
func readTestdata(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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
	stages := bootlog.ParseStages(bootlog.Section(readTestdata(t, "../bootlog/testdata/boot-both.txt")))
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
