package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/internal/qemuvm"
)

// VMConfig describes a QEMU guest. The command line comes from the
// project's one QEMU starter (internal/qemuvm): TCG (no KVM), no display,
// -no-reboot (a reboot or power-off ends it), the serial console on
// stdout; the lab runs it inside its namespace, with its NICs on the lab's
// taps.
type VMConfig struct {
	// Name labels the guest in its log files (console-<name>.log,
	// qemu-<name>.log); default "vm0", "vm1"… in start order.
	Name string
	// Memory is QEMU's -m (default "1G"; real distributions want "2G").
	Memory string
	// CPUs is -smp (default 1: the lab machines have two cores, shared).
	CPUs int
	// CPU is the -cpu model, default qemuvm.DefaultCPU ("qemu64,+rdrand":
	// without a hardware random source the guest kernel's CRNG stays
	// uninitialised for minutes under TCG, and everything that reads
	// crypto/rand blocks).
	CPU string
	// Firmware is qemuvm.BIOS (SeaBIOS, the default) or qemuvm.UEFI
	// (OVMF; each guest gets its own copy of OVMF's variable store in the
	// lab's work folder).
	Firmware qemuvm.Firmware
	// SecureBoot starts UEFI guests with Debian's snakeoil keys enrolled
	// and Secure Boot on (qemuvm.OVMFVarsSnakeoil): OVMF then starts only
	// a kernel signed with /usr/share/ovmf/PkKek-1-snakeoil.key
	// (fixtures.SignSnakeoil). UEFI only.
	SecureBoot bool

	// Kernel, Initrd and Cmdline boot a kernel directly (-kernel,
	// -initrd, -append). When Cmdline names no console=, console=ttyS0 is
	// prepended so the serial console shows the kernel's output.
	Kernel, Initrd, Cmdline string

	// NetBoot boots the firmware's network option ROM instead (-boot n):
	// SeaBIOS runs the NIC's iPXE ROM, which does DHCP and, given an
	// iscsi: root-path, sanboots the LUN. BIOS only. The ROM is QEMU's
	// default for virtio-net-pci, which Debian's QEMU loads from
	// ipxe-qemu (/usr/lib/ipxe/qemu/efi-virtio.rom, legacy and EFI iPXE
	// in one image). Naming a ROM with romfile= leaves SeaBIOS with no
	// network boot entry on this QEMU (7.2), so the lab offers no override.
	NetBoot bool
	// DiskBoot lets the firmware boot from Drives (-boot c): under UEFI,
	// OVMF starts \EFI\BOOT\BOOTX64.EFI from a disk's ESP. Exactly one
	// of Kernel, NetBoot and DiskBoot is set.
	DiskBoot bool
	// Drives are the guest's local disks (none by default: lunboot's
	// disks come over iSCSI).
	Drives []qemuvm.Drive

	// NICs are the guest's network interfaces; default one virtio-net NIC
	// on tap 0 with that tap's MAC.
	NICs []NIC

	// ACPITables are files passed with -acpitable file=… (an iBFT, say).
	ACPITables []string
	// Args are extra QEMU arguments, appended last.
	Args []string

	// OnConsole receives each console line (cleaned of CR and escape
	// sequences) as it arrives, for streaming to a terminal or test log.
	OnConsole func(line string)
}

// NIC is one guest network interface.
type NIC struct {
	// Tap is the index of the lab tap it plugs into.
	Tap int
	// MAC defaults to the tap's MAC.
	MAC net.HardwareAddr
	// Model is the QEMU device (default "virtio-net-pci").
	Model string
}

// VM is a running QEMU guest.
type VM struct {
	lab     *Lab
	cfg     VMConfig
	proc    *process
	con     *console
	conLog  string
	qemuLog string
	stdin   io.WriteCloser
	started time.Time
	nics    []NIC
	once    sync.Once
	monPath string

	monMu sync.Mutex
	mon   *qemuvm.Monitor
}

// NICPCIAddr is the PCI slot of the first NIC (00:03.0): fixed so that an
// iBFT's PCI bus/device/function can name it. NIC i sits at slot 3+i.
const NICPCIAddr = qemuvm.NICPCISlot

