package handoff

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/qemu/bootlog"
	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/distro/osproof"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
)

// Memory is the guest's RAM: lunboot holds the OS kernel and initrd in
// tmpfs before the jump, and Debian wants about 1 GiB after it.
const Memory = "2G"

// LoginPattern matches the distribution's login prompt on the serial
// console (its host name is lunboot-<system>).
var LoginPattern = regexp.MustCompile(`(?m)` + loginExpr)

const loginExpr = `^lunboot-[\w-]+ login: `

// Config describes one boot of a lab distribution through lunboot.
type Config struct {
	// Kernel and Image are lunboot's boot image (out/vmlinuz and
	// out/lunboot.cpio.xz from `make image`). Image is empty for a kernel
	// with lunboot inside (out/linuxboot.bzImage from `make linuxboot`),
	// entered with no initrd as a LinuxBoot or coreboot payload is.
	Kernel, Image string
	// EFI, instead of Kernel and Image, is an EFI executable with lunboot
	// inside (out/lunboot.efi from `make efi`): the guest gets a local
	// disk whose ESP holds it as \EFI\BOOT\BOOTX64.EFI, the path UEFI
	// firmware boots without a boot option, and boots from it. It carries
	// its own command line: Args and RawConsole must be empty. Needs
	// Firmware qemuvm.UEFI.
	EFI string
	// System is the disk exported as LUN 1 (tgtd) or LUN 0 (LIO).
	System *distro.System
	// LIO boots from the lab's LIO target VM (lab.StartLIO) instead of
	// tgtd, as from a storage appliance: the disk at LUN 0 and an ACL
	// admitting only lunboot's default initiator name (derived from the
	// MAC of tap 0), which the OS's initiator must log in with too. The
	// lab needs two taps (lunboot on tap 0, LIO on the last) and the
	// caller two guest slots (testenv.GuestSlots).
	LIO bool
	// Args are extra arguments on lunboot's kernel command line.
	Args string
	// CHAP, when set, makes the target require CHAP (mutual when
	// TargetUsername is set). Its secrets are masked in the lab's logs.
	CHAP *lab.CHAP
	// IQN is the target name; default iqn.2026-11.org.lunboot.lab:<system>.
	IQN string
	// Name labels the guest's log files; default "lunboot".
	Name string
	// RawConsole, when set, is a file that receives a second serial port
	// (ttyS1) on which the firmware kernel and lunboot write the same
	// output as on ttyS0, without the lab's masking of secrets: the
	// evidence for checks that no secret is printed. The OS after the jump
	// writes to ttyS0 only (its entry names console=ttyS0).
	RawConsole string
	// OnConsole receives each console line as it arrives.
	OnConsole func(string)

	// Network is how the guest reaches the target: DHCP with option 17
	// (the zero value), a tagged VLAN, a host name, or a static address
	// without any DHCP server (see Network).
	Network Network
	// Firmware is the guest's firmware (qemuvm.BIOS, the default, or
	// qemuvm.UEFI: OVMF starts lunboot's kernel through its EFI stub).
	Firmware qemuvm.Firmware
}

// Network is the lab network a scenario boots over. The zero Network is
// DHCP on an untagged port with the portal's address in option 17.
type Network struct {
	// VLAN, when not 0, boots over this tagged VLAN with dracut's
	// vlan=eth0.<id>:eth0 ip=eth0.<id>:dhcp on lunboot's command line; the
	// lab must have been made with lab.Options{VLAN: id}, so that DHCP and
	// the target exist only on the VLAN.
	VLAN uint16
	// TargetHost, when set, names the portal in option 17 by this host
	// name, which dnsmasq's DNS (on only then) resolves to the portal's
	// address.
	TargetHost string
	// Static configures lunboot with ip=<addr>::<gw>:<mask>:<host>:eth0:none
	// and netroot=, and starts no DHCP server at all.
	Static bool
	// IPv6Only boots in a lab without IPv4 (lab.Options.IPv6Only): DHCPv6
	// with the root-path as option 59, router advertisements, the portal
	// on the lab's ULA address.
	IPv6Only bool
}

