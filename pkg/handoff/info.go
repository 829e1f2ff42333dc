package handoff

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Info is what the hand-off needs to know about the session lunboot used,
// so that the OS initrd can open the same one again.
type Info struct {
	// InitiatorName is the IQN lunboot logged in with; the OS must use the
	// same one or the target's ACL refuses it.
	InitiatorName string
	Target        Target
	// CHAP holds the credentials the target actually required, nil when it
	// required none. Its formatting (fmt, slog) masks the secrets.
	CHAP *iscsi.CHAP
	NIC  NIC
	// ISCSIParams are open-iscsi node parameters ("name=value", from
	// lunboot's rd.iscsi.param=) for the OS's initiator. dracut receives
	// them as rd.iscsi.param=; initramfs-tools has no way to take them
	// (Prepare notes that they are not passed).
	ISCSIParams []string
	// MorePaths are further portals to the same target and LUN (Addr and
	// TPGT; Name and LUN as Target's), the path in use being Target.
	// Prepare hands them on only to an initrd with dm-multipath, or when
	// Request.Multipath asks: two paths into an initrd without multipath
	// give the OS two disks with one file system UUID.
	MorePaths []Target
}

// Target is the iSCSI target and LUN that were booted from.
type Target struct {
	// Addr is the portal lunboot logged in to.
	Addr netip.AddrPort
	// Host is the host name the root-path gave for Addr's address, when
	// it gave one: initrds that resolve names get the name (see
	// dracutArgs), the others and the iBFT the address.
	Host string
	Name string
	// LUN is the boot LUN as SAM bytes; the OS sees it as LUN.Linux().
	LUN scsi.LUN
	// TPGT is the target portal group tag from the login response, 0 when
	// unknown (open-iscsi then assumes 1).
	TPGT uint16
}

// NIC is the network interface lunboot booted through, described in terms
// that survive the OS renaming it: MAC and PCI address.
type NIC struct {
	// Name is the firmware kernel's interface name, for messages only; the
	// OS names the NIC differently.
	Name string
	MAC  net.HardwareAddr
	// Driver is the kernel module bound to the NIC (virtio_net, e1000e…);
	// the OS initrd must carry it.
	Driver string
	// PCI is the NIC's PCI address, nil when it is not a PCI device.
	PCI *PCIAddr
	// Addr is the address and prefix length lunboot used.
	Addr     netip.Prefix
	Gateway  netip.Addr
	DNS      []netip.Addr
	Hostname string
	// HostnameGiven is set when Hostname was configured for this boot
	// (ip= on the command line) rather than learned from the lease: only
	// then does the OS's DHCP request carry it (ip=::::<name>::dhcp). A
	// name the server hands out it hands out again, and ip=dhcp stays
	// the form every OS initrd parses.
	HostnameGiven bool
	// DHCPServer is the server that gave the lease, when Origin is DHCP.
	DHCPServer netip.Addr
	// Origin says whether the address came from DHCP (the OS asks again)
	// or was configured statically (the OS reuses it).
	Origin ibft.Origin
	VLAN   uint16
}

// PCIAddr is a PCI function address.
type PCIAddr struct {
	Domain   uint16
	Bus      uint8
	Device   uint8
	Function uint8
}

// String formats the address as sysfs names PCI devices ("0000:00:03.0").
func (p PCIAddr) String() string {
	return fmt.Sprintf("%04x:%02x:%02x.%x", p.Domain, p.Bus, p.Device, p.Function)
}

// ErrInfo is wrapped by Info.Validate errors.
var ErrInfo = errors.New("handoff: incomplete session information")

// IPv6 reports whether the boot NIC was configured over IPv6 (DHCPv6,
// SLAAC or a static IPv6 address), which the OS initrd must then do too.
// An IPv6 portal alone does not count: an initrd that configures IPv4 may
// still reach it through the kernel's own autoconfiguration.
func (in *Info) IPv6() bool {
	a := in.NIC.Addr.Addr()
	return a.IsValid() && a.Is6() && !a.Is4In6()
}

