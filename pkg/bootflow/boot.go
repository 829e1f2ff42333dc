// Package bootflow is lunboot's boot: the sequence of stages a NIC iSCSI
// boot ROM goes through, composed from the project's libraries. The stages,
// by the names the console prints, each in its own file:
//
//	 1 modules     stage_modules.go   the image's drivers
//	 2 config      stage_config.go    kernel command line, firmware iBFT
//	 3 network     stage_network.go   link, DHCP or static address
//	 4 target      stage_target.go    command line + DHCP + iBFT merged
//	 5 login       stage_iscsi.go     iSCSI login, the LUN checked
//	 6 nbd         stage_nbd.go       the LUN as /dev/nbdN
//	 7 os          stage_os.go        partitions mounted, boot entry chosen
//	 8 load        stage_load.go      kernel and initrd copied to tmpfs
//	 9 handoff     stage_handoff.go   how the OS logs in again (package handoff)
//	10 kexec-load  stage_kexec.go     kexec_file_load
//	11 shutdown    stage_shutdown.go  everything undone before the jump
//	12 kexec       stage_kexec.go     the jump
//
// Each stage reports one line to the Console with its result and duration.
// Stages that a retry can fix (DHCP, the login while a target is coming up
// or unreachable) are retried with backoff within lunboot.retries= and
// lunboot.timeout=; a permanent failure (wrong CHAP secret, unknown target
// name, missing LUN) ends the boot at once. The error returned is a
// *StageError carrying what to check; the command then drops to a rescue
// shell or reboots.
package bootflow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/osfind"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Options configure Boot. The zero value, with a Console, is a real boot.
type Options struct {
	// Console receives the stage lines. Required.
	Console Console
	// Started is the clock of the console's time stamps (the command's
	// start); times in console lines (a link fault, a failover) count
	// from it. Zero means when Boot is called.
	Started time.Time
	// Logger receives details (debug level and up, as the command
	// filters); nil discards.
	Logger *slog.Logger
	// Cmdline is the kernel command line; empty reads /proc/cmdline. It
	// gives both the configuration and the module parameters.
	Cmdline string
	// Sysfs is the sysfs mount point ("/sys" when empty).
	Sysfs string
	// TempDir holds the copies of the OS kernel and initrd handed to
	// kexec_file_load (os.TempDir() when empty: tmpfs in the image).
	TempDir string
	// Menu, when set, reads the boot-menu choice (the console's input);
	// the menu is shown only when lunboot.menu= gives it a timeout.
	Menu io.Reader
	// NoExec stops after the OS kernel is loaded and the session is shut
	// down, without executing it (for tests and `lunboot boot -n`).
	NoExec bool
	// SkipModules skips stage 1 (a host that already has its drivers).
	SkipModules bool
	// Network overrides stage 3's interface selection defaults, for
	// hosts and labs whose NICs are virtual.
	Network netconf.Selector
	// Machine replaces what the boot does to the machine, for tests; the
	// zero value is the real machine.
	Machine Machine
	// LogLevel, when set, is set to lunboot.loglevel= once the command
	// line is read if it gives one, so the command's log handler follows
	// it; otherwise it keeps the command's default.
	LogLevel *slog.LevelVar
}

