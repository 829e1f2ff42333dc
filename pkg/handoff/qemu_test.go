package handoff

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/internal/proc"
	"github.com/lunboot/lunboot/internal/qemuvm"
	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// TestIBFTInRealKernel boots the Debian kernel in QEMU (internal/qemuvm,
// in a machine-wide guest slot) with an initrd made
// of EarlyCPIO(table) followed by a tiny init (internal/ibftguest) and the
// iscsi_boot_sysfs and iscsi_ibft modules, and checks that the kernel
// installed the table ("ACPI: Table Upgrade: install [IBFT…]"), that
// iscsi_ibft accepted it, and that ibft.ReadSysfs and ibft.ReadACPI give
// back what was encoded, PCI device link and LUN quirk included.
func TestIBFTInRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG; skipped with -short")
	}
	qemu := testenv.RequireBinaries(t, "qemu-system-x86_64", "go")
	kdir := testenv.KernelDir()
	kernels, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		testenv.Missing(t, "no Debian kernel in "+kdir+" (make deps)")
	}
	var mods []string
	for _, m := range []string{"drivers/scsi/iscsi_boot_sysfs.ko", "drivers/firmware/iscsi_ibft.ko"} {
		found, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*", "kernel", m))
		if len(found) == 0 {
			testenv.Missing(t, "kernel module "+m+" not in "+kdir)
		}
		mods = append(mods, found[0])
	}

	tmp := t.TempDir()
	initBin := filepath.Join(tmp, "init")
	build := exec.Command(qemu[1], "build", "-o", initBin, "./internal/ibftguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOAMD64=v1", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ibftguest: %v\n%s", err, out)
	}

	// The session: static address, mutual CHAP, a flat-addressed LUN whose
	// sysfs form is ambiguous, the NIC at PCI 00:03.0 as QEMU places it.
	info := staticInfo()
	info.Target.LUN = scsi.LUN{0x40, 0x01}
	info.CHAP = &iscsi.CHAP{Username: "alice", Secret: "s3cret-s3cret", TargetUsername: "tgt", TargetSecret: "t4rget-secret"}
	tbl, err := info.Table()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tbl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	files := []tfile{dir("modules"), {name: "init", mode: modeRegular | 0o755, data: mustRead(t, initBin)}}
	for i, m := range mods {
		files = append(files, file(filepath.Join("modules", string(rune('0'+i))+"-"+filepath.Base(m)), mustRead(t, m)))
	}
	osInitrd := compress(t, CompressionGzip, cpioOf(files...))
	c, err := PrependInitrd(EarlyCPIO(raw), bytes.NewReader(osInitrd), int64(len(osInitrd)))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "initrd")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// The NIC has no backend: the guest needs only the PCI device the
	// table's NIC names.
	testenv.GuestSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out testenv.SyncBuffer
	err = qemuvm.Run(ctx, qemuvm.Config{
		Binary: qemu[0], Memory: "512", CPUs: 1,
		NICs:   []qemuvm.NIC{{MAC: info.NIC.MAC, Slot: 3}},
		Kernel: kernels[0], Initrd: img, Cmdline: "console=ttyS0 panic=-1 loglevel=6",
	}, proc.IO{Stdout: &out, Stderr: &out})
	console := out.String()
	if err != nil || !strings.Contains(console, "IBFTGUEST-DONE") {
		t.Fatalf("QEMU: %v (context %v); console:\n%s", err, ctx.Err(), tail(console, 4000))
	}
	if strings.Contains(console, "IBFTGUEST-ERROR") {
		t.Fatalf("guest error; console:\n%s", tail(console, 4000))
	}

	var klog []string
	guestJSON(t, console, "IBFTGUEST-KLOG", &klog)
	t.Logf("guest kernel: %s", strings.Join(klog, " | "))
	if !strings.Contains(strings.Join(klog, "\n"), "Table Upgrade: install [IBFT-LUNBOT-LUNBOOT") {
		t.Errorf("kernel log %q, want \"ACPI: Table Upgrade: install [IBFT-LUNBOT-LUNBOOT …]\"", klog)
	}

	want := *tbl
	want.OEMID, want.OEMTableID = "LUNBOT", "LUNBOOT"
	var fromACPI ibft.Table
	guestJSON(t, console, "IBFTGUEST-ACPI", &fromACPI)
	wantACPI := want
	wantACPI.CreatorID = "LNBT"
	if diff := cmp.Diff(&wantACPI, &fromACPI, addrOpts...); diff != "" {
		t.Errorf("ReadACPI in the guest (-want +got):\n%s", diff)
	}
	var fromSysfs ibft.Table
	guestJSON(t, console, "IBFTGUEST-SYSFS", &fromSysfs)
	if diff := cmp.Diff(&want, &fromSysfs, addrOpts...); diff != "" {
		t.Errorf("ReadSysfs in the guest (-want +got):\n%s", diff)
	}

	// The kernel's own formatting, which the fake trees in pkg/ibft imitate.
	var attrs map[string]string
	guestJSON(t, console, "IBFTGUEST-FILES", &attrs)
	for p, v := range map[string]string{
		"/sys/firmware/ibft/target0/lun":                  "401000000\n",
		"/sys/firmware/ibft/target0/rev-chap-name-secret": "t4rget-secret\n",
		"/sys/firmware/ibft/ethernet0/subnet-mask":        "255.255.255.0",
		"/sys/firmware/ibft/ethernet0/mac":                "52:54:00:12:34:56\n",
		"/sys/firmware/ibft/acpi_header/signature":        "IBFT\n",
		"/sys/firmware/ibft/initiator/initiator-name":     info.InitiatorName + "\n",
	} {
		if got := attrs[p]; got != v {
			t.Errorf("%s = %q, want %q", p, got, v)
		}
	}
	if l := attrs["/sys/firmware/ibft/ethernet0/device"]; !strings.HasSuffix(l, "/0000:00:03.0") {
		t.Errorf("ethernet0/device -> %q, want the PCI device 0000:00:03.0", l)
	}
}

var addrOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// guestJSON decodes the JSON the guest printed after marker.
func guestJSON(t *testing.T, console, marker string, v any) {
	t.Helper()
	for _, line := range strings.Split(console, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), marker+": "); ok {
			if err := json.Unmarshal([]byte(rest), v); err != nil {
				t.Fatalf("%s: %v in %q", marker, err, rest)
			}
			return
		}
	}
	t.Fatalf("no %s line on the console", marker)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
