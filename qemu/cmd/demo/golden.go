package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
)

// maxGolden bounds -golden: one lab tap and one QEMU guest per client.
const maxGolden = 4

// runGolden boots n clients at once from one golden LUN, read-only on the
// target, each with lunboot.overlay=ram (docs/handoff.md "Golden
// images"): the Debian disk with open-iscsi, so the overlay alone makes
// the hand-off carry-in. Each OS proves its root is nbd0 served by its
// carried daemon, writes its own marker and sees no other's; all power
// off and the golden LUN's checksum is unchanged.
func runGolden(ctx context.Context, o options, kernel, image string, n int) error {
	start := time.Now()
	set, err := distro.Build(ctx, distro.Options{NoBuild: true})
	if err != nil {
		if errors.Is(err, distro.ErrStale) {
			return fmt.Errorf("%w: run `make distro`", err)
		}
		return err
	}
	l, err := newLab(ctx, o, func(lo *lab.Options) { lo.Taps = n })
	if err != nil {
		return err
	}
	defer l.Close()
	fail := func(err error) error { return fmt.Errorf("%w\nlogs in %s", err, l.LogDir()) }
	consoles := make([]func(string), n)
	for i := range consoles {
		consoles[i] = o.console(fmt.Sprintf("client%d", i))
	}
	g, err := handoff.StartGolden(ctx, l, handoff.GoldenConfig{Kernel: kernel, Image: image, System: set.Debian,
		OnConsole: func(i int, line string) {
			if consoles[i] != nil {
				consoles[i](line)
			}
		}})
	if err != nil {
		return fail(err)
	}
	before, err := g.Checksum()
	if err != nil {
		return fail(err)
	}
	args := strings.TrimSpace("lunboot.overlay=ram " + o.appendArgs)
	fmt.Fprintf(o.stdout, "== golden image %s, read-only LUN 1 of %s on %s (SHA-256 %s…)\n== powering on %d clients at once, each with %q\n",
		set.Debian.Disk, g.Export.IQN, g.Export.Portal, before[:16], n, args)
	var ms []*handoff.Machine
	for i := 0; i < n; i++ {
		m, err := g.Client(ctx, i, args, "")
		if err != nil {
			return fail(err)
		}
		defer m.Kill()
		ms = append(ms, m)
	}
	var proofs []string
	var shells []*handoff.Shell
	for i, m := range ms {
		if err := m.WaitJump(ctx, jumpTimeout); err != nil {
			return fail(fmt.Errorf("client %d: %w", i, err))
		}
		res, err := m.WaitOS(ctx, osTimeout, true)
		if err != nil {
			return fail(fmt.Errorf("client %d: the OS did not report in: %w", i, err))
		}
		if err := m.VerifyCarry(res.Proof); err != nil {
			return fail(fmt.Errorf("client %d booted, but: %w", i, err))
		}
		if l := handoff.GoldenDaemonLine.FindString(m.Console()); l == "" {
			return fail(fmt.Errorf("client %d: no golden-image line from the carried daemon on its console", i))
		}
		proofs = append(proofs, fmt.Sprintf("client %d (proof at +%s): %s", i, round(res.ProofAt), res.ProofLine))
		sh, err := m.Login(ctx)
		if err != nil {
			return fail(fmt.Errorf("client %d: %w", i, err))
		}
		shells = append(shells, sh)
	}
	var seen []string
	for i, sh := range shells {
		if _, err := sh.Run(ctx, fmt.Sprintf("echo golden-marker-%d > /root/marker-%d && sync", i, i), time.Minute); err != nil {
			return fail(fmt.Errorf("client %d: %w", i, err))
		}
	}
	for i, sh := range shells {
		out, err := sh.Run(ctx, `cat /sys/block/nbd0/backend; cat /root/marker-* 2>/dev/null | tr '\n' ' '; echo; systemctl is-enabled iscsid.service open-iscsi.service 2>&1 | tr '\n' ' '`, time.Minute)
		if err != nil {
			return fail(fmt.Errorf("client %d: %w", i, err))
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || strings.TrimSpace(lines[1]) != fmt.Sprintf("golden-marker-%d", i) {
			return fail(fmt.Errorf("client %d sees markers %q, want only its own golden-marker-%d", i, out, i))
		}
		if !strings.Contains(lines[2], "masked") {
			return fail(fmt.Errorf("client %d: the OS's iSCSI units are not masked: %q", i, lines[2]))
		}
		seen = append(seen, fmt.Sprintf("client %d: nbd0 backend %s, markers seen: %s, iscsid/open-iscsi: %s", i, lines[0], lines[1], lines[2]))
	}
	for _, m := range ms {
		m.Send("poweroff\n")
	}
	for i, m := range ms {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err := m.Wait(wctx)
		cancel()
		if err != nil && !m.Exited() {
			return fail(fmt.Errorf("client %d did not power off: %w", i, err))
		}
	}
	sessions, err := g.Target.Sessions(g.Export.TID)
	if err != nil {
		return fail(err)
	}
	after, err := g.Checksum()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(o.stdout, "\n== summary\n")
	for _, p := range proofs {
		fmt.Fprintf(o.stdout, "%s\n", p)
	}
	for _, s := range seen {
		fmt.Fprintf(o.stdout, "%s\n", s)
	}
	fmt.Fprintf(o.stdout, "after power-off: %d sessions on the target; golden SHA-256 before %s…, after %s…\n", sessions, before[:16], after[:16])
	if after != before {
		return fail(errors.New("the golden LUN changed"))
	}
	if sessions != 0 {
		return fail(fmt.Errorf("%d sessions left on the target after the clients' shutdown", sessions))
	}
	fmt.Fprintf(o.stdout, "\n== done in %s: %d clients booted at once from one read-only golden LUN with RAM overlays, each saw only its own writes, the golden LUN is unchanged\n",
		round(time.Since(start)), n)
	return nil
}
