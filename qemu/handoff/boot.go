package handoff

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
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
	// System is the disk exported as LUN 1.
	System *distro.System
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
	// Firmware is the guest's firmware (qemuvm.BIOS, the default, or
	// qemuvm.UEFI: OVMF starts lunboot's kernel through its EFI stub).
	Firmware qemuvm.Firmware
}

// Machine is a guest booting a distribution through lunboot.
type Machine struct {
	*lab.VM
	Target *lab.Target
	Export *lab.Export
	System *distro.System
	// Cmdline is lunboot's kernel command line.
	Cmdline string
}

// Start exports cfg.System's disk from a new tgtd on l, starts DHCP with
// option 17 naming it (nothing else: lunboot must find its way from the
// root-path alone) and powers on a guest with lunboot's image. The caller
// closes the lab, which stops everything.
func Start(ctx context.Context, l *lab.Lab, cfg Config) (*Machine, error) {
	if cfg.System == nil {
		return nil, errors.New("handoff: Config.System is required")
	}
	if cfg.EFI != "" {
		switch {
		case cfg.Firmware != qemuvm.UEFI:
			return nil, fmt.Errorf("handoff: an EFI executable (%s) needs UEFI firmware, not %v", cfg.EFI, cfg.Firmware)
		case cfg.Kernel != "" || cfg.Image != "":
			return nil, errors.New("handoff: set either EFI or Kernel and Image")
		case cfg.Args != "" || cfg.RawConsole != "":
			return nil, errors.New("handoff: an EFI executable carries its own command line: no Args or RawConsole")
		}
	}
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		return nil, err
	}
	iqn := cfg.IQN
	if iqn == "" {
		iqn = "iqn.2026-11.org.lunboot.lab:" + cfg.System.Name
	}
	exp, err := tg.Export(lab.ExportSpec{IQN: iqn, Images: []string{cfg.System.Disk}, CHAP: cfg.CHAP})
	if err != nil {
		return nil, fmt.Errorf("exporting %s: %w", cfg.System.Disk, err)
	}
	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: exp.RootPath()}); err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = "lunboot"
	}
	vc := lab.VMConfig{Name: name, Memory: Memory, Firmware: cfg.Firmware, Kernel: cfg.Kernel, Initrd: cfg.Image, OnConsole: cfg.OnConsole}
	consoles := "console=ttyS0"
	if cfg.RawConsole != "" {
		// The last console= is /dev/console; u-root's init writes the
		// uinit's output to every console= device.
		consoles = "console=ttyS1 console=ttyS0"
		vc.Args = []string{"-serial", "file:" + cfg.RawConsole}
	}
	vc.Cmdline = strings.TrimSpace(consoles + " " + cfg.Args)
	if cfg.EFI != "" {
		esp := filepath.Join(l.WorkDir(), "esp-"+name+".img")
		if err := fixtures.ESP(ctx, esp, map[string]string{`/EFI/BOOT/BOOTX64.EFI`: cfg.EFI}); err != nil {
			return nil, err
		}
		vc.Kernel, vc.Cmdline, vc.DiskBoot = "", "", true
		vc.Drives = []qemuvm.Drive{{File: esp, Snapshot: true}}
	}
	vm, err := l.StartVM(ctx, vc)
	if err != nil {
		return nil, err
	}
	return &Machine{VM: vm, Target: tg, Export: exp, System: cfg.System, Cmdline: vc.Cmdline}, nil
}

// Initiator is the initiator name lunboot uses without option 203 or a
// command-line name: the default derived from the boot NIC's MAC
// (pkg/bootcfg DefaultIQNPrefix), which it hands to the OS.
func (m *Machine) Initiator() string {
	return bootcfg.DefaultIQNPrefix + hex.EncodeToString(m.MAC())
}

// Want is what the OS must prove: its root on LUN 1 of the exported
// target through the lab's portal, logged in with lunboot's initiator name,
// from the disk's root file system. ibft requires (true) or forbids (false)
// a table; nil skips that check.
func (m *Machine) Want(ibft *bool) osproof.Expect {
	return osproof.Expect{
		Target:    m.Export.IQN,
		Initiator: m.Initiator(),
		Portal:    m.Export.Portal,
		LUN:       1,
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
