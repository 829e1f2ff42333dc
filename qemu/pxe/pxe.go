// Package pxe makes the documentation's PXE recipes (docs/deploy.md,
// docs/dhcp/dnsmasq.conf, docs/dhcp/lunboot.ipxe) concrete for a lab, so
// that the lab boots exactly what a user is told to configure: the files are
// read from docs/ and only the example values they document are replaced by
// the lab's (its subnet, bridge and TFTP folder). A recipe that is wrong
// fails the boot that uses it.
//
// The lab's NIC ROM is iPXE already (SeaBIOS runs Debian's ipxe-qemu ROM),
// so the chain starts at the recipe's second step: iPXE asks, dnsmasq hands
// it the script by TFTP, the script loads lunboot, lunboot asks.
package pxe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/qemu/lab"
)

// The example values docs/dhcp/dnsmasq.conf and docs/deploy.md use; the
// lab serves them as they are (the target's name, the MAC, the LUN), except
// the addresses, which move into the lab's subnet.
const (
	// ExampleSubnet starts every example address (192.0.2.0/24, RFC 5737).
	ExampleSubnet = "192.0.2."
	// ExampleInterface is the interface dnsmasq.conf names.
	ExampleInterface = "eth0"
	// ExampleTFTPRoot is dnsmasq.conf's tftp-root.
	ExampleTFTPRoot = "/srv/tftp"
	// NodeMAC is the MAC of the example machine node7, whose dhcp-host
	// line gives lunboot the root-path.
	NodeMAC = "52:54:00:12:34:56"
	// NodeTarget is node7's target name.
	NodeTarget = "iqn.2001-04.com.example:node7"
	// NodeInitiator is the initiator name (option 203) node7 gets.
	NodeInitiator = "iqn.2001-04.com.example:initiator-node7"
	// NodeLUN is node7's LUN: 1a in the root-path, hexadecimal.
	NodeLUN = 0x1a
	// Script is the name iPXE is handed (dhcp-boot=tag:ipxe,…).
	Script = "lunboot.ipxe"
	// Kernel and Initrd are the names the script loads.
	Kernel = "vmlinuz"
	Initrd = "lunboot.cpio.xz"
)

// Recipe is a prepared TFTP folder and dnsmasq configuration.
type Recipe struct {
	// TFTPRoot holds the script, the kernel and the initramfs.
	TFTPRoot string
	// ConfFile is dnsmasq.conf with the lab's values, for
	// lab.DHCPConfig.ConfFile.
	ConfFile string
	// Script is the iPXE script as served.
	Script string
	// ScriptURL is the file name iPXE is handed: the script's name, or
	// with HTTP its URL.
	ScriptURL string
}

// Options says what to prepare.
type Options struct {
	// Repo is the repository's top folder (docs/ is read from there).
	Repo string
	// Kernel and Initrd are lunboot's image (out/vmlinuz,
	// out/lunboot.cpio.xz).
	Kernel, Initrd string
	// Script is the iPXE script to serve as lunboot.ipxe; empty serves
	// docs/dhcp/lunboot.ipxe. Example addresses in it are replaced too.
	Script string
	// KernelArgs are added to the script's kernel line, as docs/deploy.md
	// tells users to add lunboot options.
	KernelArgs string
	// HTTP hands iPXE the script's URL instead of its TFTP name, as
	// dnsmasq.conf's comment says (the URL is read from that comment), and
	// serves the TFTP folder there from the lab (Lab.ServeFiles): the
	// script, kernel and initramfs then come over HTTP.
	HTTP bool
}

// httpHint is dnsmasq.conf's comment that gives the script's URL.
var httpHint = regexp.MustCompile(`HTTP write its URL instead:\s+(http://\S+)`)

// tftpBoot is dnsmasq.conf's line that hands iPXE the script.
const tftpBoot = "dhcp-boot=tag:ipxe," + Script + "\n"

