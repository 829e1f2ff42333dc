package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/vmtest"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/nbd"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testAttachKernel runs `lunboot attach` against an in-process target on
// the guest's loopback with mutual CHAP, writes and reads through the
// kernel's /dev/nbdN, interrupts the command as ^C would and checks that the
// device is gone, the data reached the LUN and the session logged out.
func testAttachKernel(t *testing.T) {
	// vmtest's guest has no network: loopback is all the target needs.
	if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
		t.Fatalf("bringing up lo in the guest: %v", err)
	}
	const user, secret, tuser, tsecret = "alice", "alice-secret-1234", "target", "target-secret-5678"
	tgt := iscsitest.NewTarget(iscsitest.Options{
		LUNs: []iscsitest.LUNOptions{{ID: 0, Size: 8 << 20}, {ID: 1, Size: 16 << 20}},
		CHAP: &iscsitest.CHAP{Username: user, Secret: secret, TargetUsername: tuser, TargetSecret: tsecret},
	})
	addr, err := tgt.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	t.Setenv(envCHAPSecret, secret)
	t.Setenv(envTargetSecret, tsecret)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	defer vmtest.Watchdog(t, 30*time.Second, "nbd5")()
	actx, interrupt := context.WithCancel(ctx)
	var out, errb testenv.SyncBuffer
	done := make(chan error, 1)
	target := "iscsi://" + addr + "/" + iscsitest.DefaultName + "/1"
	go func() {
		done <- run(actx, []string{"attach", "--chap-user", user, "--target-user", tuser, "--nbd", "5", target}, &out, &errb)
	}()
	re := regexp.MustCompile(`(/dev/nbd5): LUN 1 of .*, 16777216 bytes`)
	var dev string
	for dev == "" {
		select {
		case err := <-done:
			t.Fatalf("lunboot attach ended early: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
		case <-time.After(100 * time.Millisecond):
		}
		if m := re.FindStringSubmatch(out.String()); m != nil {
			dev = m[1]
		}
	}

	// A second attach to the same device fails before it logs in.
	logins := tgt.Stats().Logins
	_, _, err = runCmd(t, "attach", "--chap-user", user, "--target-user", tuser, "--nbd", "5", target)
	if !errors.Is(err, nbd.ErrBusy) || !strings.Contains(err.Error(), "lunboot detach /dev/nbd5") {
		t.Errorf("lunboot attach --nbd 5 while %s is served = %v, want ErrBusy naming lunboot detach /dev/nbd5", dev, err)
	}
	if n := tgt.Stats().Logins; n != logins {
		t.Errorf("lunboot attach to a busy device logged in: %d logins, want %d", n, logins)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 3<<20); err != nil {
		t.Fatalf("writing %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dev, err)
	}
	f.Close()
	// Read back with O_DIRECT so the data comes from the LUN, not the cache.
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := alignedBuffer(len(data))
	if _, err := unix.Pread(fd, buf, 3<<20); err != nil {
		t.Fatalf("O_DIRECT read of %s: %v", dev, err)
	}
	unix.Close(fd)
	if !bytes.Equal(buf, data) {
		t.Errorf("%s read back differs from what was written", dev)
	}

	interrupt() // as SIGINT does through main's signal context
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lunboot attach after interrupt = %v\nstderr: %s", err, errb.String())
		}
	case <-ctx.Done():
		t.Fatal("lunboot attach did not return after the interrupt")
	}
	if st, err := nbd.Status(ctx, 5); err != nil || st.Connected {
		t.Errorf("after attach returned: Status(5) = %+v, %v; want disconnected", st, err)
	}
	if s := tgt.Stats(); s.Logouts != 1 || len(s.Violations) != 0 {
		t.Errorf("target stats: %d logouts, violations %q; want 1 logout, none", s.Logouts, s.Violations)
	}
	lun := tgt.LUN(1)
	got := make([]byte, len(data))
	lun.ReadAt(got, 3<<20)
	if !bytes.Equal(got, data) {
		t.Errorf("the target's LUN does not hold the data written through %s", dev)
	}
	for _, s := range []string{out.String(), errb.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, tsecret) {
			t.Errorf("a CHAP secret appears in the command's output: %q", s)
		}
	}
}

// alignedBuffer returns n bytes aligned for O_DIRECT (4 KiB).
func alignedBuffer(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	return b[off : off+n]
}
