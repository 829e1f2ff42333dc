package bootflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/netconf"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// resolveTarget looks the root-path's host name up through the DNS
// servers the network stage configured (command line first, then the
// lease's option 6), A and AAAA records both, and picks an address of the
// boot NIC's family (RFC 4173 §5 allows a host name as <servername>).
func (b *boot) resolveTarget(ctx context.Context) (netip.Addr, error) {
	t := b.cfg.Target
	servers := b.net.DNS
	from := b.cfg.Origin(bootcfg.FieldTarget)
	if len(servers) == 0 {
		return netip.Addr{}, permanent(withCheck(fmt.Errorf("root-path server %q (from %s) is a host name, but no DNS server is known", t.Server, from),
			"give a DNS server (DHCP option 6, nameserver=, or ip=…:<dns0>), or write the portal's address in the root-path"))
	}
	addrs, err := b.m.Resolve(ctx, t.Server, servers)
	if err != nil {
		return netip.Addr{}, withCheck(fmt.Errorf("root-path server %q (from %s): %w", t.Server, from, err),
			"check that the DNS server (%s) has an A or AAAA record for %s, or write the portal's address in the root-path", b.cfg.Origin(bootcfg.FieldDNS), t.Server)
	}
	a := netconf.PickAddr(addrs, b.net.Address.Addr())
	b.resolved = netip.AddrPortFrom(a, t.Port)
	b.o.Console.Info("login: %s is %s (DNS %s; all: %v)", t.Server, a, servers[0], addrs)
	return a, nil
}

// login is stage 5: the iSCSI login, then a check that the LUN exists
// (REPORT LUNS) and can be opened as a disk.
func (b *boot) login(ctx context.Context) (string, error) {
	if b.disk != nil { // retry: drop the previous attempt's session
		b.disk.Close()
		b.disk = nil
	}
	if b.session != nil {
		b.session.Close()
		b.session = nil
	}
	t := b.cfg.Target
	portal := t.Portal()
	if !t.Addr.IsValid() {
		a, err := b.resolveTarget(ctx)
		if err != nil {
			return "", err
		}
		portal = netip.AddrPortFrom(a, t.Port).String()
	}
	ic := iscsi.Config{
		Portal:        portal,
		TargetName:    t.Target,
		InitiatorName: b.cfg.Initiator,
		ISID:          b.isid,
		// lunboot.*_digest=crc32c is negotiated as CRC32C alone: a target
		// that refuses it fails the login (iscsi.DigestError).
		HeaderDigest: b.cfg.HeaderDigest.Policy(),
		DataDigest:   b.cfg.DataDigest.Policy(),
		Logger:       b.log,
		Dial:         b.m.Dial,
		// Issue 14: commands in flight are re-issued once; a command
		// lost again fails the boot step instead of looping until the
		// recovery timeout (the carried daemon leaves this at 0).
		MaxReissues: 1,
	}
	if c := b.cfg.CHAP; c.Enabled() {
		ic.CHAP = &c
	}
	for _, p := range b.cfg.Portals {
		a, err := iscsi.ParseTargetAddress(p)
		if err != nil {
			return "", permanent(fmt.Errorf("failover portal %q: %w", p, err))
		}
		ic.Failover = append(ic.Failover, a)
	}
	lu := &luIdentity{}
	ic.VerifyPath = lu.verify(t.LUN)
	ic.OnPath = b.onPath
	b.o.Console.Info("login: connecting to %s, up to %s", ic.Portal, cmp.Or(ic.LoginTimeout, iscsi.DefaultLoginTimeout))
	s, err := iscsi.Login(ctx, ic)
	if err != nil {
		return "", loginFailed(err, ic)
	}
	b.session = s
	info := s.Info()

	luns, err := scsi.ReportLUNs(ctx, s, scsi.LUN{})
	if err != nil {
		return "", fmt.Errorf("REPORT LUNS on %s: %w", t.Target, err)
	}
	if !slices.Contains(luns, t.LUN) {
		return "", permanent(withCheck(
			fmt.Errorf("LUN %s (Linux LUN %d) does not exist on %s; the target has %s", t.LUN, t.LUN.Linux(), t.Target, sam.FormatLUNs(luns)),
			"%s", advice.MissingLUN(advice.Cmdline)))
	}
	disk, err := scsi.OpenDisk(ctx, s, t.LUN, scsi.DiskOptions{Logger: b.log})
	if err != nil {
		return "", permanent(withCheck(fmt.Errorf("opening LUN %s: %w", t.LUN, err), "%s", advice.OpenDisk(err, advice.Cmdline)))
	}
	b.disk = disk
	// The logical unit's identity, which a failover portal must show
	// too, and the portals the target itself reports.
	if err := lu.remember(ctx, s, t.LUN); err != nil {
		b.log.Warn("failover disabled: the logical unit cannot be identified", "err", err)
	}
	b.discoverPortals(ctx, ic, s)
	inq := disk.Inquiry()
	auth := "no CHAP"
	if info.CHAP != iscsi.CHAPNone {
		auth = fmt.Sprintf("%s CHAP (%s)", info.CHAP, info.CHAPAlgorithm)
	}
	digests := "no digests"
	if info.HeaderDigest || info.DataDigest {
		digests = fmt.Sprintf("digests header=%v data=%v", info.HeaderDigest, info.DataDigest)
	}
	return fmt.Sprintf("%s at %s (%s, %s); LUN %s: %s %s, %s, %d-byte blocks",
		t.Target, info.Portal, auth, digests, t.LUN,
		strings.TrimSpace(inq.Vendor), strings.TrimSpace(inq.Product), bytesize.Format(disk.Size()), disk.BlockSize()), nil
}

// loginFailed adds the operator advice (pkg/advice, in kernel command-line
// terms) to a login failure and classifies it: errors the target states
// about us (authentication, authorisation, unknown target) and a digest
// the target refuses are permanent — retrying with the same settings
// cannot help — while a portal that does not answer is worth retrying (a
// target still booting).
func loginFailed(err error, ic iscsi.Config) error {
	var de *iscsi.DigestError
	if check := advice.Login(err, ic, advice.Cmdline); check != "" {
		err = withCheck(err, "%s", check)
	}
	if errors.Is(err, iscsi.ErrAuthenticationFailed) || errors.Is(err, iscsi.ErrAuthorizationFailed) ||
		errors.Is(err, iscsi.ErrTargetNotFound) || errors.As(err, &de) {
		return permanent(err)
	}
	return err
}