// Boot runs the boot. It returns only on failure (a *StageError) or, with
// NoExec, after the OS kernel has been loaded and everything shut down.
//
// Side effects, in order: loads the image's kernel modules; configures one
// network interface (address, routes, /etc/resolv.conf); logs in to the
// iSCSI target; attaches /dev/nbdN served from the LUN; mounts the LUN's
// partitions read-only under TempDir; copies the chosen kernel and initrd
// to TempDir; kexec_file_load; unmounts, detaches NBD, logs out, takes the
// interface down; kexec. On failure everything set up so far is undone
// before returning (the same teardown as stage 11, without taking the
// interface down), so that `lunboot boot` can be run again from the rescue
// shell. Options.Machine replaces these effects in tests.
func Boot(ctx context.Context, o Options) (err error) {
	if o.Console == nil {
		return errors.New("bootflow: Options.Console is required")
	}
	b := &boot{o: o, m: o.Machine.withDefaults(), log: o.Logger, start: o.Started}
	if b.start.IsZero() {
		b.start = time.Now()
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.o.Sysfs == "" {
		b.o.Sysfs = "/sys"
	}
	if b.o.TempDir == "" {
		b.o.TempDir = os.TempDir()
	}
	// The command line is read once: the module parameters of stage 1 and
	// the configuration of stage 2 come from the same text, also when
	// `lunboot boot --cmdline` replaces /proc/cmdline.
	if b.o.Cmdline == "" {
		raw, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return &StageError{Stage: "config", Err: fmt.Errorf("reading the kernel command line: %w", err)}
		}
		b.o.Cmdline = string(raw)
	}
	// One ISID for the whole boot (RFC 7143 §4.4.3): every login retry
	// and recovery reinstates the same session instead of leaving
	// half-open ones behind on the target.
	b.isid = newISID()
	defer func() {
		if err != nil {
			b.teardown(context.Background(), false)
			var se *StageError
			if errors.As(err, &se) && b.configured && !b.cfg.Rescue {
				se.Reboot = true
			}

		}
	}()

	// Stage 1 and 2 run once, without retries: a module that fails to
	// load is only reported, but an image without a usable load order, a
	// module stuck in its init or a bad command line stops the boot.
	if !o.SkipModules {
		if err := run(ctx, o.Console, "modules", RetryPolicy{}, false, b.modules); err != nil {
			return err
		}
	}
	if err := run(ctx, o.Console, "config", RetryPolicy{}, false, b.config); err != nil {
		return err
	}
	b.configured = true
	if o.LogLevel != nil && b.cfg.Origin(bootcfg.FieldLogLevel).Kind != bootcfg.Default {
		o.LogLevel.Set(b.cfg.LogLevel)
	}
	parent := ctx
	if b.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.Timeout)
		defer cancel()
	}
	policy := b.retryPolicy()
	stages := []struct {
		name  string
		retry bool
		fn    func(context.Context) (string, error)
	}{
		{"network", true, b.network},
		{"target", false, b.target},
		{"login", true, b.login},
		{"nbd", false, b.attach},
		{"os", false, b.findOS},
		{"load", false, b.load},
		{"handoff", false, b.handoff},
		{"kexec-load", false, b.kexecLoad},
		{"shutdown", false, b.shutdown},
	}
	for _, s := range stages {
		if err := run(ctx, o.Console, s.name, policy, s.retry, s.fn); err != nil {
			return b.overallTimeout(err, ctx, parent)
		}
	}
	o.Console.Info("booting %s after %s", b.entry.Label, time.Since(b.start).Round(10*time.Millisecond))
	if o.NoExec {
		return nil
	}
	return b.exec()
}

// boot is the state the stages build up, in stage order.
type boot struct {
	o     Options
	m     Machine // o.Machine with the real machine where it is nil
	log   *slog.Logger
	start time.Time
	isid  iscsi.ISID

	configured bool // the command line was read: cfg.Rescue is meaningful

	cmdline  bootcfg.Source
	firmware bootcfg.Source
	cfg      bootcfg.Config // after "config": local settings; after "target": all

	net *netconf.Config
	// resolved is the portal the root-path's host name resolved to (stage
	// 5); invalid when the root-path names an address.
	resolved netip.AddrPort

	session *iscsi.Session
	disk    *scsi.Disk
	// stopWatch ends the boot NIC's carrier watch (linkwatch.go).
	stopWatch func()
	nbd       BlockDevice

	found *osfind.Found
	entry *osfind.Entry

	kernel, initrd string // copies in TempDir
	osCmdline      string // the final command line (may hold secrets)
	lockdown       string // lunboot's own kernel's lockdown level ("" unknown)
}

// overallTimeout names lunboot.timeout= when it, rather than the stage's
// own bounds, ended the stage: the stage's advice (a DHCP server that does
// not answer, an unreachable portal) would otherwise send the operator
// looking for a fault that may not exist.
func (b *boot) overallTimeout(err error, ctx, parent context.Context) error {
	var se *StageError
	if !errors.As(err, &se) || b.cfg.Timeout <= 0 || !errors.Is(ctx.Err(), context.DeadlineExceeded) || parent.Err() != nil {
		return err
	}
	se.Err = fmt.Errorf("%w (lunboot.timeout=%s reached)", se.Err, b.cfg.Timeout)
	se.Check = fmt.Sprintf("the whole boot is limited to lunboot.timeout=%s: raise it, or see why stage %s took that long in the lines above", b.cfg.Timeout, se.Stage)
	return err
}

func (b *boot) retryPolicy() RetryPolicy {
	attempts := b.cfg.Retries + 1
	if b.cfg.Retries == bootcfg.RetryForever {
		attempts = AttemptsForever
	}
	return RetryPolicy{Attempts: attempts, Backoff: time.Second, MaxBackoff: 16 * time.Second}
}

// newISID returns a random ISID of type 10b (RFC 7143 §11.12.5: the "T"
// field 10b means the remaining 46 bits are random).
func newISID() iscsi.ISID {
	var id iscsi.ISID
	rand.Read(id[:])
	id[0] = 0x80 | id[0]&0x3f
	return id
}

func (b *boot) tempPath(name string) string { return filepath.Join(b.o.TempDir, name) }

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
