package bootflow

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/overlay"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// goldenImage prepares the hand-off of a golden image (lunboot.overlay=,
// docs/handoff.md "Golden images"): the overlay is served by lunboot's
// carried daemon, so the hand-off is carry-in even when the OS's initrd
// could log in itself, and an explicit other hand-off is refused. The
// image's file systems are checked for what every client would share
// (handoff.GoldenWarnings): warnings on the console, not refusals.
func (b *boot) goldenImage(ctx context.Context, req *handoff.Request, parts []fs.FS) error {
	switch req.Mode {
	case handoff.ModeAuto, handoff.ModeCarry:
		req.Mode = handoff.ModeCarry
	default:
		return permanent(withCheck(fmt.Errorf("lunboot.overlay=%s is served by lunboot's carried daemon, but lunboot.handoff=%s asks for the OS's own initiator", b.cfg.Overlay, req.Mode),
			"drop lunboot.handoff= (or set lunboot.handoff=carry) to boot the golden image with an overlay, or drop lunboot.overlay= to boot the LUN itself"))
	}
	// initramfs-tools' open-iscsi script (scripts/local-top/iscsi) logs in
	// by itself when the initrd bakes etc/iscsi.initramfs with
	// ISCSI_AUTO (iBFT) or ISCSI_TARGET_NAME, and carry keeps that script
	// in ORDER after lunboot's hook: the golden LUN would appear a second
	// time, read-write, beside the overlay. The command line cannot
	// switch ISCSI_AUTO off, so the image must not bake it.
	if in := req.Initrd; in != nil {
		if v := in.ISCSIConf; v["ISCSI_AUTO"] != "" || v["ISCSI_TARGET_NAME"] != "" {
			return permanent(withCheck(fmt.Errorf("lunboot.overlay=%s: the OS initrd bakes etc/iscsi.initramfs (ISCSI_AUTO=%q ISCSI_TARGET_NAME=%q), so its own open-iscsi would log in to the golden LUN beside the overlay, read-write",
				b.cfg.Overlay, v["ISCSI_AUTO"], v["ISCSI_TARGET_NAME"]), "%s", advice.GoldenInitrdISCSI()))
		}
	}
	if b.cfg.Overlay.Kind == handoff.OverlayLUN {
		if err := b.checkOverlayLUN(ctx); err != nil {
			return err
		}
	}
	what := "writes in this client's RAM (size " + b.cfg.OverlaySize + "), gone at power-off"
	if b.cfg.Overlay.Kind == handoff.OverlayLUN {
		what = fmt.Sprintf("writes on LUN %x of the target, kept across boots", b.cfg.Overlay.LUN)
	}
	b.o.Console.Info("  golden image: LUN opened read-only by the carried daemon, %s; hand-off carry", what)
	for _, w := range handoff.GoldenWarnings(parts) {
		b.o.Console.Info("warning: %s", w)
	}
	return nil
}

// checkOverlayLUN runs the carried daemon's checks of the overlay LUN
// (overlay.Check: there, a blank LUN large enough, or one made against
// this golden LUN by this client) before kexec, read-only, so that a
// missing, small or foreign overlay LUN stops the boot here with what to
// do rather than in the OS's initrd. The daemon checks again at login.
func (b *boot) checkOverlayLUN(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ov := b.cfg.Overlay
	name := fmt.Sprintf("%x", ov.LUN)
	req := overlay.Header{ChunkSize: overlay.LUNChunk, GoldenSize: uint64(b.disk.Size()), GoldenBlockSize: uint32(b.disk.BlockSize())}
	refuse := func(err error) error {
		return permanent(withCheck(fmt.Errorf("lunboot.overlay=%s: overlay LUN %s: %w", ov, name, err), "%s", advice.Overlay(err, name, req.RequiredSize())))
	}
	id, err := scsi.LogicalUnitIdentity(ctx, b.session, b.disk.LUN())
	if err != nil {
		return refuse(fmt.Errorf("the golden LUN's identity (VPD page 0x83), which the overlay records: %w", err))
	}
	disk, err := scsi.OpenDisk(ctx, b.session, sam.LUNFromLinux(ov.LUN), scsi.DiskOptions{Logger: b.log, ReadOnly: true})
	if err != nil {
		return refuse(err)
	}
	defer disk.Close()
	if err := overlay.Check(overlay.Golden{Disk: b.disk, Identity: id, Initiator: b.cfg.Initiator}, disk); err != nil {
		return refuse(err)
	}
	b.o.Console.Info("  overlay LUN %s: %s, fit for this golden LUN (%s)", name, bytesize.Format(disk.Size()), id)
	return nil
}
