//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/scsi"
	"github.com/lunboot/lunboot/qemu/probe"
)

// DefaultInitiator is the name the probe logs in with when a hand-off names
// none (initramfs-tools would use the initiatorname.iscsi baked into the
// initrd; the probe has none).
const DefaultInitiator = "iqn.2026-11.org.lunboot:probe"

// login proves a hand-off: log in with exactly what it carries, find the
// LUN, read sector 0, log out.
func login(ctx context.Context, s *state, h probe.Handoff) (l probe.Login) {
	start := time.Now()
	l = probe.Login{Source: h.Source, Portal: h.Portal, Target: h.Target, Initiator: h.Initiator, CHAP: h.CHAPMode()}
	defer func() { l.Seconds = time.Since(start).Seconds() }()
	fail := func(format string, args ...any) probe.Login {
		l.Error = fmt.Sprintf(format, args...)
		s.logf("login %s: FAILED: %s", h.Source, l.Error)
		return l
	}
	if h.Portal == "" || h.Target == "" {
		return fail("hand-off incomplete (portal %q, target %q): %v", h.Portal, h.Target, h.Warnings)
	}
	if l.Initiator == "" {
		l.Initiator, l.InitiatorDefaulted = DefaultInitiator, true
	}
	cfg := iscsi.Config{
		Portal:          h.Portal,
		TargetName:      h.Target,
		InitiatorName:   l.Initiator,
		LoginTimeout:    15 * time.Second,
		RecoveryTimeout: -1, // a proof, not a boot: fail rather than retry
	}
	if secret, rsecret := h.Secrets(); h.CHAPUser != "" || secret != "" {
		cfg.CHAP = &iscsi.CHAP{Username: h.CHAPUser, Secret: secret, TargetUsername: h.ReverseUser, TargetSecret: rsecret}
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sess, err := iscsi.Login(lctx, cfg)
	if err != nil {
		return fail("login: %v", err)
	}
	defer sess.Close()
	s.logf("login %s: logged in to %s at %s as %s (chap %s)", h.Source, h.Target, h.Portal, l.Initiator, l.CHAP)

	luns, err := scsi.ReportLUNs(lctx, sess, scsi.LUN{})
	if err != nil {
		s.logf("login %s: REPORT LUNS: %v", h.Source, err)
	}
	for _, n := range luns {
		l.LUNs = append(l.LUNs, n.String())
	}
	disk, scanned, err := openLUN(lctx, sess, h, luns)
	if err != nil {
		lerr := sess.Logout(lctx)
		l.LoggedOut = lerr == nil
		return fail("%v", err)
	}
	l.LUN, l.LUNScanned = disk.LUN().String(), scanned
	l.BlockSize = disk.BlockSize()
	c := disk.Capacity()
	l.Blocks = c.Blocks()
	sector := make([]byte, 512)
	if _, err := disk.ReadAt(sector, 0); err != nil {
		disk.Close()
		lerr := sess.Logout(lctx)
		l.LoggedOut = lerr == nil
		return fail("read sector 0 of LUN %s: %v", l.LUN, err)
	}
	disk.Close()
	sum := sha256.Sum256(sector)
	l.Sector0SHA256 = hex.EncodeToString(sum[:])
	l.BootSignature = sector[510] == 0x55 && sector[511] == 0xaa
	if err := sess.Logout(lctx); err != nil {
		s.logf("login %s: logout: %v", h.Source, err)
	} else {
		l.LoggedOut = true
	}
	l.OK = true
	s.logf("login %s: ok: LUN %s, %d blocks of %d bytes, sector 0 sha256 %s, boot signature %v, logged out %v",
		h.Source, l.LUN, l.Blocks, l.BlockSize, l.Sector0SHA256, l.BootSignature, l.LoggedOut)
	return l
}

// openLUN opens the hand-off's LUN. When the hand-off names none, or its
// LUN is not a disk (dracut's default LUN 0 is tgtd's controller), it takes
// the first disk the target reports: the OS logs in to the whole target and
// the Linux SCSI scan finds every LUN, so that is the disk it would boot.
func openLUN(ctx context.Context, sess *iscsi.Session, h probe.Handoff, luns []scsi.LUN) (*scsi.Disk, bool, error) {
	var errs []error
	if h.LUN != "" {
		lun, err := rootpath.ParseLUN(h.LUN)
		if err != nil {
			return nil, false, fmt.Errorf("hand-off LUN: %w", err)
		}
		d, err := scsi.OpenDisk(ctx, sess, lun, scsi.DiskOptions{ReadOnly: true})
		if err == nil {
			return d, false, nil
		}
		errs = append(errs, fmt.Errorf("hand-off LUN %s (Linux %d): %w", lun, lun.Linux(), err))
	}
	for _, lun := range luns {
		if h.LUN != "" && lun.String() == h.LUN {
			continue
		}
		d, err := scsi.OpenDisk(ctx, sess, lun, scsi.DiskOptions{ReadOnly: true})
		if err == nil {
			return d, true, nil
		}
		errs = append(errs, fmt.Errorf("LUN %s: %w", lun, err))
	}
	if len(luns) == 0 {
		errs = append(errs, errors.New("the target reports no LUNs"))
	}
	return nil, false, fmt.Errorf("no disk LUN: %w", errors.Join(errs...))
}
