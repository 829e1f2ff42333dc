package bootflow

import (
	"context"
	"errors"
	"fmt"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/nbd"
)

// attach is stage 6: the LUN as /dev/nbdN, served by this process.
func (b *boot) attach(ctx context.Context) (string, error) {
	d, err := b.m.AttachNBD(ctx, b.disk, nbd.AttachOptions{Index: 0, Logger: b.log, Backend: "lunboot:" + b.cfg.Target.Target})
	if err != nil {
		if errors.Is(err, nbd.ErrModuleNotLoaded) {
			return "", withCheck(err, "the image must carry nbd.ko (lunboot modules lists what loaded), or the kernel needs CONFIG_BLK_DEV_NBD")
		}
		return "", err
	}
	b.nbd = d
	parts := d.Partitions()
	return fmt.Sprintf("%s (%s, %s)", d.Path(), bytesize.Format(b.disk.Size()), plural(len(parts), "partition", "partitions")), nil
}
