package bootflow

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// TestOverlayLUNChecked: a lun: overlay is checked in the firmware stage,
// over the real session to an in-process target, before kexec: a missing
// or small overlay LUN stops the boot with the size it needs, a blank one
// of the right size passes, and nothing is written to either LUN.
func TestOverlayLUNChecked(t *testing.T) {
	const golden = 4 << 20
	tg := iscsitest.NewTarget(iscsitest.Options{LUNs: []iscsitest.LUNOptions{
		{ID: 0, Size: golden, ReadOnly: true},
		{ID: 1, Size: golden}, // smaller than golden + header + map
		{ID: 2, Size: golden + 1<<20},
	}})
	addr, err := tg.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	ap := netip.MustParseAddrPort(addr)
	rp, err := rootpath.New(ap.Addr().String(), ap.Port(), scsi.LUN{}, tg.Name())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	b := &boot{o: Options{Console: rec}, log: slog.New(slog.DiscardHandler), cfg: bootcfg.Config{
		Target: rp, Initiator: "iqn.2026-11.org.lunboot:525400123456",
		HeaderDigest: bootcfg.DigestNone, DataDigest: bootcfg.DigestNone, OverlaySize: handoff.DefaultOverlaySize,
	}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := b.login(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.disk.Close(); b.session.Close() })

	for _, tc := range []struct {
		lun     uint64
		refused string
		check   string
	}{
		{3, "LUN", "create the overlay LUN 3"},
		{1, "smaller than it must be", "at least 4202496 bytes"},
		{2, "", ""},
	} {
		b.cfg.Overlay = handoff.Overlay{Kind: handoff.OverlayLUN, LUN: tc.lun}
		req := handoff.Request{Mode: handoff.ModeAuto}
		err := b.goldenImage(ctx, &req, nil)
		if tc.refused == "" {
			if err != nil || req.Mode != handoff.ModeCarry {
				t.Errorf("overlay LUN %d: %v, mode %v; want accepted, carry", tc.lun, err, req.Mode)
			}
			continue
		}
		var ce *checkError
		if err == nil || !strings.Contains(err.Error(), tc.refused) || !errors.As(err, &ce) || !strings.Contains(ce.check, tc.check) {
			t.Errorf("overlay LUN %d: %v; want a refusal with %q and advice %q", tc.lun, err, tc.refused, tc.check)
		} else {
			t.Logf("overlay LUN %d refused: %v (check: %s)", tc.lun, err, ce.check)
		}
	}
	for _, id := range []int{1, 2} {
		d := make([]byte, 8192)
		tg.LUN(id).ReadAt(d, 0)
		if strings.Trim(string(d), "\x00") != "" {
			t.Errorf("LUN %d was written by the check", id)
		}
	}
	// An OS initrd that bakes etc/iscsi.initramfs would log in to the
	// golden LUN itself: refused before kexec, for either overlay.
	for _, conf := range []map[string]string{{"ISCSI_AUTO": "true"}, {"ISCSI_TARGET_NAME": tg.Name()}} {
		for _, ov := range []handoff.Overlay{{Kind: handoff.OverlayRAM}, {Kind: handoff.OverlayLUN, LUN: 2}} {
			b.cfg.Overlay = ov
			req := handoff.Request{Mode: handoff.ModeAuto, Initrd: &handoff.Initrd{ISCSIConf: conf}}
			err := b.goldenImage(ctx, &req, nil)
			var ce *checkError
			if err == nil || !strings.Contains(err.Error(), "etc/iscsi.initramfs") || !errors.As(err, &ce) || !strings.Contains(ce.check, "update-initramfs -u") {
				t.Errorf("overlay %s, initrd baking %v: %v; want a refusal with advice", ov, conf, err)
			}
		}
	}
	// Without the baked conf the same initrd passes.
	b.cfg.Overlay = handoff.Overlay{Kind: handoff.OverlayRAM}
	if err := b.goldenImage(ctx, &handoff.Request{Mode: handoff.ModeAuto, Initrd: &handoff.Initrd{ISCSIConf: map[string]string{}}}, nil); err != nil {
		t.Errorf("overlay ram, initrd without etc/iscsi.initramfs: %v", err)
	}
	// An explicit other hand-off with an overlay is refused.
	b.cfg.Overlay = handoff.Overlay{Kind: handoff.OverlayRAM}
	req := handoff.Request{Mode: handoff.ModeIBFT}
	if err := b.goldenImage(ctx, &req, nil); err == nil || !strings.Contains(err.Error(), "lunboot.handoff=ibft") {
		t.Errorf("overlay with lunboot.handoff=ibft = %v, want a refusal", err)
	}
}
