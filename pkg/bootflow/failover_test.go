package bootflow

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/nbd"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// bootTwoControllers boots with a second portal (lunboot.portal=) served
// by second, and kills the first controller once the LUN is attached, as
// the lab's multipath scenario kills tgtd at the nbd stage line.
func bootTwoControllers(t *testing.T, secondOpts func(first *iscsitest.Target) iscsitest.Options) (*iscsitest.Target, *recorder, error) {
	l := newLab(t, iscsitest.Options{TPGT: 1})
	second := secondOpts(l.tgt)
	second.Name = testTarget
	b := iscsitest.NewTarget(second)
	t.Cleanup(func() { b.Close() })
	m := l.machine()
	m.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		switch addr {
		case "10.0.2.2:3260":
			return l.tgt.Dial(ctx, network, addr)
		case "10.0.2.3:3260":
			return b.Dial(ctx, network, addr)
		}
		return nil, errors.New("no route to " + addr)
	}
	attach := m.AttachNBD
	m.AttachNBD = func(ctx context.Context, d *scsi.Disk, o nbd.AttachOptions) (BlockDevice, error) {
		dev, err := attach(ctx, d, o)
		l.tgt.Close() // every connection to the first controller drops
		return dev, err
	}
	con := &recorder{}
	err := Boot(context.Background(), Options{
		Console: con, Cmdline: "netroot=iscsi:10.0.2.2::3260:0:" + testTarget + " lunboot.portal=10.0.2.3",
		Sysfs: t.TempDir(), TempDir: t.TempDir(), NoExec: true, SkipModules: true, Machine: m,
	})
	return b, con, err
}

// TestBootFailover: the first controller dies after the LUN is attached;
// the boot goes on through the second (another portal group, the same
// logical unit) and says so once, naming both portals.
func TestBootFailover(t *testing.T) {
	b, con, err := bootTwoControllers(t, func(first *iscsitest.Target) iscsitest.Options {
		return iscsitest.Options{TPGT: 2, LUNsFrom: first}
	})
	if err != nil {
		t.Fatalf("Boot() = %v; console:\n%s", err, con.text())
	}
	text := con.text()
	if n := strings.Count(text, "warning: path 10.0.2.2:3260,1 failed"); n != 1 || !strings.Contains(text, "continuing through 10.0.2.3:3260,2 (a new session through another portal group, same logical unit") {
		t.Errorf("console has %d failover warnings, want one naming 10.0.2.2:3260,1 and 10.0.2.3:3260,2:\n%s", n, text)
	}
	if !strings.Contains(text, "ok load:") || !strings.Contains(text, "logged out") {
		t.Errorf("the boot did not read the OS and log out through the second portal:\n%s", text)
	}
	if st := b.Stats(); st.Logouts != 1 || len(st.Violations) > 0 {
		t.Errorf("second controller: %d logouts, violations %q; want the session logged out there", st.Logouts, st.Violations)
	}
}

// TestBootFailoverOtherLU: the second portal serves another logical unit
// (another NAA designator): the boot refuses it, says why, and fails
// rather than read the OS from the wrong disk.
func TestBootFailoverOtherLU(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the session's recovery timeout (60s)")
	}
	_, con, err := bootTwoControllers(t, func(*iscsitest.Target) iscsitest.Options {
		return iscsitest.Options{TPGT: 2, LUNs: []iscsitest.LUNOptions{{ID: 0, Size: 8 << 20, NAA: []byte{0x60, 1, 2, 3, 4, 5, 6, 7}}}}
	})
	text := con.text()
	if err == nil {
		t.Fatalf("Boot() = nil, want a failure; console:\n%s", text)
	}
	if !strings.Contains(text, "warning: not failing over to 10.0.2.3:3260") || !strings.Contains(text, "naa.6001020304050607") {
		t.Errorf("console does not say why 10.0.2.3 was refused:\n%s", text)
	}
}

// TestBootLinkWatch: carrier changes of the boot NIC reach the console
// with when they happened.
func TestBootLinkWatch(t *testing.T) {
	l := newLab(t, iscsitest.Options{})
	m := l.machine()
	m.WatchLink = func(ctx context.Context, nl netconf.Link, onChange func(bool)) error {
		onChange(false)
		onChange(true)
		<-ctx.Done()
		return nil
	}
	con := &recorder{}
	err := Boot(context.Background(), Options{
		Console: con, Cmdline: "netroot=iscsi:10.0.2.2::3260:0:" + testTarget,
		Sysfs: t.TempDir(), TempDir: t.TempDir(), NoExec: true, SkipModules: true, Machine: m,
	})
	if err != nil {
		t.Fatalf("Boot() = %v", err)
	}
	text := con.text()
	for _, want := range []string{"warning: link eth0: carrier lost at +", "link eth0: carrier back at +"} {
		if !strings.Contains(text, want) {
			t.Errorf("console lacks %q:\n%s", want, text)
		}
	}
}
