package handoff

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/lab"
)

// GoldenConfig describes a golden image served to several clients at
// once (lunboot.overlay=, docs/handoff.md "Golden images").
type GoldenConfig struct {
	// Kernel and Image are lunboot's boot image.
	Kernel, Image string
	// System is the golden disk, exported read-only as LUN 1 of one tgtd.
	System *distro.System
	// OverlayLUNs adds this many blank writable LUNs (2, 3, …) after the
	// golden one, each large enough to be a client's lun: overlay.
	OverlayLUNs int
	// OverlayBytes is their size; 0 means the golden disk's size plus
	// 64 MiB (header and map need far less).
	OverlayBytes int64
	// OnConsole receives each console line of client i.
	OnConsole func(client int, line string)
}

// Golden is a golden image exported read-only, with DHCP naming it for
// every client of the lab (one tap per client).
type Golden struct {
	Target *lab.Target
	Export *lab.Export
	System *distro.System
	cfg    GoldenConfig
	lab    *lab.Lab
}

// StartGolden exports cfg.System read-only from a new tgtd on l, with
// cfg.OverlayLUNs blank writable LUNs after it, and starts DHCP whose
// option 17 names the golden LUN. Clients are started with Client.
func StartGolden(ctx context.Context, l *lab.Lab, cfg GoldenConfig) (*Golden, error) {
	if cfg.System == nil {
		return nil, errors.New("handoff: GoldenConfig.System is required")
	}
	tg, err := l.StartTarget(ctx, lab.TargetOptions{})
	if err != nil {
		return nil, err
	}
	spec := lab.ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:golden-" + cfg.System.Name, Images: []string{cfg.System.Disk}, ImagesReadOnly: true}
	if cfg.OverlayLUNs > 0 {
		size := cfg.OverlayBytes
		if size == 0 {
			st, err := os.Stat(cfg.System.Disk)
			if err != nil {
				return nil, err
			}
			size = st.Size() + 64<<20
		}
		for i := 0; i < cfg.OverlayLUNs; i++ {
			spec.Sizes = append(spec.Sizes, size)
		}
	}
	exp, err := tg.Export(spec)
	if err != nil {
		return nil, fmt.Errorf("exporting the golden image %s: %w", cfg.System.Disk, err)
	}
	if _, err := l.StartDHCP(ctx, lab.DHCPConfig{RootPath: exp.RootPath()}); err != nil {
		return nil, err
	}
	return &Golden{Target: tg, Export: exp, System: cfg.System, cfg: cfg, lab: l}, nil
}

// Client powers on client i (on the lab's tap i, so with its own MAC,
// address and initiator name) booting the golden image through lunboot
// with args; suffix names a later power-on's logs.
func (g *Golden) Client(ctx context.Context, i int, args, suffix string) (*Machine, error) {
	if i >= len(g.lab.Taps()) {
		return nil, fmt.Errorf("handoff: golden client %d needs a lab with %d taps (lab.Options.Taps)", i, i+1)
	}
	cfg := Config{Kernel: g.cfg.Kernel, Image: g.cfg.Image, System: g.System, Args: args, Name: fmt.Sprintf("client%d", i)}
	if g.cfg.OnConsole != nil {
		cfg.OnConsole = func(line string) { g.cfg.OnConsole(i, line) }
	}
	vc := vmConfig(cfg, suffix)
	vc.NICs = []lab.NIC{{Tap: i}}
	vm, err := g.lab.StartVM(ctx, vc)
	if err != nil {
		return nil, err
	}
	return &Machine{VM: vm, Target: g.Target, Export: g.Export, System: g.System, Cmdline: vc.Cmdline, RootPath: g.Export.RootPath(), lab: g.lab}, nil
}

// Checksum is the SHA-256 of the golden LUN's backing file.
func (g *Golden) Checksum() (string, error) {
	f, err := os.Open(g.Export.LUNs[0])
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum of the golden LUN %s: %w", g.Export.LUNs[0], err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// Golden-image lines on the consoles.
var (
	// GoldenFirmwareLine is lunboot's console line choosing the overlay.
	GoldenFirmwareLine = regexp.MustCompile(`golden image: LUN opened read-only by the carried daemon, [^\n]*`)
	// GoldenDaemonLine is the carried daemon's overlay line in the OS's
	// kernel log.
	GoldenDaemonLine = regexp.MustCompile(`lunboot-carry: .*msg="golden image: (?:RAM overlay|overlay LUN)"[^\n]*`)
	// GoldenMaskedLine says the OS's iSCSI units were masked.
	GoldenMaskedLine = regexp.MustCompile(`lunboot-carry: .*msg="golden image: the OS's iSCSI units are masked[^\n]*`)
)