// StaticHostname is the host name the Static scenario gives on ip=.
const StaticHostname = "lunboot-static"

// StaticAddr is the guest's address in the Static scenario: .50 of the
// lab's prefix.
func StaticAddr(l *lab.Lab) netip.Prefix {
	a := l.Prefix().Addr().As4()
	a[3] = 50
	return netip.PrefixFrom(netip.AddrFrom4(a), l.Prefix().Bits())
}

// Machine is a guest booting a distribution through lunboot.
type Machine struct {
	*lab.VM
	// Target is tgtd, nil when the disk is on LIO.
	Target *lab.Target
	// LIO is the LIO target VM (Config.LIO), else nil.
	LIO    *lab.LIO
	Export *lab.Export
	System *distro.System
	// Cmdline is lunboot's kernel command line.
	Cmdline string
	// Network is the lab network the machine boots over.
	Network Network
	// RootPath is what DHCP option 17 carries (DHCPv6 option 59 in an
	// IPv6-only lab); "" without DHCP (Static).
	RootPath string
	lab      *lab.Lab
	// cfg is the Config the machine was started with, Args including
	// the network's arguments; esp is the ESP image built for cfg.EFI.
	cfg Config
	esp string
}

// Lab returns the lab the machine runs in.
func (m *Machine) Lab() *lab.Lab { return m.lab }

