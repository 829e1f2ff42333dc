package pxe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
)

// TestDocsHoldTheExamples checks that the documentation still has every
// example value the lab replaces or serves, so that a renamed example fails
// here and not only in a boot.
func TestDocsHoldTheExamples(t *testing.T) {
	repo := testenv.RepoRoot()
	conf, err := ReadDoc(repo, "docs/dhcp/dnsmasq.conf",
		Sub{ExampleSubnet, "10.9.8."}, Sub{"interface=" + ExampleInterface + "\n", "interface=br0\n"},
		Sub{"tftp-root=" + ExampleTFTPRoot + "\n", "tftp-root=/x\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dhcp-host=" + NodeMAC + ",", ":::1a:" + NodeTarget + `"`, `"` + NodeInitiator + `"`, tftpBoot} {
		if !strings.Contains(conf, want) {
			t.Errorf("docs/dhcp/dnsmasq.conf has no %q", want)
		}
	}
	if m := httpHint.FindStringSubmatch(conf); m == nil || m[1] != "http://10.9.8.1/lunboot/"+Script {
		t.Errorf("docs/dhcp/dnsmasq.conf's HTTP hint = %q, want the script's URL on this server", m)
	}
	if _, err := ReadDoc(repo, "docs/dhcp/dnsmasq.conf", Sub{"no such example", ""}); err == nil {
		t.Errorf("ReadDoc accepted a substitution that matches nothing")
	}
	script, err := SanhookScript(repo)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(script, "sanhook iscsi:"+ExampleSubnet+"1:::1a:"+NodeTarget+"\n") {
		t.Errorf("deploy.md's sanhook script does not hook node7's LUN 1a:\n%s", script)
	}
}

func TestAddKernelArgs(t *testing.T) {
	got, err := AddKernelArgs("#!ipxe\nkernel vmlinuz a=b \ninitrd x\nboot\n", "c=d")
	if want := "#!ipxe\nkernel vmlinuz a=b c=d\ninitrd x\nboot\n"; err != nil || got != want {
		t.Errorf("AddKernelArgs = %q, %v; want %q", got, err, want)
	}
	if _, err := AddKernelArgs("#!ipxe\nboot\n", "c=d"); err == nil {
		t.Errorf("AddKernelArgs accepted a script without a kernel line")
	}
}

// dnsmasqLog is --log-dhcp output as dnsmasq 2.90 writes it: iPXE's
// exchange, then lunboot's.
const dnsmasqLog = `Dec  6 04:24:23 dnsmasq-dhcp[8156]: DHCP, sockets bound exclusively to interface br0
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 available DHCP range: 10.9.8.100 -- 10.9.8.200
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 vendor class: PXEClient:Arch:00000:UNDI:002001
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 user class: iPXE
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 DHCPDISCOVER(br0) 52:54:00:12:34:56
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 sent size: 13 option: 67 bootfile-name  lunboot.ipxe
Dec  6 04:30:01 dnsmasq-dhcp[8156]: 11 sent size:  1 option: 53 message-type  2
Dec  6 04:30:09 dnsmasq-dhcp[8156]: 22 vendor class: lunboot
Dec  6 04:30:09 dnsmasq-dhcp[8156]: 22 sent size: 52 option: 17 root-path  iscsi:10.9.8.1:::1a:iqn.2001-04.com.example:node7
Dec  6 04:30:09 dnsmasq-dhcp[8156]: 22 sent size: 38 option:203  69:71:6e
`

func TestCheckChain(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "dnsmasq.log")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	xs, err := CheckChain(write(dnsmasqLog), Script, true)
	if err != nil {
		t.Errorf("CheckChain on a good chain: %v", err)
	}
	if len(xs) != 2 || xs[1].Options[17] != "iscsi:10.9.8.1:::1a:iqn.2001-04.com.example:node7" || xs[1].Options[203] == "" || xs[0].UserClass != "iPXE" {
		t.Errorf("Exchanges = %+v", xs)
	}
	for name, log := range map[string]string{
		"root-path to iPXE": strings.Replace(dnsmasqLog, "11 sent size: 13", "11 sent size: 5 option: 17 root-path  iscsi:x\nDec  6 04:30:01 dnsmasq-dhcp[8156]: 11 sent size: 13", 1),
		"wrong file":        strings.Replace(dnsmasqLog, "bootfile-name  lunboot.ipxe", "bootfile-name  undionly.kpxe", 1),
		"no root-path":      strings.Replace(dnsmasqLog, "option: 17", "option: 12", 1),
		"no lunboot":        strings.Replace(dnsmasqLog, "vendor class: lunboot", "vendor class: other", 1),
	} {
		if _, err := CheckChain(write(log), Script, true); err == nil {
			t.Errorf("CheckChain accepted a log with %s", name)
		}
	}
	if _, err := CheckChain(write(dnsmasqLog), Script, false); err == nil {
		t.Errorf("CheckChain(wantRootPath=false) accepted lunboot getting option 17")
	}
}
