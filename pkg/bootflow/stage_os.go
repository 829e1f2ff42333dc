package bootflow

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/osfind"
)

// findOS is stage 7: the LUN's partitions mounted read-only, their boot
// entries read, one chosen (lunboot.entry=, or the menu, or the default).
func (b *boot) findOS(ctx context.Context) (string, error) {
	b.loadFileSystems(ctx, b.nbd.Path())
	f, err := b.m.FindOS(ctx, b.log, b.nbd.Path())
	if err != nil {
		return "", err
	}
	b.found = f
	if len(f.Entries) == 0 {
		return "", permanent(withCheck(fmt.Errorf("%w on %s:\n%s", osfind.ErrNoEntries, b.nbd.Path(), f.Summary()),
			"the LUN needs a boot partition with BLS entries (loader/entries/*.conf), a unified kernel image in EFI/Linux/, a GRUB grub.cfg or a syslinux.cfg naming a Linux kernel"))
	}
	sel := b.cfg.Entry
	if b.cfg.MenuTimeout > 0 && b.o.Menu != nil && sel == "" {
		sel = b.menu(ctx, f)
	}
	e, err := f.Choose(sel)
	if err != nil {
		return "", permanent(withCheck(err, "fix lunboot.entry= (a title, a unique part of one, an id, or a number from the list)"))
	}
	b.entry = e
	via := ""
	if e.Via != "" {
		via = " via " + e.Via
	}
	return fmt.Sprintf("%s entry %q on %s%s (%s found)", e.Format, e.Label, e.Device, via, plural(len(f.Entries), "entry", "entries")), nil
}

// menu shows the entries and waits lunboot.menu_timeout= for a choice on
// the console; no answer boots the default.
func (b *boot) menu(ctx context.Context, f *osfind.Found) string {
	b.o.Console.Info("boot menu (default 0, %s to choose):\n%s", b.cfg.MenuTimeout, f.List())
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(b.o.Menu).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(b.cfg.MenuTimeout):
		return ""
	case <-ctx.Done():
		return ""
	}
}
