package lab

import (
	"context"
	"fmt"

	"github.com/lunboot/lunboot/qemu/probe"
)

// ProbeResult waits for the probe OS's result line on the console and
// decodes it. The returned match says when it arrived.
func (v *VM) ProbeResult(ctx context.Context) (*probe.Result, *Match, error) {
	m, err := v.Expect(ctx, probe.ResultPattern)
	if err != nil {
		return nil, nil, err
	}
	r, err := probe.DecodeResult(m.Groups[1])
	if err != nil {
		return nil, m, fmt.Errorf("qemu %s: %w (console log %s)", v.cfg.Name, err, v.conLog)
	}
	return r, m, nil
}
