package bootflow

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// TestBootHostName: a root-path naming its server by host name is resolved
// through the network stage's DNS servers before the login, and the
// initramfs-tools OS gets the address.
func TestBootHostName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLab(t, iscsitest.Options{})
		m := l.machine()
		var asked []string
		m.Resolve = func(ctx context.Context, host string, servers []netip.Addr) ([]netip.Addr, error) {
			asked = append(asked, fmt.Sprint(host, " ", servers))
			if host == "target.lab" {
				return []netip.Addr{netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.0.2.2")}, nil
			}
			return nil, fmt.Errorf("resolve %s: %w (asked 10.0.2.3: no such host)", host, netconf.ErrNotResolved)
		}
		run := func(server string) (*recorder, error) {
			con := &recorder{}
			err := Boot(context.Background(), Options{
				Console: con, Cmdline: "netroot=iscsi:" + server + "::3260:0:" + testTarget,
				Sysfs: t.TempDir(), TempDir: t.TempDir(), SkipModules: true, Machine: m,
			})
			return con, err
		}
		con, err := run("target.lab")
		var se *StageError
		if !errors.As(err, &se) || se.Stage != "kexec" {
			t.Fatalf("Boot() = %v, want the fake jump's failure; console:\n%s", err, con.text())
		}
		if !slices.Equal(asked, []string{"target.lab [10.0.2.3]"}) {
			t.Errorf("resolved %q, want target.lab through the lease's DNS server 10.0.2.3", asked)
		}
		for _, want := range []string{"login: target.lab is 10.0.2.2 (DNS 10.0.2.3", "ok login: " + testTarget + " at 10.0.2.2:3260"} {
			if !strings.Contains(con.text(), want) {
				t.Errorf("console lacks %q:\n%s", want, con.text())
			}
		}
		if c := l.loaded.cmdline; !strings.Contains(c, "iscsi_target_ip=10.0.2.2 ") {
			t.Errorf("kexec command line = %q, want the address for initramfs-tools", c)
		}

		con, err = run("nosuch.lab")
		if !errors.As(err, &se) || se.Stage != "login" || !strings.Contains(err.Error(), `root-path server "nosuch.lab" (from kernel cmdline netroot)`) || !errors.Is(err, netconf.ErrNotResolved) {
			t.Errorf("Boot(nosuch.lab) = %v, want a login failure naming the root-path server and ErrNotResolved; console:\n%s", err, con.text())
		}
	})
}
