package kmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const rel = "6.1.0-test-amd64"

// image writes a load order under a temporary root, as the image has it.
func image(t *testing.T, release string, entries []Entry) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "lib", "modules", release)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteOrder(&b, "test image", entries); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, OrderFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// virtio is the Debian 6.1 virtio_net chain plus independent modules.
var virtio = []Entry{
	{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"},
	{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko", Depends: []string{"virtio_ring"}},
	{Name: "failover", Path: "kernel/net/core/failover.ko"},
	{Name: "net_failover", Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
	{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"virtio_ring", "virtio", "net_failover"}},
	{Name: "nbd", Path: "kernel/drivers/block/nbd.ko"},
	{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko"},
}

// loader is an injected Load that records calls and answers from errs
// (keyed by module file base name without .ko).
type loader struct {
	mu    sync.Mutex
	errs  map[string]error
	calls []string // "name params"
	done  map[string]bool
	t     *testing.T
	deps  map[string][]string
}

func (l *loader) load(path, params string) error {
	name := strings.TrimSuffix(filepath.Base(path), ".ko")
	name = strings.ReplaceAll(name, "-", "_")
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.deps[name] {
		if !l.done[d] {
			l.t.Errorf("Load(%s) started before its dependency %s finished", name, d)
		}
	}
	l.calls = append(l.calls, strings.TrimSpace(name+" "+params))
	l.done[name] = true
	return l.errs[name]
}

func depsOf(entries []Entry) map[string][]string {
	m := map[string][]string{}
	for _, e := range entries {
		m[e.Name] = e.Depends
	}
	return m
}

type outcome struct {
	Name, Status, Detail string
}

func outcomes(rs []Result) []outcome {
	var o []outcome
	for _, r := range rs {
		o = append(o, outcome{r.Name, r.Status.String(), r.Detail()})
	}
	return o
}

func TestLoadAll(t *testing.T) {
	root := image(t, rel, virtio)
	finit := func(err error) error { return fmt.Errorf("finit_module x: %w", err) }
	tests := []struct {
		name    string
		errs    map[string]error
		present []string
		params  map[string]string
		want    []outcome
		calls   []string
	}{
		{
			name: "all load",
			want: []outcome{
				{"virtio_ring", "loaded", ""}, {"virtio", "loaded", ""}, {"failover", "loaded", ""},
				{"net_failover", "loaded", ""}, {"virtio_net", "loaded", ""}, {"nbd", "loaded", ""}, {"crc32c_intel", "loaded", ""},
			},
			calls: []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "nbd", "crc32c_intel"},
		},
		{
			name:   "params from the command line",
			params: map[string]string{"nbd": "nbds_max=4 max_part=16"},
			want: []outcome{
				{"virtio_ring", "loaded", ""}, {"virtio", "loaded", ""}, {"failover", "loaded", ""},
				{"net_failover", "loaded", ""}, {"virtio_net", "loaded", ""}, {"nbd", "loaded", ""}, {"crc32c_intel", "loaded", ""},
			},
			calls: []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "nbd nbds_max=4 max_part=16", "crc32c_intel"},
		},
		{
			name:    "already there",
			errs:    map[string]error{"virtio_ring": finit(unix.EEXIST)},
			present: []string{"failover", "net_failover"},
			want: []outcome{
				{"virtio_ring", "present", "already loaded or built in"}, {"virtio", "loaded", ""}, {"failover", "present", "already loaded or built in"},
				{"net_failover", "present", "already loaded or built in"}, {"virtio_net", "loaded", ""}, {"nbd", "loaded", ""}, {"crc32c_intel", "loaded", ""},
			},
			calls: []string{"virtio_ring", "virtio", "virtio_net", "nbd", "crc32c_intel"},
		},
		{
			name: "a failure skips dependents only",
			errs: map[string]error{
				"net_failover": finit(unix.ENOEXEC),
				"crc32c_intel": finit(unix.ENODEV),
			},
			want: []outcome{
				{"virtio_ring", "loaded", ""}, {"virtio", "loaded", ""}, {"failover", "loaded", ""},
				{"net_failover", "failed", "ENOEXEC: invalid module format: built for another kernel or corrupt (dmesg names the mismatch)"},
				{"virtio_net", "skipped", "dependency net_failover failed"},
				{"nbd", "loaded", ""},
				{"crc32c_intel", "no device", "ENODEV: no matching device or CPU feature: the module declined to initialise"},
			},
			calls: []string{"virtio_ring", "virtio", "failover", "net_failover", "nbd", "crc32c_intel"},
		},
		{
			name: "unknown errno and plain errors",
			errs: map[string]error{"virtio_ring": finit(unix.EHOSTDOWN), "nbd": errors.New("open nbd.ko: gone")},
			want: []outcome{
				{"virtio_ring", "failed", "EHOSTDOWN: host is down"}, {"virtio", "skipped", "dependency virtio_ring failed"}, {"failover", "loaded", ""},
				{"net_failover", "loaded", ""}, {"virtio_net", "skipped", "dependency virtio_ring failed"}, {"nbd", "failed", "open nbd.ko: gone"}, {"crc32c_intel", "loaded", ""},
			},
			calls: []string{"virtio_ring", "failover", "net_failover", "nbd", "crc32c_intel"},
		},
	}
	for _, tt := range tests {
		for _, parallel := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/parallel=%d", tt.name, parallel), func(t *testing.T) {
				l := &loader{errs: tt.errs, t: t, deps: depsOf(virtio), done: map[string]bool{}}
				for _, n := range tt.present {
					l.done[n] = true
				}
				params := tt.params
				if params == nil {
					params = map[string]string{}
				}
				var logs bytes.Buffer
				got, err := LoadAll(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), Options{
					Root: root, Release: rel, Params: params, Parallel: parallel, Load: l.load,
					Present: func(n string) bool { return contains(tt.present, n) },
				})
				if err != nil {
					t.Fatalf("LoadAll = %v, want nil error", err)
				}
				if diff := cmp.Diff(tt.want, outcomes(got)); diff != "" {
					t.Errorf("LoadAll outcomes (-want +got):\n%s", diff)
				}
				calls := l.calls
				if parallel > 1 {
					calls = sorted(calls)
				}
				want := tt.calls
				if parallel > 1 {
					want = sorted(want)
				}
				if diff := cmp.Diff(want, calls); diff != "" {
					t.Errorf("Load calls (-want +got):\n%s", diff)
				}
				for _, r := range got {
					if wantPath := filepath.Join(root, "lib/modules", rel); !strings.HasPrefix(r.Path, wantPath) {
						t.Errorf("Result %s Path = %s, want under %s", r.Name, r.Path, wantPath)
					}
				}
				// The log has one line per module, in load order.
				lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
				if len(lines) != len(virtio) {
					t.Fatalf("log has %d lines, want %d:\n%s", len(lines), len(virtio), logs.String())
				}
				for i, line := range lines {
					if !strings.Contains(line, "module="+virtio[i].Name+" ") {
						t.Errorf("log line %d = %q, want module=%s", i, line, virtio[i].Name)
					}
				}
			})
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// TestLoadAllParallel proves independent modules overlap when allowed: the
// loader for one blocks until the other has started.
func TestLoadAllParallel(t *testing.T) {
	entries := []Entry{{Name: "a", Path: "a.ko"}, {Name: "b", Path: "b.ko"}}
	root := image(t, rel, entries)
	bStarted := make(chan struct{})
	load := func(path, _ string) error {
		switch filepath.Base(path) {
		case "a.ko":
			select {
			case <-bStarted:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("b never started while a was loading")
			}
		default:
			close(bStarted)
			return nil
		}
	}
	got, err := LoadAll(context.Background(), nil, Options{Root: root, Release: rel, Params: map[string]string{}, Parallel: 2, Load: load, Present: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Status != Loaded {
			t.Errorf("LoadAll(parallel 2) %s = %v (%v), want loaded", r.Name, r.Status, r.Err)
		}
	}
}

// TestLoadAllContext: a module stuck in its init cannot hang the boot.
func TestLoadAllContext(t *testing.T) {
	root := image(t, rel, virtio)
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := func(path, _ string) error {
		if strings.HasSuffix(path, "/net_failover.ko") {
			close(started)
			<-release
		}
		return nil
	}
	go func() {
		<-started
		cancel()
	}()
	got, err := LoadAll(ctx, nil, Options{Root: root, Release: rel, Params: map[string]string{}, Load: load, Present: func(string) bool { return false }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadAll(stuck module, cancelled) error = %v, want context.Canceled", err)
	}
	want := []string{"loaded", "loaded", "loaded", "skipped", "skipped", "skipped", "skipped"}
	var statuses []string
	for _, r := range got {
		statuses = append(statuses, r.Status.String())
	}
	if diff := cmp.Diff(want, statuses); diff != "" {
		t.Errorf("LoadAll(cancelled) statuses (-want +got):\n%s", diff)
	}
}

func TestLoadAllWrongKernel(t *testing.T) {
	root := image(t, "6.1.0-other-amd64", virtio)
	called := false
	got, err := LoadAll(context.Background(), nil, Options{
		Root: root, Release: rel, Params: map[string]string{},
		Load:    func(string, string) error { called = true; return nil },
		Present: func(n string) bool { return n == "nbd" },
	})
	if !errors.Is(err, ErrWrongKernel) || !strings.Contains(err.Error(), "6.1.0-other-amd64") || !strings.Contains(err.Error(), rel) {
		t.Errorf("LoadAll(other release) error = %v, want ErrWrongKernel naming both releases", err)
	}
	if called {
		t.Errorf("LoadAll(other release) called Load; the kernel would refuse the modules")
	}
	if len(got) != len(virtio) {
		t.Fatalf("LoadAll(other release) = %d results, want %d", len(got), len(virtio))
	}
	for _, r := range got {
		want := Skipped
		if r.Name == "nbd" {
			want = Present // built into the running kernel
		}
		if r.Status != want {
			t.Errorf("LoadAll(other release) %s = %v, want %v", r.Name, r.Status, want)
		}
	}
}

func TestLoadAllNoOrder(t *testing.T) {
	_, err := LoadAll(context.Background(), nil, Options{Root: t.TempDir(), Release: rel, Params: map[string]string{}})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadAll(no order file) error = %v, want fs.ErrNotExist", err)
	}
	root := image(t, rel, nil)
	if err := os.WriteFile(filepath.Join(root, "lib/modules", rel, OrderFile), []byte("nbd /abs/nbd.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAll(context.Background(), nil, Options{Root: root, Release: rel, Params: map[string]string{}}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("LoadAll(corrupt order) error = %v, want one naming line 1", err)
	}
}

func TestSummary(t *testing.T) {
	rs := []Result{{Status: Loaded}, {Status: Loaded}, {Status: NoDevice}, {Status: Failed}}
	if got, want := Summarize(rs).String(), "2 loaded, 1 no device, 1 failed"; got != want {
		t.Errorf("Summarize(...).String() = %q, want %q", got, want)
	}
	if got, want := Summarize(nil).String(), "no modules"; got != want {
		t.Errorf("Summarize(nil).String() = %q, want %q", got, want)
	}
}