// Start exports cfg.System's disk from a new tgtd on l, starts DHCP with
// option 17 naming it (nothing else: lunboot must find its way from the
// root-path alone; in an IPv6-only lab, DHCPv6 with option 59) and powers
// on a guest with lunboot's image. The caller
// closes the lab, which stops everything.
func Start(ctx context.Context, l *lab.Lab, cfg Config) (*Machine, error) {
	if cfg.System == nil {
		return nil, errors.New("handoff: Config.System is required")
	}
	// The lab networks combine only as built: refuse the rest by name
	// rather than boot a guest that can never reach its target.
	switch nw := cfg.Network; {
	case cfg.LIO && (nw.VLAN != 0 || nw.IPv6Only):
		return nil, errors.New("handoff: the LIO target VM runs on an untagged IPv4 lab only (no Network.VLAN, no Network.IPv6Only)")
	case nw.Static && (nw.VLAN != 0 || nw.IPv6Only || nw.TargetHost != ""):
		return nil, errors.New("handoff: Network.Static is an untagged IPv4 address with netroot= by address: not with VLAN, IPv6Only or TargetHost")
	case nw.IPv6Only && (nw.VLAN != 0 || nw.TargetHost != ""):
		return nil, errors.New("handoff: Network.IPv6Only does not combine with VLAN or TargetHost in the lab")
	}
	if cfg.EFI != "" {
		switch {
		case cfg.Firmware != qemuvm.UEFI:
			return nil, fmt.Errorf("handoff: an EFI executable (%s) needs UEFI firmware, not %v", cfg.EFI, cfg.Firmware)
		case cfg.Kernel != "" || cfg.Image != "":
			return nil, errors.New("handoff: set either EFI or Kernel and Image")
		case cfg.Args != "" || cfg.RawConsole != "" || cfg.Network != (Network{}):
			return nil, errors.New("handoff: an EFI executable carries its own command line: no Args, RawConsole or Network")
		}
	}
	iqn := cfg.IQN
	if iqn == "" {
		iqn = "iqn.2026-11.org.lunboot.lab:" + cfg.System.Name
	}
	var (
		tg  *lab.Target
		li  *lab.LIO
		x   lab.Exporter
		err error
	)
	spec := lab.ExportSpec{IQN: iqn, Images: []string{cfg.System.Disk}, CHAP: cfg.CHAP}
	if cfg.LIO {
		if len(l.Taps()) < 2 {
			return nil, errors.New("handoff: booting from LIO needs a lab with two taps (lab.Options.Taps)")
		}
		if li, err = l.StartLIO(ctx, lab.LIOOptions{Images: []string{cfg.System.Disk}}); err != nil {
			return nil, err
		}
		spec.Initiators = []string{bootcfg.DefaultInitiatorName(l.Taps()[0].MAC)}
		x = li
	} else {
		if tg, err = l.StartTarget(ctx, lab.TargetOptions{}); err != nil {
			return nil, err
		}
		x = tg
	}
	exp, err := x.Export(spec)
	if err != nil {
		return nil, fmt.Errorf("exporting %s: %w", cfg.System.Disk, err)
	}
	nw := cfg.Network
	if nw.VLAN != l.VLAN() {
		return nil, fmt.Errorf("handoff: Network.VLAN %d on a lab whose taps carry VLAN %d (lab.Options.VLAN)", nw.VLAN, l.VLAN())
	}
	if nw.IPv6Only != l.IPv6Only() {
		return nil, fmt.Errorf("handoff: Network.IPv6Only %v in a lab whose IPv6Only is %v", nw.IPv6Only, l.IPv6Only())
	}
	rootPath := exp.RootPath()
	option17 := ""
	args := cfg.Args
	switch {
	case nw.Static:
		a := StaticAddr(l)
		mask := net.IP(net.CIDRMask(a.Bits(), 32)).String()
		args = strings.TrimSpace(fmt.Sprintf("ip=%s::%s:%s:%s:eth0:none netroot=%s %s", a.Addr(), l.ServerIP(), mask, StaticHostname, rootPath, args))
	case l.IPv6Only():
		// No DHCPv4 at all: DHCPv6 gives the address and the root-path
		// as the boot file URL (option 59), router advertisements the
		// prefix and the default router.
		dc := lab.DHCPConfig{DHCPv6: true, BootFileURL: rootPath}
		if _, err := l.StartDHCP(ctx, dc); err != nil {
			return nil, err
		}
		option17 = rootPath
	default:
		dc := lab.DHCPConfig{RootPath: rootPath}
		if nw.TargetHost != "" {
			dc.RootPath = fmt.Sprintf("iscsi:%s::%d:%d:%s", nw.TargetHost, exp.Portal.Port(), exp.LUN(0), exp.IQN)
			dc.DNS = map[string]netip.Addr{nw.TargetHost: exp.Portal.Addr()}
		}
		if _, err := l.StartDHCP(ctx, dc); err != nil {
			return nil, err
		}
		option17 = dc.RootPath
		if nw.VLAN != 0 {
			args = strings.TrimSpace(fmt.Sprintf("vlan=eth0.%d:eth0 ip=eth0.%d:dhcp %s", nw.VLAN, nw.VLAN, args))
		}
	}
	cfg.Args = args
	m := &Machine{Target: tg, LIO: li, Export: exp, System: cfg.System, Network: nw, RootPath: option17, lab: l, cfg: cfg}
	if cfg.EFI != "" {
		m.esp = filepath.Join(l.WorkDir(), "esp-"+vmConfig(cfg, "").Name+".img")
		if err := fixtures.ESP(ctx, m.esp, map[string]string{`/EFI/BOOT/BOOTX64.EFI`: cfg.EFI}); err != nil {
			return nil, err
		}
	}
	vc := m.guestConfig("")
	vm, err := l.StartVM(ctx, vc)
	if err != nil {
		return nil, err
	}
	m.VM, m.Cmdline = vm, vc.Cmdline
	return m, nil
}

// guestConfig is the guest that boots m, named with suffix: m.cfg with
// the network's arguments already in Args, and the ESP holding the EFI
// executable when there is one (its drive is a snapshot, so every power-on
// starts from the same ESP).
func (m *Machine) guestConfig(suffix string) lab.VMConfig {
	vc := vmConfig(m.cfg, suffix)
	if m.esp != "" {
		vc.Kernel, vc.Cmdline, vc.DiskBoot = "", "", true
		vc.Drives = []qemuvm.Drive{{File: m.esp, Snapshot: true}}
	}
	return vc
}