// StartVM starts a guest.
func (l *Lab) StartVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	if l.isClosed() {
		return nil, errClosed
	}
	l.mu.Lock()
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("vm%d", len(l.vms))
	}
	l.mu.Unlock()
	if cfg.Memory == "" {
		cfg.Memory = qemuvm.DefaultMemory
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = qemuvm.DefaultCPUs
	}
	if cfg.CPU == "" {
		cfg.CPU = qemuvm.DefaultCPU
	}
	if n := btoi(cfg.Kernel != "") + btoi(cfg.NetBoot) + btoi(cfg.DiskBoot); n != 1 {
		return nil, errors.New("lab: vm: set exactly one of Kernel (direct boot), NetBoot and DiskBoot")
	}
	for _, f := range []string{cfg.Kernel, cfg.Initrd} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
		}
	}
	nics := cfg.NICs
	if len(nics) == 0 {
		nics = []NIC{{Tap: 0}}
	}
	qc := qemuvm.Config{
		Wrap:       netns.Exec(l.ns),
		Name:       "lunboot-" + cfg.Name,
		Memory:     cfg.Memory,
		CPUs:       cfg.CPUs,
		CPU:        cfg.CPU,
		Kernel:     cfg.Kernel,
		Initrd:     cfg.Initrd,
		Cmdline:    cfg.Cmdline,
		NetBoot:    cfg.NetBoot,
		DiskBoot:   cfg.DiskBoot,
		Drives:     cfg.Drives,
		Firmware:   cfg.Firmware,
		ACPITables: cfg.ACPITables,
		Args:       cfg.Args,
		// The monitor socket is how faults reach the guest (SetLink); its
		// path stays short (sun_path holds 108 bytes) by using the VM's
		// index, not its name.
		Monitor: filepath.Join(l.workDir, fmt.Sprintf("mon%d.sock", l.nextSeq(&l.monSeq))),
	}
	for i := range nics {
		n := &nics[i]
		if n.Tap < 0 || n.Tap >= len(l.taps) {
			return nil, fmt.Errorf("lab: vm %s: NIC %d on tap %d, but the lab has %d tap(s) (Options.Taps)", cfg.Name, i, n.Tap, len(l.taps))
		}
		if other := l.tapUser(n.Tap); other != nil {
			return nil, fmt.Errorf("lab: vm %s: %s is still used by vm %s (running for %s): Wait for it or Kill it first, or give the lab more Taps",
				cfg.Name, l.taps[n.Tap].Name, other.cfg.Name, other.Elapsed().Round(time.Second))
		}
		if n.MAC == nil {
			n.MAC = l.taps[n.Tap].MAC
		}
		if n.Model == "" {
			n.Model = "virtio-net-pci"
		}
		qc.NICs = append(qc.NICs, qemuvm.NIC{Tap: l.taps[n.Tap].Name, MAC: n.MAC, Model: n.Model, Slot: NICPCIAddr + i, NoOffload: l.opts.VLAN != 0})
	}
	if cfg.SecureBoot && cfg.Firmware != qemuvm.UEFI {
		return nil, fmt.Errorf("lab: vm %s: SecureBoot needs Firmware UEFI, not %v", cfg.Name, cfg.Firmware)
	}
	if cfg.Firmware == qemuvm.UEFI {
		qc.UEFIVars = filepath.Join(l.workDir, "ovmf-vars-"+cfg.Name+".fd")
		template := qemuvm.OVMFVars
		if cfg.SecureBoot {
			template = qemuvm.OVMFVarsSnakeoil
		}
		if err := qemuvm.NewUEFIVarsFrom(qc.UEFIVars, template); err != nil {
			return nil, fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
		}
	}
	args, err := qc.Command()
	if err != nil {
		return nil, fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
	}

	v := &VM{
		lab:     l,
		cfg:     cfg,
		monPath: qc.Monitor,
		conLog:  l.LogPath("console-" + cfg.Name + ".log"),
		qemuLog: l.LogPath("qemu-" + cfg.Name + ".log"),
		nics:    nics,
	}
	con, err := newConsole(v.conLog, cfg.OnConsole, l.mask)
	if err != nil {
		return nil, fmt.Errorf("lab: vm %s: console log: %w", cfg.Name, err)
	}
	v.con = con
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lab: vm %s: %w", cfg.Name, err)
	}
	v.stdin = stdinW
	v.started = time.Now()
	con.start = v.started
	proc, err := l.startProcess("qemu "+cfg.Name, v.qemuLog, stdinR, con, args)
	stdinR.Close()
	if err != nil {
		stdinW.Close()
		con.end(err)
		return nil, err
	}
	v.proc = proc
	go func() {
		<-proc.Done()
		con.end(proc.Err())
		stdinW.Close()
	}()
	if err := l.addVM(v); err != nil {
		v.Kill()
		return nil, err
	}
	l.log.Info("qemu up", "vm", cfg.Name, "console", v.conLog)
	return v, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tapUser returns the running VM with a NIC on tap i, if any.
func (l *Lab) tapUser(i int) *VM {
	l.mu.Lock()
	vms := append([]*VM(nil), l.vms...)
	l.mu.Unlock()
	for _, v := range vms {
		if v.Exited() {
			continue
		}
		for _, n := range v.nics {
			if n.Tap == i {
				return v
			}
		}
	}
	return nil
}

// Name returns the guest's name.
func (v *VM) Name() string { return v.cfg.Name }

// NICs returns the guest's NICs (with their MACs filled in).
func (v *VM) NICs() []NIC { return append([]NIC(nil), v.nics...) }