// Prepare writes the recipe's files for l into a folder of l's work
// folder.
func Prepare(l *lab.Lab, o Options) (*Recipe, error) {
	root := filepath.Join(l.WorkDir(), "tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	subnet := l.Prefix().Addr().String()
	subnet = subnet[:strings.LastIndexByte(subnet, '.')+1]
	conf, err := ReadDoc(o.Repo, "docs/dhcp/dnsmasq.conf",
		Sub{ExampleSubnet, subnet},
		Sub{"interface=" + ExampleInterface + "\n", "interface=" + l.Bridge() + "\n"},
		Sub{"tftp-root=" + ExampleTFTPRoot + "\n", "tftp-root=" + root + "\n"})
	if err != nil {
		return nil, err
	}
	scriptURL := Script
	if o.HTTP {
		m := httpHint.FindStringSubmatch(conf)
		if m == nil || !strings.Contains(conf, tftpBoot) {
			return nil, fmt.Errorf("pxe: docs/dhcp/dnsmasq.conf no longer says how to hand iPXE the script over HTTP (%q, %q)", httpHint, tftpBoot)
		}
		u, err := url.Parse(m[1])
		if err != nil || path.Base(u.Path) != Script {
			return nil, fmt.Errorf("pxe: docs/dhcp/dnsmasq.conf's HTTP URL %q does not name %s", m[1], Script)
		}
		port := 0
		if p := u.Port(); p != "" {
			fmt.Sscan(p, &port)
		}
		fs, err := l.ServeFiles(root, path.Dir(u.Path)+"/", port)
		if err != nil {
			return nil, err
		}
		if fs.URL()+Script != m[1] {
			return nil, fmt.Errorf("pxe: the lab serves the script at %s, the configuration names %s", fs.URL()+Script, m[1])
		}
		scriptURL = m[1]
		conf = strings.Replace(conf, tftpBoot, "dhcp-boot=tag:ipxe,"+scriptURL+"\n", 1)
	}
	script := o.Script
	if script == "" {
		if script, err = ReadDoc(o.Repo, "docs/dhcp/lunboot.ipxe"); err != nil {
			return nil, err
		}
	}
	script = strings.ReplaceAll(script, ExampleSubnet, subnet)
	if o.KernelArgs != "" {
		if script, err = AddKernelArgs(script, o.KernelArgs); err != nil {
			return nil, err
		}
	}
	r := &Recipe{TFTPRoot: root, ConfFile: filepath.Join(l.WorkDir(), "dnsmasq.conf"), Script: script, ScriptURL: scriptURL}
	if err := os.WriteFile(r.ConfFile, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, Script), []byte(script), 0o644); err != nil {
		return nil, fmt.Errorf("pxe: %w", err)
	}
	for name, src := range map[string]string{Kernel: o.Kernel, Initrd: o.Initrd} {
		abs, err := filepath.Abs(src)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err == nil {
			// dnsmasq's TFTP server follows links (no tftp-secure).
			err = os.Symlink(abs, filepath.Join(root, name))
		}
		if err != nil {
			return nil, fmt.Errorf("pxe: %s: %w", name, err)
		}
	}
	l.Logf("PXE recipe: TFTP root %s, dnsmasq configuration %s, script:\n%s", root, r.ConfFile, script)
	return r, nil
}

// Sub replaces Old with New; Old must occur in the text.
type Sub struct{ Old, New string }

// ReadDoc reads a file of the repository and applies subs, each of which
// must match: a documented example that disappeared from the file makes the
// caller's assumptions stale.
func ReadDoc(repo, rel string, subs ...Sub) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(rel)))
	if err != nil {
		return "", fmt.Errorf("pxe: %w", err)
	}
	s := string(b)
	for _, sub := range subs {
		if !strings.Contains(s, sub.Old) {
			return "", fmt.Errorf("pxe: %s no longer contains %q, the documented example the lab replaces", rel, sub.Old)
		}
		s = strings.ReplaceAll(s, sub.Old, sub.New)
	}
	return s, nil
}

// AddKernelArgs appends args to the script's kernel line.
func AddKernelArgs(script, args string) (string, error) {
	lines := strings.Split(script, "\n")
	n := 0
	for i, line := range lines {
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "kernel" || f[0] == "chain") {
			lines[i] = strings.TrimRight(line, " ") + " " + args
			n++
		}
	}
	if n != 1 {
		return "", fmt.Errorf("pxe: the iPXE script has %d kernel lines, want 1", n)
	}
	return strings.Join(lines, "\n"), nil
}

// fencedAfter matches the first fenced block after a marker text.
func fencedAfter(page, marker string) (string, error) {
	i := strings.Index(page, marker)
	if i < 0 {
		return "", fmt.Errorf("no %q", marker)
	}
	m := regexp.MustCompile("(?s)```[a-z]*\n(.*?)```").FindStringSubmatch(page[i:])
	if m == nil {
		return "", fmt.Errorf("no fenced block after %q", marker)
	}
	return m[1], nil
}

// SanhookScript returns the iPXE script of docs/deploy.md's "A firmware
// that already logged in": the first fenced block after the sentence that
// introduces it.
func SanhookScript(repo string) (string, error) {
	page, err := ReadDoc(repo, "docs/deploy.md")
	if err != nil {
		return "", err
	}
	s, err := fencedAfter(page, "With iPXE as that firmware")
	if err != nil {
		return "", fmt.Errorf("pxe: docs/deploy.md: %w", err)
	}
	if !strings.HasPrefix(s, "#!ipxe\n") || !strings.Contains(s, "sanhook ") {
		return "", fmt.Errorf("pxe: docs/deploy.md: the block after \"With iPXE as that firmware\" is no sanhook script:\n%s", s)
	}
	return s, nil
}

