//go:build linux

// Command guestinit is PID 1 of a vmtest guest: it mounts the pseudo file
// systems, loads the kernel modules the run asks for, runs the test binary,
// prints its exit status in a line the host recognises, and powers off.
//
// internal/vmtest builds it (CGO_ENABLED=0) into the guest's initramfs as
// /init next to /vmtest/config.json (internal/vmtest/guest.Config). It is not
// meant to be run by hand.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/vmtest/guest"
	"golang.org/x/sys/unix"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
	}
	// The status line starts on a fresh line even if the test's last
	// output did not end with a newline.
	fmt.Printf("\n%s\n", guest.StatusLine(code))
	unix.Sync()
	// With ACPI, power-off ends QEMU; the host kills it otherwise.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: power off: %v\n", err)
	}
	for {
		time.Sleep(time.Hour) // PID 1 must not exit: the kernel would panic
	}
}

// run returns the test's exit status; 125 stands for "the init failed".
func run() (int, error) {
	if err := mountAll(); err != nil {
		return 125, err
	}
	b, err := os.ReadFile(guest.ConfigPath)
	if err != nil {
		return 125, err
	}
	var cfg guest.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return 125, fmt.Errorf("parse %s: %w", guest.ConfigPath, err)
	}
	for _, m := range cfg.Modules {
		if err := loadModule(m); err != nil {
			return 125, err
		}
	}
	if len(cfg.Command) == 0 {
		return 125, errors.New("no command to run")
	}
	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.Env = append([]string{
		"PATH=/bin:/sbin:/usr/bin:/usr/sbin",
		"HOME=/tmp",
		"TMPDIR=/tmp",
		guest.EnvGuest + "=1",
	}, cfg.Env...)
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), fmt.Errorf("%s: %w", cfg.Command[0], err)
		}
		return ee.ExitCode(), nil
	default:
		return 125, fmt.Errorf("start %s: %w", cfg.Command[0], err)
	}
}

func mountAll() error {
	for _, m := range []struct {
		fstype, dir string
	}{
		{"proc", "/proc"},
		{"sysfs", "/sys"},
		{"devtmpfs", "/dev"},
		{"tmpfs", "/tmp"},
		{"tmpfs", "/run"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

func loadModule(m guest.Module) error {
	f, err := os.Open(m.Path)
	if err != nil {
		return fmt.Errorf("load module %s: %w", m.Name, err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), m.Params, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s (%s): %w", m.Name, m.Path, err)
	}
	fmt.Printf("vmtest init: loaded module %s %s\n", m.Name, m.Params)
	return nil
}
