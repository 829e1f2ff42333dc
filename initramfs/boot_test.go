package initramfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// withUinitArgs returns a copy of image with a small uncompressed cpio
// appended that replaces /etc/uinit.flags. u-root's init starts /bin/uinit
// with `uroot.uinitargs=` from the kernel command line *followed by* the
// flags file (cmds/core/init/init_linux.go), so the command line can only
// prepend to the image's "boot"; a later archive, which the kernel unpacks
// over the earlier one (init/initramfs.c), replaces it instead.
func withUinitArgs(t *testing.T, image string, args ...string) string {
	t.Helper()
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, a := range args {
		flags = append(flags, `"`+a+`"`) // u-root's flag file quoting, for these plain words
	}
	var ov bytes.Buffer
	w := cpio.Newc.Writer(&ov)
	if err := cpio.WriteRecords(w, []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/uinit.flags", strings.Join(flags, "\n"), 0o444),
	}); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	// The kernel looks for the next archive at a 4-byte boundary; an xz
	// stream's length is a multiple of 4.
	if len(b)%4 != 0 {
		t.Fatalf("%s is %d bytes, not a multiple of 4: not an xz stream?", image, len(b))
	}
	p := filepath.Join(t.TempDir(), "initrd")
	if err := os.WriteFile(p, append(b, ov.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImageModules boots `make image`'s kernel and image in QEMU with the
// uinit switched to `lunboot modules`: every module the list resolves to
// must load, virtio_net must bind the guest's NIC, and the shell must
// start after the uinit.
func TestImageModules(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU under TCG (minutes); skipped with -short")
	}
	kernel, image := labtest.Image(t)
	// One module at a time, as the boot does: under TCG with two vCPUs,
	// parallel inserts measured 7x slower (each insert's text patching
	// synchronises all CPUs), and real hardware gains little. -all: every
	// module of the image, also the drivers for NICs this guest lacks,
	// which the boot (lunboot.modules=hardware) would leave out.
	initrd := withUinitArgs(t, image, "modules", "-all")

	testenv.GuestSlot(t)
	l := labtest.Start(t, lab.Options{Name: "image-modules"})
	// "-- -test" passes -test to u-root's init: no controlling tty and
	// no per-command ttyS0 writers. With them, when the uinit (the tty's
	// session leader) exits, the kernel hangs up the tty's open files
	// (disassociate_ctty, drivers/tty/tty_jobctrl.c): init's copy of the
	// uinit's last output can be lost and the shell's output is. Files
	// opened through /dev/console survive, and that is what -test uses.
	vm := labtest.VM(t, l, lab.VMConfig{
		Kernel:  kernel,
		Initrd:  initrd,
		Cmdline: "console=ttyS0 quiet panic=-1 nbd.nbds_max=2 -- -test",
	})

	// Generous bounds: TCG on a shared two-core machine. They guard
	// against a hang; they are not speed targets.
	initAt := labtest.Expect(t, vm, 3*time.Minute, regexp.MustCompile(`Welcome to u-root!`)).At
	table := labtest.Expect(t, vm, 3*time.Minute, regexp.MustCompile(`(?s)MODULE +RESULT +TIME +DETAIL\n(.*?)\nmodules: ([^\n]*)\n`))
	rows := map[string][]string{}
	var order []string
	for _, line := range strings.Split(table.Groups[1], "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		rows[f[0]] = f[1:]
		order = append(order, f[0])
	}
	t.Logf("u-root init at +%s; modules table at +%s: %s", initAt.Round(time.Millisecond), table.At.Round(time.Millisecond), table.Groups[2])

	for _, name := range []string{"virtio_pci", "virtio_net", "nbd", "ext4", "vfat", "xfs", "crc32c_generic"} {
		if r := rows[name]; len(r) == 0 || r[0] != "loaded" {
			t.Errorf("module %s: %q, want loaded", name, r)
		}
	}
	if r := rows["nbd"]; !strings.Contains(strings.Join(r, " "), "[nbds_max=2]") {
		t.Errorf("module nbd row %q does not show nbds_max=2 from the kernel command line", r)
	}
	for name, r := range rows {
		if r[0] == "failed" || r[0] == "skipped" {
			t.Errorf("module %s: %q", name, r)
		}
	}
	// The table is the list resolved against the kernel, in that order.
	if kdir := testenv.KernelDir(); fileExists(kdir) {
		f, err := os.Open("modules.txt")
		if err != nil {
			t.Fatal(err)
		}
		list, err := depmod.ReadList(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		mods, err := depmod.Resolve(kdir, list)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range mods {
			if !m.Builtin {
				want = append(want, m.Name)
			}
		}
		if strings.Join(order, " ") != strings.Join(want, " ") {
			t.Errorf("modules in the image:\n  %s\nwant modules.txt resolved against %s:\n  %s\n(stale image? run make image)", order, kdir, want)
		}
	}

	// After the uinit, init starts the shell; virtio_net has bound the
	// guest's NIC. One line for both commands: the shell loses a line
	// typed while a command runs.
	labtest.Expect(t, vm, time.Minute, regexp.MustCompile(`\$ `))
	if err := vm.Send("ls /sys/class/net; shutdown halt\n"); err != nil {
		t.Fatal(err)
	}
	labtest.Expect(t, vm, time.Minute, regexp.MustCompile(`eth0\s+lo\s`))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("QEMU did not exit after shutdown: %v", err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
