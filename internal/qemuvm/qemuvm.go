// Package qemuvm is the one place the project starts QEMU: the lab's guests
// (qemu/lab), the kernel-test guests (internal/vmtest) and the odd test
// that boots a kernel by hand all describe their machine with a Config,
// and Start or Run turn it into a command line and a bounded process.
//
// Every guest runs under TCG (/dev/kvm on the project's machines does not
// work: QEMU asserts on MSRs or spins), with no display, no defaults, no
// user configuration, -no-reboot (a reboot or power-off ends QEMU), and its
// first serial port (ttyS0) on QEMU's stdout, which the caller captures.
//
// Tests take a machine-wide guest slot (testenv.GuestSlot) before they
// start a guest: each TCG guest keeps a core busy.
package qemuvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/lunboot/lunboot/internal/proc"
)

// Defaults for Config.
const (
	DefaultBinary = "qemu-system-x86_64"
	DefaultMemory = "1G"
	DefaultCPUs   = 1
	// DefaultCPU is TCG's baseline CPU plus RDRAND, which every current
	// x86 machine has. Without a hardware random source the guest
	// kernel's CRNG stays uninitialised for minutes under TCG, and
	// everything that reads crypto/rand or getrandom (DHCP transaction
	// IDs, the iSCSI ISID, CHAP challenges) blocks; the Debian kernel
	// trusts the CPU's generator. "max" would emulate far more and boot
	// slower.
	DefaultCPU = "qemu64,+rdrand"
)

// NICPCISlot is the PCI slot of the first NIC (00:03.0), fixed so that an
// iBFT's PCI bus/device/function can name it; NIC i sits at slot
// NICPCISlot+i unless it names its own.
const NICPCISlot = 3

// Firmware selects what runs before the kernel or boot loader.
type Firmware int

const (
	// BIOS is QEMU's built-in SeaBIOS (the zero value). Its text output,
	// and an iPXE ROM's, reach the serial console (-machine graphics=off
	// turns on SeaBIOS's serial console).
	BIOS Firmware = iota
	// UEFI is OVMF, EDK II's firmware for QEMU (Debian package ovmf),
	// in two pflash drives: its code read-only, and a private writable
	// copy of its variable store (Config.UEFIVars, made with
	// NewUEFIVars) so guests never share or change the template. With
	// -kernel, OVMF starts the kernel through its EFI stub (QEMU hands
	// kernel, initrd and command line over in fw_cfg), so the kernel runs
	// as a UEFI application and keeps the runtime services. OVMF writes
	// its console to the first serial port when there is no display.
	UEFI
)

// OVMF's files in Debian's ovmf package (12, bookworm). The 4 MiB build
// is the one Debian's QEMU firmware descriptors
// (/usr/share/qemu/firmware/60-edk2-x86_64.json) name for non-Secure-Boot
// guests on the pc machine; its variable store has room for more than a
// few boot entries.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// OVMFVarsSnakeoil is the variable store with Debian's test-only
	// "snakeoil" key enrolled as PK, KEK and db and Secure Boot on
	// (/usr/share/doc/ovmf/README.Debian): OVMF then starts only images
	// signed with that key, and the kernel loads db into its platform
	// keyring. OVMFCode supports Secure Boot without SMM, which is enough
	// for tests (the .secboot build needs SMM and the q35 machine).
	OVMFVarsSnakeoil = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// ParseFirmware reads a firmware name as String writes it, in any case
// ("bios", "uefi").
func ParseFirmware(s string) (Firmware, error) {
	switch strings.ToLower(s) {
	case "bios":
		return BIOS, nil
	case "uefi":
		return UEFI, nil
	}
	return 0, fmt.Errorf("unknown firmware %q (want bios or uefi)", s)
}

func (f Firmware) String() string {
	switch f {
	case BIOS:
		return "BIOS"
	case UEFI:
		return "UEFI"
	}
	return fmt.Sprintf("Firmware(%d)", int(f))
}

// NewUEFIVars copies OVMF's variable store template (OVMFVars) to path,
// for one guest's Config.UEFIVars: OVMF writes its boot entries there.
func NewUEFIVars(path string) error { return NewUEFIVarsFrom(path, OVMFVars) }

