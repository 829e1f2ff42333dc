package lab

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestCleanConsole(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain\r\n", "plain\n"},
		{"\x1b[2J\x1b[1;1HSeaBIOS\r\n", "SeaBIOS\n"},
		{"\x1bc\x1b[?7lok", "ok"},
		{"tab\tbell\x07del\x7f\x00end", "tab\tbelldelend"},
	}
	for _, tt := range tests {
		if got, rest := cleanConsole([]byte(tt.in)); string(got) != tt.want || len(rest) != 0 {
			t.Errorf("cleanConsole(%q) = %q, %q, want %q", tt.in, got, rest, tt.want)
		}
	}
	// Sequences cut off at the end come back to be completed by the next
	// write.
	for _, in := range []string{"ab\x1b", "ab\x1b[", "ab\x1b[?7"} {
		if got, rest := cleanConsole([]byte(in)); string(got) != "ab" || string(rest) != in[2:] {
			t.Errorf("cleanConsole(%q) = %q, %q, want \"ab\", %q", in, got, rest, in[2:])
		}
	}
}

func TestConsoleEscapeAcrossWrites(t *testing.T) {
	c := newTestConsole(t, nil)
	for _, w := range []string{"x\x1b", "c\x1b[?7", "lSeaBIOS\x1b[0", "m\r\n"} {
		c.Write([]byte(w))
	}
	if got := c.String(); got != "xSeaBIOS\n" {
		t.Errorf("console text = %q, want %q", got, "xSeaBIOS\n")
	}
}

func newTestConsole(t *testing.T, onLine func(string)) *console {
	t.Helper()
	c, err := newConsole(filepath.Join(t.TempDir(), "console.log"), onLine, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsoleExpectInOrder(t *testing.T) {
	var lines []string
	c := newTestConsole(t, func(l string) { lines = append(lines, l) })
	c.Write([]byte("boot A\r\nmarker 1\nmid"))
	c.Write([]byte("dle\nmarker 2\npartial"))
	ctx := context.Background()
	re := regexp.MustCompile(`marker (\d)`)
	for _, want := range []string{"1", "2"} {
		m, err := c.expect(ctx, re)
		if err != nil || m.Groups[1] != want {
			t.Fatalf("expect(marker) = %+v, %v, want group %s", m, err, want)
		}
	}
	// Partial lines match too.
	if m, err := c.expect(ctx, regexp.MustCompile(`part\w+`)); err != nil || m.Groups[0] != "partial" {
		t.Errorf("expect(partial) = %+v, %v", m, err)
	}
	if want := []string{"boot A", "marker 1", "middle", "marker 2"}; strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", lines, want)
	}
	c.end(nil)
	if want := []string{"boot A", "marker 1", "middle", "marker 2", "partial"}; strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines after end = %q, want %q", lines, want)
	}
}

func TestConsoleLogIsRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	c, err := newConsole(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := []byte("\x1b[1mbold\x1b[0m\r\n")
	c.Write(in)
	c.end(nil)
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, in) {
		t.Errorf("console log = %q, %v, want the raw bytes %q", b, err, in)
	}
}

func TestConsoleExpectWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestConsole(t, nil)
		go func() {
			time.Sleep(2 * time.Second)
			c.Write([]byte("login: "))
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m, err := c.expect(ctx, regexp.MustCompile(`login: `))
		if err != nil {
			t.Fatalf("expect: %v", err)
		}
		if m.At < 2*time.Second {
			t.Errorf("match At = %s, want >= 2s (when the output arrived)", m.At)
		}
	})
}

func TestConsoleExpectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestConsole(t, nil)
		c.Write([]byte("nothing useful\n"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.expect(ctx, regexp.MustCompile(`never`))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("expect = %v, want DeadlineExceeded", err)
		}
	})
}