// Validate checks that the hand-off has what every dialect needs.
func (in *Info) Validate() error {
	var missing []string
	if in.InitiatorName == "" {
		missing = append(missing, "initiator name")
	}
	if in.Target.Name == "" {
		missing = append(missing, "target name")
	}
	if !in.Target.Addr.Addr().IsValid() {
		missing = append(missing, "target address")
	}
	if len(in.NIC.MAC) != 6 {
		missing = append(missing, "NIC MAC address")
	}
	if in.NIC.Origin != ibft.OriginDHCP && !in.NIC.Addr.IsValid() {
		missing = append(missing, "NIC address (static configuration)")
	}
	if c := in.CHAP; c != nil {
		if c.Username == "" || c.Secret == "" {
			missing = append(missing, "CHAP user name and secret")
		}
		if (c.TargetUsername == "") != (c.TargetSecret == "") {
			missing = append(missing, "mutual CHAP target user name and secret (both or neither)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInfo, strings.Join(missing, ", "))
	}
	return nil
}

// Table builds the iBFT describing the session: one initiator, the boot
// NIC and the boot target, all flagged valid and boot-selected, CHAP
// credentials only when the target required them. The PCI address is
// stored only for PCI segment 0, the only one the table can name (Linux then
// has no device link and open-iscsi falls back to matching the MAC).
func (in *Info) Table() (*ibft.Table, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	nic := ibft.NIC{
		Flags:      ibft.FlagValid | ibft.FlagBoot,
		IP:         in.NIC.Addr,
		Origin:     in.NIC.Origin,
		Gateway:    in.NIC.Gateway,
		DHCPServer: in.NIC.DHCPServer,
		VLAN:       in.NIC.VLAN,
		MAC:        in.NIC.MAC,
		Hostname:   in.NIC.Hostname,
	}
	// iBFT 1.03 NIC flags bit 2: the address is global rather than
	// link-local. The prefix length is the address's own (Linux shows it
	// as prefix-len; dracut's ibft_to_cmdline writes ip=[addr/prefix]).
	// EDK2 sets this bit and the origin wrongly for IPv6 (edk2 issue
	// 9572); dracut turns origin 3 into ip=dhcp6 for an IPv6 address.
	if a := in.NIC.Addr.Addr(); a.IsValid() && !a.IsLinkLocalUnicast() {
		nic.Flags |= ibft.FlagGlobal
	}
	for i, d := range in.NIC.DNS {
		if i < len(nic.DNS) {
			nic.DNS[i] = d
		}
	}
	if p := in.NIC.PCI; p != nil && p.Domain == 0 {
		nic.PCI = ibft.BDF{Bus: p.Bus, Device: p.Device, Function: p.Function}
	}
	tgt := ibft.Target{
		Flags: ibft.FlagValid | ibft.FlagBoot,
		Addr:  in.Target.Addr,
		LUN:   in.Target.LUN,
		Name:  in.Target.Name,
	}
	if c := in.CHAP; c != nil {
		tgt.CHAPType = ibft.CHAPOneWay
		tgt.CHAPName, tgt.CHAPSecret = c.Username, c.Secret
		if c.Mutual() {
			tgt.CHAPType = ibft.CHAPMutual
			tgt.ReverseCHAPName, tgt.ReverseCHAPSecret = c.TargetUsername, c.TargetSecret
		}
	}
	targets := []ibft.Target{tgt}
	for _, p := range in.MorePaths {
		if len(targets) == ibft.MaxTargets {
			break
		}
		// The second slot: the same target and LUN through another
		// portal, valid but not the boot target (flag bit 1), as a
		// dual-path HBA ROM writes it; open-iscsi's firmware mode
		// reads every target structure of the table.
		t2 := tgt
		t2.Flags = ibft.FlagValid
		t2.Addr = p.Addr
		targets = append(targets, t2)
	}
	return &ibft.Table{
		Signature: ibft.SignatureACPI,
		Initiator: ibft.Initiator{Flags: ibft.FlagValid | ibft.FlagBoot, Name: in.InitiatorName},
		NICs:      []ibft.NIC{nic},
		Targets:   targets,
	}, nil
}