// Exchange is one DHCP transaction as dnsmasq's --log-dhcp shows it.
type Exchange struct {
	XID         string
	VendorClass string
	UserClass   string
	BootFile    string
	// Options are the option numbers dnsmasq sent.
	Options map[int]string
}

// dhcpLine is dnsmasq's "<xid> <text>" log line.
var dhcpLine = regexp.MustCompile(`dnsmasq-dhcp\[\d+\]: (\d+) (.*)$`)

// sentOpt is "sent size: <n> option: <code> <name>  <value>" (the name
// only for options dnsmasq knows, followed by two spaces).
var sentOpt = regexp.MustCompile(`^sent size:\s*\d+ option:\s*(\d+)\s+(.*)$`)

// Exchanges reads dnsmasq's log and groups it by transaction.
func Exchanges(logFile string) ([]*Exchange, error) {
	f, err := os.Open(logFile)
	if err != nil {
		return nil, fmt.Errorf("pxe: dnsmasq log: %w", err)
	}
	defer f.Close()
	byXID := map[string]*Exchange{}
	var out []*Exchange
	s := bufio.NewScanner(f)
	for s.Scan() {
		m := dhcpLine.FindStringSubmatch(s.Text())
		if m == nil {
			continue
		}
		x := byXID[m[1]]
		if x == nil {
			x = &Exchange{XID: m[1], Options: map[int]string{}}
			byXID[m[1]] = x
			out = append(out, x)
		}
		text := m[2]
		switch {
		case strings.HasPrefix(text, "vendor class: "):
			x.VendorClass = strings.TrimPrefix(text, "vendor class: ")
		case strings.HasPrefix(text, "user class: "):
			x.UserClass = strings.TrimPrefix(text, "user class: ")
		case strings.HasPrefix(text, "bootfile name: "):
			x.BootFile = strings.TrimPrefix(text, "bootfile name: ")
		default:
			if o := sentOpt.FindStringSubmatch(text); o != nil {
				var n int
				fmt.Sscan(o[1], &n)
				v := o[2]
				if _, after, ok := strings.Cut(v, "  "); ok {
					v = after
				}
				x.Options[n] = strings.TrimSpace(v)
				if n == 67 { // bootfile-name, when sent as an option
					x.BootFile = x.Options[n]
				}
			}
		}
	}
	return out, s.Err()
}

// CheckChain checks what the recipe promises of the DHCP answers: iPXE
// (user class iPXE) was handed the script (bootFile, its name or URL) and
// no root-path, every answer
// that carried a root-path (option 17) went to lunboot (vendor class
// lunboot), and, if wantRootPath, lunboot got one.
func CheckChain(logFile, bootFile string, wantRootPath bool) ([]*Exchange, error) {
	xs, err := Exchanges(logFile)
	if err != nil {
		return nil, err
	}
	var errs []error
	ipxe, lunboot := 0, 0
	for _, x := range xs {
		_, has17 := x.Options[17]
		isLunboot := x.VendorClass == "lunboot"
		if x.UserClass == "iPXE" {
			ipxe++
			if x.BootFile != bootFile {
				errs = append(errs, fmt.Errorf("dnsmasq handed iPXE (transaction %s) boot file %q, want %q", x.XID, x.BootFile, bootFile))
			}
		}
		if has17 && !isLunboot {
			errs = append(errs, fmt.Errorf("dnsmasq sent option 17 %q to a client that is not lunboot (transaction %s, vendor class %q, user class %q)",
				x.Options[17], x.XID, x.VendorClass, x.UserClass))
		}
		if isLunboot {
			lunboot++
			if has17 != wantRootPath {
				errs = append(errs, fmt.Errorf("dnsmasq's answer to lunboot (transaction %s): option 17 sent = %v, want %v", x.XID, has17, wantRootPath))
			}
		}
	}
	if ipxe == 0 {
		errs = append(errs, errors.New("dnsmasq's log shows no DHCP exchange with iPXE (user class iPXE)"))
	}
	if lunboot == 0 {
		errs = append(errs, errors.New("dnsmasq's log shows no DHCP exchange with lunboot (vendor class lunboot)"))
	}
	return xs, errors.Join(errs...)
}

// NodeHardwareAddr is NodeMAC parsed.
func NodeHardwareAddr() net.HardwareAddr {
	mac, _ := net.ParseMAC(NodeMAC)
	return mac
}

// MoveLUN moves the disk at path from LUN from to LUN to of target tid:
// the lab's exports start at LUN 1, the recipe's machine boots from 1a.
func MoveLUN(s *tgt.Server, tid, from, to int, path string) error {
	if err := s.Admin("--op", "delete", "--mode", "logicalunit", "--tid", strconv.Itoa(tid), "--lun", strconv.Itoa(from)); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	if err := s.AddLUN(tid, to, path); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	return nil
}
