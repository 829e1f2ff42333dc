package qemuvm

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/proc"
	"github.com/lunboot/lunboot/internal/testenv"
)

// fakeHMP serves a monitor socket the way QEMU 7.2 does: a greeting, the
// typed command echoed through the line editor's cursor movements, the
// answer, the prompt. answer maps a command to its output; a command it
// does not know gets no answer at all (a hung QEMU).
func fakeHMP(t *testing.T, answer map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) "))
		buf := make([]byte, 256)
		var line string
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			line += string(buf[:n])
			for {
				i := strings.IndexByte(line, '\n')
				if i < 0 {
					break
				}
				cmd := line[:i]
				line = line[i+1:]
				out, ok := answer[cmd]
				if !ok {
					continue
				}
				echo := cmd[:1] + "\x1b[K\x1b[D" + cmd + "\x1b[K\r\n"
				if out != "" {
					out += "\r\n"
				}
				c.Write([]byte(echo + out + "(qemu) "))
			}
		}
	}()
	return path
}

func TestMonitorFake(t *testing.T) {
	path := fakeHMP(t, map[string]string{
		"set_link n0 off": "",
		"set_link n9 off": "Error: Device 'n9' not found",
		"set_link n1 on":  "something unexpected",
		"info network":    "n0: index=0,type=tap,ifname=tap0\r\n \\ net0: index=0,type=nic,model=virtio-net-pci",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := DialMonitor(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetLink(ctx, 0, false); err != nil {
		t.Errorf("SetLink(0, down) = %v, want nil", err)
	}
	if err := m.SetLink(ctx, 9, false); err == nil || !strings.Contains(err.Error(), "Device 'n9' not found") {
		t.Errorf("SetLink(9, down) = %v, want QEMU's error", err)
	}
	if err := m.SetLink(ctx, 1, true); err == nil || !strings.Contains(err.Error(), "something unexpected") {
		t.Errorf("SetLink(1, up) = %v, want the unexpected output as an error", err)
	}
	if err := m.SetLink(ctx, -1, true); err == nil {
		t.Errorf("SetLink(-1, up) = nil, want an error")
	}
	out, err := m.Command(ctx, "info network")
	if want := "n0: index=0,type=tap,ifname=tap0\n \\ net0: index=0,type=nic,model=virtio-net-pci"; err != nil || out != want {
		t.Errorf("Command(info network) = %q, %v, want %q", out, err, want)
	}
	if _, err := m.Command(ctx, "a\nb"); err == nil {
		t.Errorf("Command with a line break = nil error")
	}
}

// TestMonitorBounded checks that a monitor that never answers costs the
// caller its context's deadline, not a hang.
func TestMonitorBounded(t *testing.T) {
	path := fakeHMP(t, map[string]string{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := DialMonitor(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	err = m.SetLink(short, 0, false)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SetLink on a silent monitor = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("SetLink returned after %v", d)
	}
	// Nobody listens: DialMonitor gives up with ctx.
	gone, cancel3 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel3()
	if _, err := DialMonitor(gone, filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialMonitor(no socket) = %v, want context.DeadlineExceeded", err)
	}
}

// TestMonitorQEMU drives a real QEMU's monitor: a machine with no CPU to
// run (-machine none) and one netdev, whose link goes down and up.
func TestMonitorQEMU(t *testing.T) {
	bin := testenv.RequireBinaries(t, DefaultBinary)[0]
	sock := filepath.Join(t.TempDir(), "m.sock")
	p, err := proc.Start([]string{bin, "-machine", "none", "-nodefaults", "-display", "none",
		"-netdev", "user,id=n0", "-monitor", "unix:" + sock + ",server=on,wait=off"}, proc.IO{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := DialMonitor(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.SetLink(ctx, 0, false); err != nil {
		t.Errorf("SetLink(0, down) = %v", err)
	}
	if err := m.SetLink(ctx, 0, true); err != nil {
		t.Errorf("SetLink(0, up) = %v", err)
	}
	if err := m.SetLink(ctx, 3, false); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("SetLink(3, down) = %v, want QEMU's \"not found\"", err)
	}
}
