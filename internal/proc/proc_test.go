package proc

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

func TestStopReachesTheGroup(t *testing.T) {
	var out testenv.SyncBuffer
	// The shell forks a child that prints its PID and would outlive a
	// signal sent to the shell alone.
	p, err := Start([]string{"sh", "-c", "sleep 600 & echo $!; wait"}, IO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatal("the shell did not report its child")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("Exited() = true before Stop")
	}
	if err := p.Stop(0); err != nil {
		t.Fatalf("Stop(0) = %v", err)
	}
	if !p.Exited() {
		t.Error("Exited() = false after Stop")
	}
	var child int
	if _, err := fmt.Sscan(out.String(), &child); err != nil {
		t.Fatalf("child PID %q: %v", out.String(), err)
	}
	// The child is reparented and reaped by init; give it a moment.
	for i := 0; i < 100 && syscall.Kill(child, 0) == nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if syscall.Kill(child, 0) == nil {
		t.Errorf("the shell's child %d survived Stop", child)
	}
	if err := p.Stop(0); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}

func TestStopGraceThenKill(t *testing.T) {
	// A process that ignores SIGTERM, as tgtd in the foreground does.
	p, err := Start([]string{"sh", "-c", "trap '' TERM; sleep 600 & wait; wait"}, IO{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period", d)
	}
	if p.Err() == nil {
		t.Error("Err() = nil for a killed process")
	}
}

func TestWait(t *testing.T) {
	p, err := Start([]string{"sh", "-c", "exit 3"}, IO{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	p, err = Start([]string{"sleep", "600"}, IO{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := p.Wait(short); err != context.DeadlineExceeded {
		t.Errorf("Wait on a running process = %v, want context.DeadlineExceeded", err)
	}
	if _, err := Start(nil, IO{}); err == nil {
		t.Error("Start(nil) succeeded")
	}
}
