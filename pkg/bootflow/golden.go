package bootflow

import (
	"fmt"
	"io/fs"

	"github.com/lunboot/lunboot/pkg/handoff"
)

// goldenImage prepares the hand-off of a golden image (lunboot.overlay=,
// docs/handoff.md "Golden images"): the overlay is served by lunboot's
// carried daemon, so the hand-off is carry-in even when the OS's initrd
// could log in itself, and an explicit other hand-off is refused. The
// image's file systems are checked for what every client would share
// (handoff.GoldenWarnings): warnings on the console, not refusals.
func (b *boot) goldenImage(req *handoff.Request, parts []fs.FS) error {
	switch req.Mode {
	case handoff.ModeAuto, handoff.ModeCarry:
		req.Mode = handoff.ModeCarry
	default:
		return permanent(withCheck(fmt.Errorf("lunboot.overlay=%s is served by lunboot's carried daemon, but lunboot.handoff=%s asks for the OS's own initiator", b.cfg.Overlay, req.Mode),
			"drop lunboot.handoff= (or set lunboot.handoff=carry) to boot the golden image with an overlay, or drop lunboot.overlay= to boot the LUN itself"))
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