// vmConfig is the guest of cfg; suffix is added to its name (for a second
// power-on in the same lab).
func vmConfig(cfg Config, suffix string) lab.VMConfig {
	name := cfg.Name
	if name == "" {
		name = "lunboot"
	}
	vc := lab.VMConfig{Name: name + suffix, Memory: Memory, Firmware: cfg.Firmware, Kernel: cfg.Kernel, Initrd: cfg.Image, OnConsole: cfg.OnConsole, NICs: []lab.NIC{{Tap: 0}}}
	consoles := "console=ttyS0"
	if cfg.RawConsole != "" {
		// The last console= is /dev/console; u-root's init writes the
		// uinit's output to every console= device.
		consoles = "console=ttyS1 console=ttyS0"
		vc.Args = []string{"-serial", "file:" + cfg.RawConsole + suffix}
	}
	vc.Cmdline = strings.TrimSpace(consoles + " " + cfg.Args)
	return vc
}

// PowerOnAgain boots the same disk again through lunboot after m's guest
// has ended (a power cycle: the lab's guests run with -no-reboot): a new
// guest on the same tap, so with the same MAC and initiator name, against
// the same target and DHCP server, whose disk keeps what the first boot
// wrote. The guest is m's: the same command line (with the network's
// ip=, vlan= and netroot= arguments), firmware and EFI executable. suffix
// names the new guest's logs.
func (m *Machine) PowerOnAgain(ctx context.Context, suffix string) (*Machine, error) {
	if !m.Exited() {
		return nil, errors.New("handoff: PowerOnAgain while the first guest still runs")
	}
	if suffix == "" {
		return nil, errors.New("handoff: PowerOnAgain needs a suffix for the new guest's logs")
	}
	vc := m.guestConfig(suffix)
	vm, err := m.lab.StartVM(ctx, vc)
	if err != nil {
		return nil, err
	}
	n := *m
	n.VM, n.Cmdline = vm, vc.Cmdline
	return &n, nil
}

// Initiator is the initiator name lunboot uses without option 203 or a
// command-line name: the default derived from the boot NIC's MAC
// (pkg/bootcfg DefaultIQNPrefix), which it hands to the OS.
func (m *Machine) Initiator() string {
	return bootcfg.DefaultIQNPrefix + hex.EncodeToString(m.MAC())
}

// Want is what the OS must prove: its root on the disk's LUN of the exported
// target through the lab's portal, logged in with lunboot's initiator name,
// from the disk's root file system. ibft requires (true) or forbids (false)
// a table; nil skips that check.
func (m *Machine) Want(ibft *bool) osproof.Expect {
	return osproof.Expect{
		Target:    m.Export.IQN,
		Initiator: m.Initiator(),
		Portal:    m.Export.Portal,
		LUN:       m.Export.LUNBase,
		RootUUID:  m.System.RootUUID,
		IBFT:      ibft,
	}
}

// OS is what the booted distribution showed on the console.
type OS struct {
	Proof *osproof.Proof
	// ProofLine is the proof as printed.
	ProofLine string
	// ProofAt and LoginAt are when the proof line and the login prompt
	// arrived, from QEMU's start; LoginAt is zero when not waited for.
	ProofAt, LoginAt time.Duration
}

// proofOrLogin matches whichever of the two comes first.
var proofOrLogin = regexp.MustCompile(`(?m)(?:` + osproof.Pattern.String() + `)|(?:` + loginExpr + `)`)

// WaitOS waits, up to d in all, for the OS's proof line and, with login,
// its login prompt, in whichever order systemd prints them (the proof
// service is ordered after getty.target, which does not wait for the
// prompt). The proof is decoded.
func (m *Machine) WaitOS(ctx context.Context, d time.Duration, login bool) (*OS, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res := &OS{}
	for res.ProofLine == "" || login && res.LoginAt == 0 {
		re := osproof.Pattern
		switch {
		case login && res.ProofLine == "" && res.LoginAt == 0:
			re = proofOrLogin
		case res.ProofLine != "":
			re = LoginPattern
		}
		mt, err := m.VM.Expect(ctx, re)
		if err != nil {
			return res, err
		}
		if pm := osproof.Pattern.FindStringSubmatch(mt.Groups[0]); pm != nil {
			p, err := osproof.Parse(pm[1])
			if err != nil {
				return res, fmt.Errorf("the OS's proof line: %w", err)
			}
			res.Proof, res.ProofLine, res.ProofAt = p, strings.TrimSpace(pm[0]), mt.At
		} else {
			res.LoginAt = mt.At
		}
	}
	return res, nil
}

