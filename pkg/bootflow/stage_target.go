package bootflow

import (
	"context"
	"fmt"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/netconf"
)

// target is stage 4: the three sources merged — command line, DHCP,
// firmware iBFT, defaults — into one validated configuration: the target
// (RFC 4173 root-path, parsed strictly), the initiator IQN, CHAP.
func (b *boot) target(ctx context.Context) (string, error) {
	n := bootcfg.Network{
		Interface: b.net.Link.Name,
		MAC:       b.net.Link.MAC,
		Lease:     b.net.Origin != netconf.OriginStatic,
	}
	switch b.net.Origin {
	case netconf.OriginDHCPv6:
		n.Mode = bootcfg.IPDHCP6
	case netconf.OriginSLAAC:
		n.Mode = bootcfg.IPAuto6
	}
	if n.Lease {
		n.Address, n.Router, n.DNS, n.Hostname = b.net.Address, b.net.Gateway, b.net.DNS, b.net.LeaseHostname
		n.RootPath, n.RootPathOption = b.net.RootPath.Value, b.net.RootPath.Source.Option()
		n.InitiatorName, n.InitiatorNameOption = b.net.InitiatorIQN.Value, b.net.InitiatorIQN.Source.Option()
	}
	cmd := b.cmdline
	if cmd.IPXEInitiator.IsSet() && n.Hostname == "" {
		// lunboot.initiator=ipxe without a host name from DHCP: iPXE
		// then used the SMBIOS system UUID.
		cmd.SystemUUID = bootcfg.ReadSystemUUID(b.o.Sysfs)
	}
	cfg, err := bootcfg.Merge(cmd, n.Source(), b.firmware)
	if err != nil {
		return "", permanent(withCheck(err, "give the target as DHCP option 17 or netroot=iscsi:<server>::<port>:<lun>:<target> (docs/configuration.md)"))
	}
	b.cfg = cfg
	for _, line := range cfg.Report() {
		b.o.Console.Info("  %s", line)
	}
	t := cfg.Target
	return fmt.Sprintf("%s LUN %s (Linux LUN %d) at %s as %s", t.Target, t.LUN, t.LUN.Linux(), t.Portal(), cfg.Initiator), nil
}
