package derive_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/qemu/distro"
	"github.com/lunboot/lunboot/qemu/distro/derive"
	"github.com/lunboot/lunboot/qemu/distro/distrotest"
)

// TestVariants derives each variant from the noiscsi disk (or reuses the
// cached one) and reads its root back with debugfs: what the variant
// removed or compressed is so, and the rest of the module tree is there.
func TestVariants(t *testing.T) {
	testenv.RequireBinaries(t, derive.Tools...)
	set := distrotest.Systems(t)
	log := slog.New(slog.NewTextHandler(tlog{t}, nil))
	for _, tt := range []struct {
		v          derive.Variant
		cmd        string // a debugfs request on the root
		want, lack []string
	}{
		{derive.NoNBD, "cat /lib/modules/%s/modules.dep", []string{"kernel/drivers/net/virtio_net.ko:"}, []string{"nbd.ko"}},
		{derive.NoModuleTree, "ls /lib/modules", []string{"%s.hidden"}, []string{"%s  "}},
		{derive.XZModules, "cat /lib/modules/%s/modules.dep", []string{"kernel/drivers/block/nbd.ko.xz:", "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz"}, []string{".ko:"}},
	} {
		t.Run(tt.v.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			sys, err := derive.Build(ctx, set.NoISCSI, tt.v, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s (built %s in %s)", sys.Name, sys.Disk, sys.Built.Format(time.RFC3339), sys.BuildTime)
			off := rootOffset(t, sys)
			rel := sys.KernelRelease
			out, err := exec.Command("debugfs", "-R", strings.ReplaceAll(tt.cmd, "%s", rel), fmt.Sprintf("%s?offset=%d", sys.Disk, off)).Output()
			if err != nil {
				t.Fatalf("debugfs %s: %v", tt.cmd, err)
			}
			s := string(out)
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "%s", rel); !strings.Contains(s, w) {
					t.Errorf("%s: %q lacks %q", tt.v.Name, tt.cmd, w)
				}
			}
			for _, l := range tt.lack {
				if l = strings.ReplaceAll(l, "%s", rel); strings.Contains(s, l) {
					t.Errorf("%s: %q still has %q", tt.v.Name, tt.cmd, l)
				}
			}
		})
	}
}

// rootOffset is the root partition's offset (the second, after boot).
func rootOffset(t *testing.T, sys *distro.System) int64 {
	out, err := exec.Command("sfdisk", "-d", sys.Disk).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, `name="root"`) {
			var start int64
			if i := strings.Index(l, "start="); i >= 0 {
				fmt.Sscanf(strings.TrimSpace(l[i+len("start="):]), "%d", &start)
				return start * 512
			}
		}
	}
	t.Fatalf("no root partition in %s", sys.Disk)
	return 0
}

type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Logf("%s", p); return len(p), nil }

// TestDracutNoISCSI derives the dracut disk without iSCSI (or reuses the
// cached one) and inspects its initrd as lunboot does: still a dracut
// initrd, which cannot log in (no dracut iscsi module, iscsiadm, iscsid,
// iscsi_tcp), and the copy on the disk's boot partition is the host's copy.
func TestDracutNoISCSI(t *testing.T) {
	testenv.RequireBinaries(t, derive.Tools...)
	set := distrotest.Systems(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	sys, err := derive.Build(ctx, set.Dracut, derive.DracutNoISCSI, slog.New(slog.NewTextHandler(tlog{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s, initrd %s (built in %s)", sys.Name, sys.Disk, sys.Initrd, sys.BuildTime)
	data, err := os.ReadFile(sys.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	in, err := handoff.Inspect(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if in.Generator != handoff.GeneratorDracut || sys.ISCSI {
		t.Errorf("generator %s, manifest iscsi %v; want dracut, false", in.Generator, sys.ISCSI)
	}
	capa := in.Check(handoff.Requirements{NICModule: "virtio_net", KernelVersion: sys.KernelRelease})
	var miss []string
	for _, it := range capa.Missing() {
		miss = append(miss, it.Name)
	}
	if got := strings.Join(miss, ", "); got != "dracut iscsi module, iscsiadm, iscsid, iscsi_tcp kernel module" {
		t.Errorf("the derived initrd misses %q, want the dracut iscsi module, iscsiadm, iscsid, iscsi_tcp", got)
	}
	var boot int64
	out, err := exec.Command("sfdisk", "-d", sys.Disk).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if i := strings.Index(l, "start="); i >= 0 && strings.Contains(l, `name="boot"`) {
			fmt.Sscanf(strings.TrimSpace(l[i+len("start="):]), "%d", &boot)
		}
	}
	onDisk, err := exec.Command("debugfs", "-R", "cat /"+filepath.Base(sys.Initrd), fmt.Sprintf("%s?offset=%d", sys.Disk, boot*512)).Output()
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Errorf("the boot partition's initrd (%d bytes, %v) is not the host's copy (%d bytes)", len(onDisk), err, len(data))
	}
}
