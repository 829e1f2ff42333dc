package qemuvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Monitor is a client of QEMU's human monitor (HMP) on the Unix socket
// Config.Monitor names. It sends one command at a time and returns what
// QEMU printed before its next prompt. HMP is meant for people, not
// programs, but it is what -monitor gives, it needs no capability
// negotiation (QMP does), and the commands the lab uses (set_link, info
// network) print nothing or one line.
type Monitor struct {
	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

// hmpPrompt ends every HMP answer (and the greeting).
const hmpPrompt = "(qemu) "

// DialMonitor connects to the monitor socket at path and reads QEMU's
// greeting. QEMU creates the socket as it starts, so DialMonitor retries
// until the socket answers or ctx ends.
func DialMonitor(ctx context.Context, path string) (*Monitor, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			m := &Monitor{conn: c}
			if _, err := m.readPrompt(ctx); err != nil {
				c.Close()
				return nil, fmt.Errorf("qemu monitor %s: greeting: %w", path, err)
			}
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qemu monitor %s: %w (last: %v)", path, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close closes the connection; QEMU keeps running.
func (m *Monitor) Close() error { return m.conn.Close() }

// ansiEscape matches the cursor movements HMP's line editor echoes.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// readPrompt reads until the buffered output ends with the prompt and
// returns what came before it. The wait is bounded by ctx.
func (m *Monitor) readPrompt(ctx context.Context) (string, error) {
	stop := context.AfterFunc(ctx, func() { m.conn.SetReadDeadline(time.Now()) })
	defer stop()
	defer m.conn.SetReadDeadline(time.Time{})
	chunk := make([]byte, 4096)
	for !bytes.HasSuffix(m.buf, []byte(hmpPrompt)) {
		n, err := m.conn.Read(chunk)
		m.buf = append(m.buf, chunk[:n]...)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return "", err
		}
	}
	out := string(m.buf[:len(m.buf)-len(hmpPrompt)])
	m.buf = m.buf[:0]
	return out, nil
}

// Command runs one HMP command and returns its output (the echo of the
// command removed, CR LF turned into LF, trimmed). A line starting with
// "Error:" is returned as an error; callers that know a command's silent
// success (set_link) should treat any other output as an error too.
func (m *Monitor) Command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return "", fmt.Errorf("qemu monitor: command %q holds a line break", cmd)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		m.conn.SetWriteDeadline(dl)
		defer m.conn.SetWriteDeadline(time.Time{})
	}
	if _, err := m.conn.Write([]byte(cmd + "\n")); err != nil {
		return "", fmt.Errorf("qemu monitor: %s: %w", cmd, err)
	}
	raw, err := m.readPrompt(ctx)
	if err != nil {
		return "", fmt.Errorf("qemu monitor: %s: %w", cmd, err)
	}
	// The line editor echoes the command as typed; the answer starts
	// after the first CR LF.
	out := ansiEscape.ReplaceAllString(raw, "")
	if i := strings.Index(out, "\r\n"); i >= 0 {
		out = out[i+2:]
	} else {
		out = ""
	}
	out = strings.TrimSpace(strings.ReplaceAll(out, "\r\n", "\n"))
	if strings.HasPrefix(out, "Error:") {
		return "", fmt.Errorf("qemu monitor: %s: %s", cmd, out)
	}
	return out, nil
}

// NetdevID returns the netdev ID of NIC i of a Config ("n<i>").
func NetdevID(nic int) string { return fmt.Sprintf("n%d", nic) }

// SetLink sets the link of NIC nic (its index in Config.NICs) up or down
// with set_link on its netdev. QEMU passes the change on to the NIC, so
// the guest sees its carrier go (virtio-net's link status), as when a
// cable is pulled, and the host-side tap stays up.
func (m *Monitor) SetLink(ctx context.Context, nic int, up bool) error {
	if nic < 0 {
		return fmt.Errorf("qemu monitor: set_link: NIC %d", nic)
	}
	state := "off"
	if up {
		state = "on"
	}
	cmd := fmt.Sprintf("set_link %s %s", NetdevID(nic), state)
	out, err := m.Command(ctx, cmd)
	if err != nil {
		return err
	}
	if out != "" {
		// set_link prints nothing when it works.
		return fmt.Errorf("qemu monitor: %s: %s", cmd, out)
	}
	return nil
}

// ErrNoMonitor is returned for a guest started without Config.Monitor.
var ErrNoMonitor = errors.New("qemu: the guest has no monitor socket (Config.Monitor)")