// NewUEFIVarsFrom is NewUEFIVars from another template (OVMFVarsSnakeoil).
func NewUEFIVarsFrom(path, template string) error {
	src, err := os.Open(template)
	if err != nil {
		return fmt.Errorf("qemu: OVMF variable store (Debian package ovmf): %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("qemu: copy of the OVMF variable store: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("qemu: copy %s to %s: %w", template, path, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("qemu: copy %s to %s: %w", template, path, err)
	}
	return nil
}

// Config describes a guest.
type Config struct {
	// Binary is the emulator (DefaultBinary when empty).
	Binary string
	// Wrap is put in front of the emulator's command line, for instance
	// `ip netns exec <ns>` so that QEMU opens its taps in a namespace.
	Wrap []string
	// Name is QEMU's -name, which ps shows (none when empty).
	Name string
	// Memory is -m (DefaultMemory when empty).
	Memory string
	// CPUs is -smp (DefaultCPUs when zero).
	CPUs int
	// CPU is the -cpu model (DefaultCPU when empty).
	CPU string
	// Firmware is the machine's firmware (BIOS, the zero value).
	Firmware Firmware
	// UEFIVars is the guest's own writable copy of OVMF's variable store
	// (NewUEFIVars); required with UEFI, unused with BIOS.
	UEFIVars string

	// Kernel, Initrd and Cmdline boot a kernel directly (-kernel,
	// -initrd, -append). When Cmdline names no console=, console=ttyS0 is
	// put first so the serial console shows the kernel's output.
	Kernel, Initrd, Cmdline string
	// NetBoot boots the first NIC's option ROM instead (-boot n, and
	// bootindex=1 on that NIC): SeaBIOS runs QEMU's default iPXE ROM for
	// the NIC model (OVMF its EFI build, in the same ROM file).
	NetBoot bool
	// DiskBoot lets the firmware boot from the drives (-boot c): SeaBIOS
	// the first disk's boot sector, OVMF its boot entries and then the
	// removable-media path \EFI\BOOT\BOOTX64.EFI of each disk's ESP.
	// Exactly one of Kernel, NetBoot and DiskBoot is set.
	DiskBoot bool

	// NICs are the guest's network interfaces.
	NICs []NIC
	// Drives are the guest's disks.
	Drives []Drive
	// ACPITables are files passed with -acpitable file=… (an iBFT, say).
	ACPITables []string
	// Monitor is the path of a Unix socket for QEMU's human monitor
	// (QEMU listens, and does not wait for a client to start the guest);
	// empty means no monitor. Network link faults (set_link) go through it.
	Monitor string
	// Args are extra QEMU arguments, appended last (a second serial port,
	// say).
	Args []string
}

// NIC is a guest network interface. Its netdev has the ID "n<i>" (i its
// index in Config.NICs), the name the monitor's set_link takes.
type NIC struct {
	// Tap is the host tap interface the NIC is plugged into; with none,
	// the NIC has no backend: the guest sees the device, and no traffic.
	Tap string
	// MAC is the NIC's address (QEMU's default when nil).
	MAC net.HardwareAddr
	// Model is the QEMU device (default "virtio-net-pci").
	Model string
	// Slot is the PCI slot (default NICPCISlot + index).
	Slot int
	// NoOffload opens the tap without the virtio-net header (QEMU's
	// vnet_hdr=off): the guest's NIC then offers no checksum or
	// segmentation offload and every frame on the tap is complete, as a
	// program reading the tap with a packet socket (the lab's VLAN trunk
	// port) needs it.
	NoOffload bool
}

// Drive is a guest disk.
type Drive struct {
	// File is the image.
	File string
	// Format is the image format (default "raw").
	Format string
	// Interface is QEMU's if= (default "virtio").
	Interface string
	// ReadOnly attaches the disk read-only.
	ReadOnly bool
	// Snapshot sends writes to a temporary overlay that QEMU drops at
	// exit, leaving File unchanged.
	Snapshot bool
}

// optValue escapes a value inside a QEMU option list, where a comma
// separates options and ",," stands for a comma.
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Command returns the whole command line, Wrap included.
func (c Config) Command() ([]string, error) {
	n := 0
	for _, b := range []bool{c.Kernel != "", c.NetBoot, c.DiskBoot} {
		if b {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("qemu: set exactly one of Kernel (direct boot), NetBoot and DiskBoot")
	}
	if c.DiskBoot && len(c.Drives) == 0 {
		return nil, errors.New("qemu: DiskBoot needs a drive")
	}
	if c.Initrd != "" && c.Kernel == "" {
		return nil, errors.New("qemu: Initrd without Kernel")
	}
	if c.NetBoot && len(c.NICs) == 0 {
		return nil, errors.New("qemu: NetBoot needs a NIC")
	}
	switch c.Firmware {
	case BIOS:
	case UEFI:
		if c.UEFIVars == "" {
			return nil, errors.New("qemu: UEFI needs UEFIVars, the guest's copy of OVMF's variable store (NewUEFIVars)")
		}
	default:
		return nil, fmt.Errorf("qemu: firmware %v is not supported", c.Firmware)
	}
	bin := c.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	memory, cpus, cpu := c.Memory, c.CPUs, c.CPU
	if memory == "" {
		memory = DefaultMemory
	}
	if cpus <= 0 {
		cpus = DefaultCPUs
	}
	if cpu == "" {
		cpu = DefaultCPU
	}
	args := append(append([]string(nil), c.Wrap...), bin)
	if c.Name != "" {
		args = append(args, "-name", c.Name)
	}
	monitor := "none"
	if c.Monitor != "" {
		monitor = "unix:" + optValue(c.Monitor) + ",server=on,wait=off"
	}
	args = append(args,
		"-accel", "tcg",
		"-cpu", cpu,
		"-m", memory,
		"-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		// graphics=off makes SeaBIOS copy the firmware's and iPXE's
		// text output to the serial port (sercon), so it lands in the
		// console too.
		"-machine", "pc,graphics=off",
		"-serial", "stdio",
		"-monitor", monitor,
		"-no-reboot",
	)
	if c.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optValue(OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+optValue(c.UEFIVars))
	}
	for i, n := range c.NICs {
		model, slot := n.Model, n.Slot
		if model == "" {
			model = "virtio-net-pci"
		}
		if slot == 0 {
			slot = NICPCISlot + i
		}
		dev := fmt.Sprintf("%s,addr=0x%x", model, slot)
		if n.MAC != nil {
			dev += ",mac=" + n.MAC.String()
		}
		if n.Tap != "" {
			nd := fmt.Sprintf("tap,id=n%d,ifname=%s,script=no,downscript=no", i, n.Tap)
			if n.NoOffload {
				nd += ",vnet_hdr=off"
			}
			args = append(args, "-netdev", nd)
			dev += fmt.Sprintf(",netdev=n%d", i)
		}
		if i == 0 && c.NetBoot {
			dev += ",bootindex=1"
		}
		args = append(args, "-device", dev)
	}
	for i, d := range c.Drives {
		if d.File == "" {
			return nil, fmt.Errorf("qemu: drive %d has no file", i)
		}
		format, iface := d.Format, d.Interface
		if format == "" {
			format = "raw"
		}
		if iface == "" {
			iface = "virtio"
		}
		opt := fmt.Sprintf("file=%s,format=%s,if=%s", optValue(d.File), format, iface)
		if d.ReadOnly {
			opt += ",readonly=on"
		}
		if d.Snapshot {
			opt += ",snapshot=on"
		}
		if c.DiskBoot && i == 0 && iface == "virtio" {
			// bootindex=1 on the disk, as on the NIC for NetBoot: OVMF
			// orders its boot options by bootindex (QEMU's "bootorder"
			// fw_cfg file) and ignores -boot; without one it may try
			// PXE on the NIC first and wait out its DHCP.
			opt = strings.Replace(opt, ",if=virtio", fmt.Sprintf(",if=none,id=disk%d", i), 1)
			args = append(args, "-drive", opt, "-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,bootindex=1", i))
			continue
		}
		args = append(args, "-drive", opt)
	}
	switch {
	case c.NetBoot:
		args = append(args, "-boot", "n")
	case c.DiskBoot:
		args = append(args, "-boot", "c")
	default:
		cmdline := c.Cmdline
		if !strings.Contains(" "+cmdline, " console=") {
			cmdline = strings.TrimSpace("console=ttyS0 " + cmdline)
		}
		args = append(args, "-kernel", c.Kernel, "-append", cmdline)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
	}
	for _, t := range c.ACPITables {
		args = append(args, "-acpitable", "file="+optValue(t))
	}
	return append(args, c.Args...), nil
}

// Start starts the guest with the serial console on stdio.Stdout and
// QEMU's own messages on stdio.Stderr; what stdio.Stdin gives reaches the
// serial console as typed input. The process runs in its own group with
// PDEATHSIG (package proc); Stop(0) kills it, bounded.
func Start(c Config, stdio proc.IO) (*proc.Process, error) {
	argv, err := c.Command()
	if err != nil {
		return nil, err
	}
	p, err := proc.Start(argv, stdio)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	return p, nil
}

// Run starts the guest and waits until QEMU exits (the guest powered off
// or rebooted) or ctx ends; then it kills QEMU and returns ctx's error
// wrapped. It returns QEMU's exit error otherwise.
func Run(ctx context.Context, c Config, stdio proc.IO) error {
	p, err := Start(c, stdio)
	if err != nil {
		return err
	}
	if err := p.Wait(ctx); err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("qemu: %w", err)
		}
		if serr := p.Stop(0); serr != nil {
			return fmt.Errorf("qemu: killed when %w; %v", ctx.Err(), serr)
		}
		return fmt.Errorf("qemu: killed when %w", ctx.Err())
	}
	return nil
}
