package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/qemu/fixtures"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// hardwareOnly marks a block of docs/quickstart.md that only real hardware
// can run (flashing firmware, changing BIOS settings):
// <!-- hardware-only: <name> --> right before the block. The quickstart
// test skips it by that name; every other shell block runs.
var hardwareOnly = regexp.MustCompile(`<!-- hardware-only: ([^>]+?) -->\s*$`)

// fence matches a fenced block with its info string.
var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```$")

// placeholderRow is a row of the page's placeholder table: | `<NAME>` | … |.
var placeholderRow = regexp.MustCompile("(?m)^\\| `(<[A-Z_]+>)` \\|")

// placeholderUse is a placeholder's spelling in a block.
var placeholderUse = regexp.MustCompile(`<[A-Z][A-Z_]*>`)

// shellBlock is one shell block of a page.
type shellBlock struct {
	line int    // where it starts in the page
	text string // as written
	skip string // the hardware-only marker's name, if any
}

// shellBlocks returns the page's sh/bash/shell fenced blocks, in order.
func shellBlocks(page string) []shellBlock {
	var out []shellBlock
	for _, m := range fence.FindAllStringSubmatchIndex(page, -1) {
		lang := page[m[2]:m[3]]
		if lang != "sh" && lang != "bash" && lang != "shell" {
			continue
		}
		b := shellBlock{line: strings.Count(page[:m[0]], "\n") + 1, text: page[m[4]:m[5]]}
		if mm := hardwareOnly.FindStringSubmatch(page[:m[0]]); mm != nil {
			b.skip = mm[1]
		}
		out = append(out, b)
	}
	return out
}

func TestShellBlocks(t *testing.T) {
	page := "intro\n\n```sh\nmake demo\n```\n\n```\nnot shell\n```\n<!-- hardware-only: flash -->\n\n```sh\nflashrom -w x\n```\ntext <!-- hardware-only: not right before --> text\n\n```bash\necho <A>\n```\n"
	got := shellBlocks(page)
	want := []shellBlock{{line: 3, text: "make demo\n"}, {line: 12, text: "flashrom -w x\n", skip: "flash"}, {line: 17, text: "echo <A>\n"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("shellBlocks = %+v, want %+v", got, want)
	}
}

// TestQuickstart runs the shell blocks of docs/quickstart.md verbatim, in
// order, in the lab's namespace, with only the placeholders of the page's
// table replaced by the lab's values: make demo, tgtadm against the lab's
// tgtd (through tgtadm's TGT_IPC_SOCKET, since the lab's tgtd has its own
// control port), make build and the host tools against that target. A
// command that fails fails the test; blocks marked hardware-only are
// skipped by name.
func TestQuickstart(t *testing.T) {
	s := setup(t)
	testenv.RequireBinaries(t, "make", "go", "bash")
	// make demo boots the Debian disk of make distro; building it here
	// would take minutes.
	testenv.RequireFile(t, filepath.Join(testenv.CacheDir(), "distro"), "make distro")
	disk := s.disk(t, fixtures.GPTBLS)
	repo := testenv.RepoRoot()
	b, err := os.ReadFile(filepath.Join(repo, "docs", "quickstart.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)

	l := labtest.Start(t, lab.Options{Name: "quickstart"})
	tg := labtest.Target(t, l)
	image := filepath.Join(t.TempDir(), "node7.img")
	if out, err := exec.Command("cp", "--sparse=always", disk.Path, image).CombinedOutput(); err != nil {
		t.Fatalf("copying the fixture: %v: %s", err, out)
	}
	values := map[string]string{
		"<TARGET_IP>":     l.ServerIP().String(),
		"<TARGET_IQN>":    "iqn.2026-11.org.lunboot.lab:quickstart",
		"<TID>":           "7",
		"<DISK_IMAGE>":    image,
		"<INITIATOR_IQN>": lunbootInitiator(l.Taps()[0].MAC),
	}
	var table []string
	for _, m := range placeholderRow.FindAllStringSubmatch(page, -1) {
		table = append(table, m[1])
		if _, ok := values[m[1]]; !ok {
			t.Errorf("docs/quickstart.md's placeholder table lists %s, which this test has no lab value for", m[1])
		}
	}
	if len(table) != len(values) {
		t.Errorf("docs/quickstart.md's placeholder table lists %q; the test fills %d placeholders", table, len(values))
	}
	if t.Failed() {
		t.FailNow()
	}

	// tgtadm connects to <TGT_IPC_SOCKET>.<control port>, the port 0
	// unless -C is given: a link named <dir>/tgtd.0 leads the quickstart's
	// tgtadm lines to the lab's tgtd.
	ipc := filepath.Join(t.TempDir(), "tgtd")
	if err := os.Symlink(fmt.Sprintf("/var/run/tgtd/socket.%d", tg.ControlPort()), ipc+".0"); err != nil {
		t.Fatal(err)
	}
	env := []string{"TGT_IPC_SOCKET=" + ipc, "CACHE=" + testenv.CacheDir()}
	for _, e := range os.Environ() {
		// A make test's own make must not leak its jobserver into the
		// page's make commands.
		if k, _, _ := strings.Cut(e, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "TGT_IPC_SOCKET" && k != "CACHE" {
			env = append(env, e)
		}
	}

	blocks := shellBlocks(page)
	if len(blocks) == 0 {
		t.Fatal("docs/quickstart.md has no shell blocks")
	}
	ran := 0
	for i, blk := range blocks {
		name := fmt.Sprintf("docs/quickstart.md:%d", blk.line)
		if blk.skip != "" {
			t.Logf("%s: skipped, hardware-only: %s", name, blk.skip)
			continue
		}
		text := blk.text
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			text = strings.ReplaceAll(text, k, values[k])
		}
		if left := placeholderUse.FindAllString(text, -1); len(left) > 0 {
			t.Fatalf("%s uses %q, which the page's placeholder table does not list:\n%s", name, left, blk.text)
		}
		start := time.Now()
		out, err := runBlock(repo, l.NetNS(), env, text)
		t.Logf("%s (block %d, %s):\n%s\n%s", name, i+1, time.Since(start).Round(time.Millisecond), blk.text, lastLines(out, 40))
		if err != nil {
			t.Fatalf("%s failed: %v\n%s", name, err, lastLines(out, 60))
		}
		ran++
	}
	t.Logf("ran %d of %d shell blocks", ran, len(blocks))
}

// runBlock runs a block with bash -e (a failing command ends it) and -x
// (the log shows each command) in the namespace, from the repository's top
// folder, as a user who copied the block would.
func runBlock(dir, ns string, env []string, text string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "bash", "-e", "-x", "-o", "pipefail", "-c", text)
	cmd.Dir, cmd.Env = dir, env
	// make demo starts QEMU and daemons: a timeout ends the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return out.Bytes(), err
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
