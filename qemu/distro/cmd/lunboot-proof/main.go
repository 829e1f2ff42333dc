// Command lunboot-proof runs inside the lab's Debian systems (package
// qemu/distro) as lunboot-proof.service, once the boot has reached
// multi-user.target. It collects the evidence of how the OS came up (package
// qemu/distro/osproof), prints it as one LUNBOOT-OS-PROOF line on the serial
// console and on standard output (the journal), and powers the machine off
// when the kernel command line carries lunboot.proof.poweroff=1 (a full
// shutdown) or lunboot.proof.poweroff=force (systemctl poweroff --force).
//
// Usage:
//
//	lunboot-proof [-console /dev/ttyS0] [-wait 3m] [-poweroff-delay 2s]
//
// It exits 0 even when part of the evidence is missing: the proof line lists
// what could not be read, and the test reading it decides.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lunboot-proof:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lunboot-proof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	console := fs.String("console", "/dev/ttyS0", "serial console to print the proof on (empty: standard output only)")
	wait := fs.Duration("wait", 3*time.Minute, "how long to wait for systemd to finish booting")
	delay := fs.Duration("poweroff-delay", 2*time.Second, "pause before powering off, so the console shows the login prompt")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	p := osproof.Collect(ctx, osproof.Env{Root: "/", Systemctl: systemctl, Interfaces: interfaces, Kernel: kernel})
	line, err := p.Line()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, line)
	if *console != "" {
		if err := writeConsole(*console, line); err != nil {
			fmt.Fprintf(stderr, "lunboot-proof: %v\n", err)
		}
	}
	key, _, _ := strings.Cut(osproof.PoweroffArg, "=")
	v, _ := p.Arg(key)
	var argv []string
	switch key + "=" + v {
	case osproof.PoweroffArg:
		argv = []string{"systemctl", "poweroff"}
	case osproof.PoweroffForceArg:
		argv = []string{"systemctl", "poweroff", "--force"}
	}
	if argv != nil {
		fmt.Fprintf(stdout, "lunboot-proof: %s in %s (%s=%s)\n", strings.Join(argv, " "), *delay, key, v)
		time.Sleep(*delay)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	return nil
}

// writeConsole writes the line in one write, framed by newlines so that it
// starts on a line of its own even after a login prompt. O_NOCTTY keeps the
// service from acquiring the getty's terminal.
func writeConsole(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open console: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + line + "\n"); err != nil {
		return fmt.Errorf("write console %s: %w", path, err)
	}
	return nil
}

// systemctl runs systemctl; the is-* queries exit non-zero for states other
// than running/active but still print the state, which is what counts.
func systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "systemctl", args...).Output()
	s := strings.TrimSpace(string(out))
	var ee *exec.ExitError
	if errors.As(err, &ee) && s != "" {
		err = nil
	}
	return s, err
}

func interfaces() ([]osproof.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []osproof.Interface
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		oi := osproof.Interface{Name: i.Name, MAC: i.HardwareAddr.String()}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			oi.Addrs = append(oi.Addrs, a.String())
		}
		out = append(out, oi)
	}
	return out, nil
}

func kernel() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}
