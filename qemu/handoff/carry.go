package handoff

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lunboot/lunboot/qemu/distro/osproof"
)

// VerifyCarry checks the OS's proof of a carry-in boot (lunboot.handoff=
// carry): its root on a partition of nbd0, the NBD device lunboot's carried
// daemon serves from its iSCSI session (there is no kernel iSCSI session
// to show); root= as the machine's entry has it, and none of the iSCSI or
// network arguments an initrd would read for a root of its own; systemd at
// multi-user.
func (m *Machine) VerifyCarry(p *osproof.Proof) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if p.Root.Disk != "nbd0" || !strings.HasPrefix(p.Root.Device, "nbd0p") {
		bad("root is %s on %s (%s), want a partition of nbd0", p.Root.Device, p.Root.Disk, p.Root.Source)
	}
	if v, _ := p.Arg("root"); !strings.EqualFold(v, "UUID="+m.System.RootUUID) {
		bad("root=%s, want UUID=%s as the entry has it", v, m.System.RootUUID)
	}
	for _, k := range []string{"iscsi_target_name", "iscsi_auto", "netroot", "ip"} {
		if _, ok := p.Arg(k); ok {
			bad("the command line has %s=, which a carry-in hand-off does not give", k)
		}
	}
	if p.Systemd.MultiUser != "active" || p.Systemd.State != "running" && p.Systemd.State != "degraded" {
		bad("systemd: multi-user %q, state %q (failed %v)", p.Systemd.MultiUser, p.Systemd.State, p.Systemd.Failed)
	}
	if len(errs) > 0 {
		return errors.New("carry-in proof: " + strings.Join(errs, "; "))
	}
	return nil
}
