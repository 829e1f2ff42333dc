package nbd

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStallWatchSocketpair reproduces, on the host, what the kernel looked
// like from this side when its receive work for a socket never ran: Serve
// answers a READ on each of two connections, the peer reads the reply on
// the first and leaves the second unread. The watch, sampling the real
// sockets (SIOCOUTQ), must name the second connection, and only it.
func TestStallWatchSocketpair(t *testing.T) {
	dev := newMemDevice(1<<20, 512)
	copy(dev.data, pattern(1<<20, 3))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		ours     []io.ReadWriteCloser
		peers    []net.Conn
		counters []*Counters
	)
	served := make(chan error, 2)
	for range 2 {
		c, kfd, err := socketPair()
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(kfd), "peer")
		p, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		cnt := new(Counters)
		ours, peers, counters = append(ours, c), append(peers, p), append(counters, cnt)
		go func() { served <- Serve(ctx, c, dev, Options{Counters: cnt}) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Error("Serve did not return after cancel")
			}
		}
	})

	for i, p := range peers {
		b, _ := Request{Type: CmdRead, Handle: uint64(i + 1), Offset: 4096, Length: 4096}.MarshalBinary()
		if _, err := p.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	readReply := func(i int) {
		t.Helper()
		peers[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, ReplySize+4096)
		if _, err := io.ReadFull(peers[i], buf); err != nil {
			t.Fatalf("reading the reply on connection %d: %v", i, err)
		}
	}
	readReply(0)

	watch := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		return stallWatch{
			conns:    len(ours),
			unread:   func(i int) (int, bool) { return unreadBytes(ours[i]) },
			answered: func(i int) uint64 { return counters[i].requests.Load() },
			after:    200 * time.Millisecond,
			every:    10 * time.Millisecond,
		}.run(ctx)
	}
	var se *stallError
	if err := watch(5 * time.Second); !errors.As(err, &se) || se.conn != 1 || se.unread == 0 {
		t.Fatalf("watch with connection 1's reply unread = %v, want a stall on connection 1", err)
	}
	readReply(1)
	if err := watch(time.Second); err != nil {
		t.Errorf("watch with every reply read = %v, want none", err)
	}
	if n, ok := unreadBytes(ours[1]); !ok || n != 0 {
		t.Errorf("unreadBytes(connection 1) after the peer read = %d, %v, want 0, true", n, ok)
	}
}

func TestQueueCPUs(t *testing.T) {
	dir := t.TempDir()
	for q, list := range map[string]string{
		"0":  "0, 2\n",
		"1":  "1, 3\n",
		"2":  "\n", // more queues than CPUs: this one gets no requests
		"10": "4\n",
		"x":  "5\n", // not a queue
	} {
		if err := os.MkdirAll(filepath.Join(dir, "mq", q), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "mq", q, "cpu_list"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := queueCPUs(dir)
	want := []hwQueue{{0, []int{0, 2}}, {1, []int{1, 3}}, {10, []int{4}}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(hwQueue{})); diff != "" {
		t.Errorf("queueCPUs(%s) mismatch (-want +got):\n%s", dir, diff)
	}
	if got := queueCPUs(filepath.Join(dir, "missing")); got != nil {
		t.Errorf("queueCPUs(no mq directory) = %v, want nil", got)
	}
}