// Stages returns lunboot's stage lines so far.
func (m *Machine) Stages() []bootlog.Stage { return bootlog.ParseStages(bootlog.Section(m.Console())) }

// jumpPattern matches lunboot's last line before kexec, the OS kernel's
// first line after it (should lunboot's last lines have been lost), or the
// line that ends lunboot's report of a failed boot.
var jumpPattern = regexp.MustCompile(`(?m)^ +booting .* after \S+\n|Linux version |(` + regexp.QuoteMeta(bootlog.RescueLine) + `|` + regexp.QuoteMeta(bootlog.RebootLine) + `)[^\n]*\n`)

var startPattern = regexp.MustCompile(regexp.QuoteMeta(bootlog.StartLine))

// BootFailedError is lunboot's report of a failed boot.
type BootFailedError struct{ *bootlog.Failure }

func (e *BootFailedError) Error() string {
	s := "lunboot: BOOT FAILED in stage " + e.Stage + ": " + strings.Join(e.Failure.Error, "; ")
	if e.Check != "" {
		s += " (check: " + e.Check + ")"
	}
	return s
}

// WaitJump waits, up to d in all, until lunboot has started and then
// jumped to the OS, and returns a *BootFailedError when it reports a failed
// boot instead.
func (m *Machine) WaitJump(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := m.VM.Expect(ctx, startPattern); err != nil {
		return err
	}
	mt, err := m.VM.Expect(ctx, jumpPattern)
	if err != nil {
		return err
	}
	if mt.Groups[1] == "" {
		return nil
	}
	f, err := bootlog.ParseFailure(m.Console())
	if err != nil {
		return err
	}
	return &BootFailedError{f}
}

// Verify is Proof.Verify, except that for an IPv6 portal the root's
// /dev/disk/by-path link is also accepted with the address in the kernel's
// uncompressed form: udev's path_id copies the iSCSI connection's
// persistent_address, which libiscsi prints with %pI6 (all eight groups),
// while osproof.ByPathName writes the compressed form. The check lives
// here, on the host, so that the proof program in the guests' disks (an
// input of the shared disk cache's keys) stays the same.
func Verify(p *osproof.Proof, want osproof.Expect) error {
	a := want.Portal.Addr()
	if !want.Portal.IsValid() || !a.Is6() || a.Is4In6() || want.LUN < 0 || want.Target == "" {
		return p.Verify(want)
	}
	rest := want
	rest.LUN = -1 // Verify then skips the LUN and by-path checks, done below
	var errs []string
	if err := p.Verify(rest); err != nil {
		errs = append(errs, err.Error())
	}
	if p.Root.LUN != want.LUN {
		errs = append(errs, fmt.Sprintf("root disk LUN = %d, want %d", p.Root.LUN, want.LUN))
	}
	names := []string{
		osproof.ByPathName(want.Portal, want.Target, want.LUN),
		"ip-" + a.StringExpanded() + ":" + strconv.Itoa(int(want.Portal.Port())) + "-iscsi-" + want.Target + "-lun-" + strconv.Itoa(want.LUN),
	}
	found := false
	for _, l := range append(append([]string(nil), p.Root.ByPath...), p.Root.DiskByPath...) {
		for _, n := range names {
			found = found || l == n || strings.HasPrefix(l, n+"-part")
		}
	}
	if !found {
		errs = append(errs, fmt.Sprintf("no /dev/disk/by-path link %s… for the root (have %v, disk %v)", names[1], p.Root.ByPath, p.Root.DiskByPath))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
