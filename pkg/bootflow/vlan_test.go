package bootflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// TestBootVLAN: vlan=<name>:<parent> with ip=<name>:dhcp reaches the
// network stage as a VLAN on the parent, the hand-off carries it (dracut
// is not the test initrd's dialect: initramfs-tools is refused, saying
// why), and a parent that does not exist is named.
func TestBootVLAN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		m := l.machine()
		real := m.Network
		var got []string
		m.Network = func(ctx context.Context, o netconf.Options) (*netconf.Config, error) {
			got = append(got, fmt.Sprintf("select %q vlan %+v", o.Select.Name, *o.VLAN))
			if o.Select.Name != "eth0" {
				return nil, fmt.Errorf("netconf: VLAN %d parent: %w named %s; interfaces present: lo, eth0", o.VLAN.ID, netconf.ErrNoLinks, o.Select.Name)
			}
			c, err := real(ctx, o)
			if c != nil {
				c.Link.Name, c.Link.VLAN, c.Link.Parent = o.VLAN.Name, o.VLAN.ID, "eth0"
			}
			return c, err
		}
		run := func(args string) (*recorder, error) {
			con := &recorder{}
			err := Boot(context.Background(), Options{
				Console: con, Cmdline: "netroot=iscsi:10.0.2.2::3260:0:" + testTarget + " " + args,
				Sysfs: t.TempDir(), TempDir: t.TempDir(), SkipModules: true, Machine: m,
			})
			return con, err
		}
		con, err := run("vlan=eth0.100:eth0 ip=eth0.100:dhcp")
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "handoff" || !strings.Contains(err.Error(), "klibc's ipconfig has no VLANs") {
			t.Errorf("Boot() = %v, want the initramfs-tools hand-off refused over a VLAN; console:\n%s", err, con.text())
		}
		if len(got) != 1 || got[0] != `select "eth0" vlan {ID:100 Name:eth0.100}` {
			t.Errorf("network stage got %q, want VLAN 100 named eth0.100 on eth0", got)
		}
		for _, want := range []string{"vlan 100 (eth0.100 on eth0) (from kernel cmdline vlan)", "ok network: eth0.100 (52:54:00:12:34:56, virtio_net) VLAN 100 on eth0 10.0.2.15/24"} {
			if !strings.Contains(con.text(), want) {
				t.Errorf("console lacks %q:\n%s", want, con.text())
			}
		}

		got = nil
		con, err = run("vlan=eth9.100:eth9 ip=eth9.100:dhcp")
		if !errors.As(err, &se) || se.Stage != "network" || !strings.Contains(err.Error(), "kernel cmdline vlan: parent interface eth9 of VLAN eth9.100") {
			t.Errorf("Boot() with parent eth9 = %v, want the network stage to name the missing parent; console:\n%s", err, con.text())
		}
		if len(got) != 1 {
			t.Errorf("network stage tried %d times, want once (a missing parent is not retried)", len(got))
		}
	})
}
