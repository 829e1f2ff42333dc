package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/blockdev"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/overlay"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Golden images (lunboot.overlay=, docs/handoff.md "Golden images"): the
// carried daemon opens the OS's LUN read-only and serves the OS an
// overlay of it (pkg/overlay), and masks the OS's own iSCSI units so they
// never log in to the golden target.

// openOverlay returns the device the daemon serves for settings s with
// overlay ov over golden (opened read-only): a RAM overlay of the
// configured size, or the overlay LUN, checked against the golden LUN;
// and the function that closes the overlay LUN's disk (nothing for RAM).
func openOverlay(ctx context.Context, log *slog.Logger, ex scsi.Executor, s *handoff.CarrySettings, ov handoff.Overlay, golden *scsi.Disk) (*overlay.Device, func() error, error) {
	o := overlay.Options{Logger: log}
	if ov.Kind == handoff.OverlayRAM {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err != nil {
			return nil, nil, fmt.Errorf("overlay: the OS's memory: %w", err)
		}
		mem := int64(si.Totalram) * int64(si.Unit)
		size, err := handoff.OverlayBytes(s.OverlaySize, mem)
		if err != nil {
			return nil, nil, err
		}
		d, err := overlay.NewRAM(golden, size, o)
		if err != nil {
			return nil, nil, err
		}
		log.Info("golden image: RAM overlay", "overlay", d.String(), "golden_lun", s.LUN, "memory", mem>>20, "size_option", cmpOr(s.OverlaySize, handoff.DefaultOverlaySize+" (default)"))
		return d, func() error { return nil }, nil
	}
	lun := sam.LUNFromLinux(s.LUN)
	id, err := scsi.LogicalUnitIdentity(ctx, ex, lun)
	if err != nil {
		return nil, nil, fmt.Errorf("overlay: the golden LUN's identity (VPD page 0x83), which the overlay LUN records: %w", err)
	}
	h := overlay.Header{ChunkSize: overlay.LUNChunk, GoldenSize: uint64(golden.Size()), GoldenBlockSize: uint32(golden.BlockSize())}
	name := fmt.Sprintf("%x", ov.LUN)
	ovDisk, err := scsi.OpenDisk(ctx, ex, sam.LUNFromLinux(ov.LUN), scsi.DiskOptions{Logger: log, Timeout: 30 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("overlay LUN %s: %w; %s", name, err, advice.Overlay(err, name, h.RequiredSize()))
	}
	d, formatted, err := overlay.OpenLUN(overlay.Golden{Disk: golden, Identity: id, Initiator: s.Initiator}, ovDisk, o)
	if err != nil {
		ovDisk.Close()
		return nil, nil, fmt.Errorf("overlay LUN %s: %w; %s", name, err, advice.Overlay(err, name, h.RequiredSize()))
	}
	used, _ := d.Usage()
	log.Info("golden image: overlay LUN", "overlay_lun", name, "formatted", formatted, "chunks_copied", used,
		"golden_lun", s.LUN, "golden", id.String(), "size", ovDisk.Size())
	return d, ovDisk.Close, nil
}

// openServed opens the LUN the daemon serves: the LUN itself, or with an
// overlay the LUN read-only (every write refused before it reaches the
// target) under the overlay, with the OS's iSCSI units masked.
func openServed(ctx context.Context, log *slog.Logger, ex scsi.Executor, s *handoff.CarrySettings, opts scsi.DiskOptions) (blockdev.Device, func(), error) {
	ov, err := handoff.ParseOverlay(s.Overlay)
	if err != nil {
		return nil, nil, err
	}
	opts.ReadOnly = ov.Kind != handoff.OverlayNone
	disk, err := scsi.OpenDisk(ctx, ex, sam.LUNFromLinux(s.LUN), opts)
	if err != nil {
		return nil, nil, fmt.Errorf("open LUN %d of %s: %w", s.LUN, s.Target, err)
	}
	if ov.Kind == handoff.OverlayNone {
		return disk, func() { disk.Close() }, nil
	}
	d, closeOverlay, err := openOverlay(ctx, log, ex, s, ov, disk)
	if err != nil {
		disk.Close()
		return nil, nil, err
	}
	// The OS's own initiator must not log in to the golden target: its
	// LUN would appear beside the overlay with the same file-system
	// UUIDs, and read-write.
	if err := handoff.MaskUnits("/run", handoff.OSInitiatorUnits); err != nil {
		log.Warn("golden image: masking the OS's iSCSI units", "err", err)
	} else {
		log.Info("golden image: the OS's iSCSI units are masked for this boot", "dirs", "/run/systemd/system.control, /run/systemd/system")
	}
	return d, func() { closeOverlayDevice(log, d, closeOverlay, disk.Close) }, nil
}

// closeOverlayDevice ends the service of overlay d: it flushes d (the
// overlay LUN's writes and map reach stable storage even if the OS did
// not flush last), then closes the overlay LUN's disk, then the golden
// disk. Errors are logged: at shutdown there is no one else to tell.
func closeOverlayDevice(log *slog.Logger, d *overlay.Device, closeOverlay, closeGolden func() error) {
	used, capacity := d.Usage()
	log.Info("golden image: overlay at shutdown", "overlay", d.String(), "chunks_used", used, "chunks_capacity", capacity)
	if err := d.Flush(); err != nil {
		log.Warn("golden image: flushing the overlay at shutdown", "overlay", d.String(), "err", err)
	}
	if err := closeOverlay(); err != nil {
		log.Warn("golden image: closing the overlay LUN", "err", err)
	}
	if err := closeGolden(); err != nil {
		log.Warn("golden image: closing the golden LUN", "err", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
