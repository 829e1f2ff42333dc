package bootflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

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
	ic := iscsi.Config{
		Portal:        t.Portal(),
		TargetName:    t.Target,
		InitiatorName: b.cfg.Initiator,
		ISID:          b.isid,
		HeaderDigest:  b.cfg.HeaderDigest == bootcfg.DigestCRC32C || b.cfg.HeaderDigest == bootcfg.DigestPrefer,
		DataDigest:    b.cfg.DataDigest == bootcfg.DigestCRC32C || b.cfg.DataDigest == bootcfg.DigestPrefer,
		Logger:        b.log,
		Dial:          b.m.Dial,
	}
	if c := b.cfg.CHAP; c.Enabled() {
		ic.CHAP = &iscsi.CHAP{Username: c.Username, Secret: c.Password,
			TargetUsername: c.ReverseUsername, TargetSecret: c.ReversePassword}
	}
	b.o.Console.Info("login: connecting to %s, up to %s", ic.Portal, orDefault(ic.LoginTimeout, iscsi.DefaultLoginTimeout))
	s, err := iscsi.Login(ctx, ic)
	if err != nil {
		return "", loginAdvice(err, ic)
	}
	b.session = s
	info := s.Info()
	if b.cfg.HeaderDigest == bootcfg.DigestCRC32C && !info.HeaderDigest ||
		b.cfg.DataDigest == bootcfg.DigestCRC32C && !info.DataDigest {
		return "", permanent(withCheck(errors.New("the target refused CRC32C digests, which lunboot.header_digest/data_digest=crc32c require"),
			"enable digests on the target, or use =prefer"))
	}

	luns, err := scsi.ReportLUNs(ctx, s, scsi.LUN{})
	if err != nil {
		return "", fmt.Errorf("REPORT LUNS on %s: %w", t.Target, err)
	}
	if !containsLUN(luns, t.LUN) {
		return "", permanent(withCheck(
			fmt.Errorf("LUN %s (Linux LUN %d) does not exist on %s; the target has %s", t.LUN, t.LUN.Linux(), t.Target, lunList(luns)),
			"the root-path's LUN field is hexadecimal (RFC 4173): LUN 10 is written \"a\"; fix the root-path or the target's LUN mapping"))
	}
	disk, err := scsi.OpenDisk(ctx, s, t.LUN, scsi.DiskOptions{Logger: b.log})
	if err != nil {
		return "", permanent(withCheck(fmt.Errorf("opening LUN %s: %w", t.LUN, err), "the LUN must be a disk (direct-access device) that is ready"))
	}
	b.disk = disk
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
		strings.TrimSpace(inq.Vendor), strings.TrimSpace(inq.Product), humanBytes(disk.Size()), disk.BlockSize()), nil
}

// loginAdvice classifies a login failure: errors the target states about
// us (authentication, authorisation, unknown target) are permanent — retrying
// with the same settings cannot help — and a portal that does not answer is
// worth retrying (a target still booting).
func loginAdvice(err error, ic iscsi.Config) error {
	var le *iscsi.LoginError
	switch {
	case errors.Is(err, iscsi.ErrAuthenticationFailed):
		return permanent(withCheck(err, "check the CHAP user name and secret (rd.iscsi.username and rd.iscsi.password, or user:secret@ in netroot or lunboot.target) against the target's account; with mutual CHAP also the target's own (rd.iscsi.in.username and rd.iscsi.in.password)"))
	case errors.Is(err, iscsi.ErrAuthorizationFailed):
		return permanent(withCheck(err, "allow initiator %s in the target's ACL (the default name is derived from the NIC's MAC, docs/configuration.md)", ic.InitiatorName))
	case errors.Is(err, iscsi.ErrTargetNotFound):
		return permanent(withCheck(err, "check the target name %q: `lunboot discover %s` lists what the portal offers", ic.TargetName, ic.Portal))
	case errors.As(err, &le):
		return withCheck(err, "the target refused the login (status %02x/%02x); see its log", le.Class, le.Detail)
	case errors.Is(err, syscall.ECONNREFUSED):
		return withCheck(err, "nothing listens on %s: is the iSCSI target running, on that address and port?", ic.Portal)
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return withCheck(err, "portal %s is unreachable: check the address, the route (gateway) and firewalls", ic.Portal)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func containsLUN(luns []scsi.LUN, l scsi.LUN) bool {
	for _, x := range luns {
		if x == l {
			return true
		}
	}
	return false
}

// lunList formats LUNs both ways, since users mix up hex and decimal.
func lunList(luns []scsi.LUN) string {
	if len(luns) == 0 {
		return "no LUNs"
	}
	parts := make([]string, len(luns))
	for i, l := range luns {
		parts[i] = fmt.Sprintf("%s (Linux %d)", l, l.Linux())
	}
	return "LUNs " + strings.Join(parts, ", ")
}