func TestConsoleExpectAfterExit(t *testing.T) {
	c := newTestConsole(t, nil)
	c.Write([]byte("Kernel panic - not syncing\n"))
	c.end(errors.New("exit status 1"))
	_, err := c.expect(context.Background(), regexp.MustCompile(`never`))
	var ended *expectEnded
	if !errors.As(err, &ended) || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("expect after exit = %v, want expectEnded with the exit status", err)
	}
	// Output that arrived before the exit still matches.
	if _, err := c.expect(context.Background(), regexp.MustCompile(`Kernel panic`)); err != nil {
		t.Errorf("expect(panic) after exit = %v, want a match", err)
	}
}

func TestExpectErrorMessage(t *testing.T) {
	e := &ExpectError{VM: "vm0", Pattern: "LUNBOOT", Waited: 3 * time.Second, Exited: true,
		Tail: []string{"line a", "line b"}, QEMUTail: []string{"qemu: oops"},
		ConsoleLog: "/logs/console-vm0.log", QEMULog: "/logs/qemu-vm0.log", Err: errors.New("exit status 1")}
	msg := e.Error()
	for _, want := range []string{"qemu vm0", `"LUNBOOT"`, "QEMU exited first", "/logs/console-vm0.log", "| line b", "| qemu: oops"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ExpectError.Error() = %q, missing %q", msg, want)
		}
	}
}

func TestEncodeSubOptions(t *testing.T) {
	got, err := encodeSubOptions([]SubOption{{Code: 201, Data: []byte("ab")}, {Code: 1, Data: nil}})
	if err != nil || !bytes.Equal(got, []byte{201, 2, 'a', 'b', 1, 0}) {
		t.Errorf("encodeSubOptions = %x, %v, want c9026162 0100", got, err)
	}
	if _, err := encodeSubOptions([]SubOption{{Code: 1, Data: make([]byte, 256)}}); err == nil {
		t.Errorf("encodeSubOptions(256 bytes) succeeded, want an error")
	}
}

func TestHexOption(t *testing.T) {
	if got, err := hexOption(203, []byte("iq")); err != nil || got != "203,69:71" {
		t.Errorf("hexOption(203, iq) = %q, %v, want 203,69:71", got, err)
	}
	if _, err := hexOption(203, []byte("i")); err == nil {
		t.Errorf("hexOption(1 byte) succeeded, want an error")
	}
}

func TestParseLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases")
	content := "1795232007 52:54:00:aa:bb:02 10.23.50.199 * *\n" +
		"1795232004 52:54:00:aa:bb:01 10.23.50.198 guest 01:52:54:00:aa:bb:01\n" +
		"duid 00:01:00:01:2c:5f\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	ls, err := parseLeases(f, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].IP.String() != "10.23.50.199" || ls[0].Hostname != "" || ls[1].Hostname != "guest" ||
		ls[1].MAC.String() != "52:54:00:aa:bb:01" || ls[0].Expires.Unix() != 1795232007 {
		t.Errorf("parseLeases = %+v", ls)
	}
}

func TestQuoteArgs(t *testing.T) {
	got := quoteArgs([]string{"ip", "netns", "exec", "ns", "sh", "-c", "echo 'x' $y", ""})
	want := `ip netns exec ns sh -c 'echo '\''x'\'' $y' ''`
	if got != want {
		t.Errorf("quoteArgs = %s, want %s", got, want)
	}
}

func TestSanitizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"TestProbe/mutual-chap", "TestProbe-mutual-chap"},
		{"a b.c$d", "a-b-cd"},
		{strings.Repeat("x", 60), strings.Repeat("x", 40)},
	}
	for _, tt := range tests {
		if got := sanitizeName(tt.in); got != tt.want {
			t.Errorf("sanitizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 20<<20)
	f.WriteAt([]byte("tail"), 64<<20-4)
	f.Close()
	if err := copySparse(src, dst); err != nil {
		t.Fatalf("copySparse: %v", err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Errorf("copySparse: copy differs from the source")
	}
	var st1, st2 syscall.Stat_t
	if syscall.Stat(src, &st1) == nil && syscall.Stat(dst, &st2) == nil && st2.Blocks > 4*st1.Blocks+64 {
		t.Errorf("copy uses %d blocks, source %d: holes were filled", st2.Blocks, st1.Blocks)
	}
}

func TestMaskSecrets(t *testing.T) {
	tests := []struct {
		in      string
		secrets []string
		want    string
	}{
		{"-append 'iscsi_password=s3cret iscsi_in_password=r3v x=1'", nil, "-append 'iscsi_password=*** iscsi_in_password=*** x=1'"},
		{"rd.iscsi.password=a1 rd.iscsi.in.password=b2 chap-secret=c3", nil, "rd.iscsi.password=*** rd.iscsi.in.password=*** chap-secret=***"},
		{"netroot=iscsi:user:pw@10.0.0.1::::iqn.x", nil, "netroot=iscsi:user:***@10.0.0.1::::iqn.x"},
		{"netroot=iscsi:u:pw:ru:rpw@10.0.0.1::::iqn.x", nil, "netroot=iscsi:u:***:ru:***@10.0.0.1::::iqn.x"},
		{"root-path iscsi:10.0.0.1::3260:1:iqn.x", nil, "root-path iscsi:10.0.0.1::3260:1:iqn.x"},
		{"Command line: lunboot.chap=topsecret-1 other", []string{"topsecret-1"}, "Command line: lunboot.chap=*** other"},
	}
	for _, tt := range tests {
		if got := maskSecrets(tt.in, tt.secrets); got != tt.want {
			t.Errorf("maskSecrets(%q, %q) = %q, want %q", tt.in, tt.secrets, got, tt.want)
		}
	}
}

func TestConsoleMasksSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	var lines []string
	mask := func(s string) string { return maskSecrets(s, []string{"hunter2-secret"}) }
	c, err := newConsole(path, func(l string) { lines = append(lines, l) }, mask)
	if err != nil {
		t.Fatal(err)
	}
	// The secret arrives split over writes, as serial output does.
	c.Write([]byte("[0.0] Command line: x=hunter2-"))
	c.Write([]byte("secret iscsi_password=abc\r\nlogin: hunt"))
	c.Write([]byte("er2-secret"))
	if m, err := c.expect(context.Background(), regexp.MustCompile(`login: .*`)); err != nil || strings.Contains(m.Groups[0], "hunter2") {
		t.Errorf("expect(login) = %+v, %v, want the partial line masked", m, err)
	}
	c.end(nil)
	b, _ := os.ReadFile(path)
	for _, out := range []string{string(b), c.String(), strings.Join(lines, "\n")} {
		if strings.Contains(out, "hunter2-secret") || strings.Contains(out, "=abc") {
			t.Errorf("console output %q shows a secret", out)
		}
	}
	if !strings.Contains(string(b), "x=***") || !strings.Contains(string(b), "\r\n") {
		t.Errorf("console log = %q, want the raw line with the secret masked", b)
	}
}

// TestWriteThreads reads this test binary's own threads: one line per
// thread with a state letter, and the process's name as a header. A
// process that is gone is named, not skipped.
func TestWriteThreads(t *testing.T) {
	var b strings.Builder
	writeThreads(&b, os.Getpid())
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "  pid ") {
		t.Fatalf("writeThreads(self) =\n%s\nwant a pid header and thread lines", b.String())
	}
	thread := regexp.MustCompile(`^    \d+ .{16} [RSDTtZXIWPK] \S+$`)
	for _, l := range lines[1:] {
		if !thread.MatchString(l) {
			t.Errorf("thread line %q does not read tid, name, state, wait channel", l)
		}
	}
	b.Reset()
	writeThreads(&b, 1<<22+1) // above pid_max's ceiling: never a process
	if !strings.Contains(b.String(), "no such file") {
		t.Errorf("writeThreads(no such process) = %q, want it to say so", b.String())
	}
}