// MAC returns the first NIC's MAC.
func (v *VM) MAC() net.HardwareAddr { return v.nics[0].MAC }

// ConsoleLog returns the path of the raw serial console log.
func (v *VM) ConsoleLog() string { return v.conLog }

// QEMULog returns the path of QEMU's own messages (stderr).
func (v *VM) QEMULog() string { return v.qemuLog }

// Events returns every match of re in the console output so far (not
// only after the Expect cursor), each with the time it arrived: the
// material of a boot timeline.
func (v *VM) Events(re *regexp.Regexp) []Event { return v.con.events(re) }

// Console returns the console output so far (cleaned of CR and escapes).
func (v *VM) Console() string { return v.con.String() }

// Started returns when QEMU was started.
func (v *VM) Started() time.Time { return v.started }

// Elapsed returns the time since QEMU was started.
func (v *VM) Elapsed() time.Duration { return time.Since(v.started) }

// Expect waits until the console shows a match for re after the previous
// match, and returns it. Output is matched as it arrives, partial lines
// included: end the pattern with \n to wait for a whole line. The wait ends
// with an *ExpectError when ctx expires (DefaultExpectTimeout if it has no
// deadline) or the guest exits first.
func (v *VM) Expect(ctx context.Context, re *regexp.Regexp) (*Match, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultExpectTimeout)
		defer cancel()
	}
	start := time.Now()
	m, err := v.con.expect(ctx, re)
	if err != nil {
		e := &ExpectError{
			VM: v.cfg.Name, Pattern: re.String(), Waited: time.Since(start),
			Tail: v.con.tail(25), ConsoleLog: v.conLog, QEMULog: v.qemuLog, Err: err,
		}
		var ended *expectEnded
		if errors.As(err, &ended) {
			e.Exited = true
			e.QEMUTail = tailFile(v.qemuLog, 5)
		}
		v.lab.cmds.printf("# vm %s: expect %q failed after %s: %v", v.cfg.Name, re, e.Waited.Round(time.Millisecond), err)
		return nil, e
	}
	v.lab.cmds.printf("# vm %s: matched %q at +%s", v.cfg.Name, re, m.At.Round(time.Millisecond))
	return m, nil
}

// ExpectWithin is Expect with a timeout of d for this step.
func (v *VM) ExpectWithin(ctx context.Context, d time.Duration, re *regexp.Regexp) (*Match, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return v.Expect(ctx, re)
}

// ExpectError says which expectation failed, why, and what the console
// showed last.
type ExpectError struct {
	VM, Pattern string
	Waited      time.Duration
	// Exited is true when the guest ended before the output appeared.
	Exited     bool
	Tail       []string
	QEMUTail   []string
	ConsoleLog string
	QEMULog    string
	Err        error
}

// Error names the guest, the pattern, the wait and the log files, and
// quotes the console's last lines.
func (e *ExpectError) Error() string {
	var b strings.Builder
	why := "timed out"
	if e.Exited {
		why = "QEMU exited first"
	}
	fmt.Fprintf(&b, "qemu %s: no console match for %q after %s: %s (%v); console log %s, qemu log %s",
		e.VM, e.Pattern, e.Waited.Round(time.Millisecond), why, e.Err, e.ConsoleLog, e.QEMULog)
	if len(e.QEMUTail) > 0 {
		b.WriteString("\n  qemu said:")
		for _, l := range e.QEMUTail {
			b.WriteString("\n    | " + l)
		}
	}
	b.WriteString("\n  console, last lines:")
	if len(e.Tail) == 0 {
		b.WriteString(" (nothing)")
	}
	for _, l := range e.Tail {
		b.WriteString("\n    | " + l)
	}
	return b.String()
}

// Unwrap returns the cause (context.DeadlineExceeded for a timeout).
func (e *ExpectError) Unwrap() error { return e.Err }

// Send writes s to the guest's serial console (its keyboard, in effect).
func (v *VM) Send(s string) error {
	_, err := io.WriteString(v.stdin, s)
	return err
}

// Wait waits for QEMU to exit (a guest power-off ends it) and returns its
// exit error. Without a deadline in ctx it gives up after
// DefaultExpectTimeout.
func (v *VM) Wait(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultExpectTimeout)
		defer cancel()
	}
	if err := v.proc.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return componentError("qemu "+v.cfg.Name, v.conLog, fmt.Errorf("still running: %w", err))
		}
		return componentError("qemu "+v.cfg.Name, v.qemuLog, err)
	}
	return nil
}

// Exited reports whether QEMU has ended.
func (v *VM) Exited() bool { return v.proc.Exited() }

// Kill stops QEMU at once. It is safe to call more than once.
func (v *VM) Kill() {
	v.once.Do(func() {
		_ = v.proc.stop(0)
		v.closeMonitor()
		v.lab.cmds.printf("# vm %s stopped after %s", v.cfg.Name, time.Since(v.started).Round(time.Millisecond))
	})
}
