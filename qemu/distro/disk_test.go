package distro

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/testenv"
)

func TestRootSize(t *testing.T) {
	for _, tc := range []struct {
		used, want int64
	}{
		{0, 2048 * mib},
		{740 * mib, 2048 * mib},
		{1365 * mib, 2048 * mib},
		{1366 * mib, 2304 * mib},
		{3000 * mib, 4608 * mib},
	} {
		if got := rootSize(tc.used); got != tc.want {
			t.Errorf("rootSize(%d MiB) = %d MiB, want %d MiB", tc.used>>20, got>>20, tc.want>>20)
		}
	}
}

func TestLayout(t *testing.T) {
	l := newLayout(900 * mib)
	want := layout{BootStart: 1 * mib, BootSize: 256 * mib, RootStart: 257 * mib, RootSize: 2048 * mib, Total: 2306 * mib}
	if l != want {
		t.Errorf("newLayout(900 MiB) = %+v, want %+v", l, want)
	}
	if l.BootStart%mib != 0 || l.RootStart%mib != 0 {
		t.Errorf("newLayout: partitions not 1 MiB aligned: %+v", l)
	}
}

// sfdiskDump is the part of `sfdisk --json` the test reads.
type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		Partitions []struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// extract copies a partition out of the image for the e2fsprogs tools.
func extract(t *testing.T, img string, start, size int64) string {
	t.Helper()
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, start, size)); err != nil {
		t.Fatal(err)
	}
	return p
}

func blkid(t *testing.T, dev string) map[string]string {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "export", dev).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", dev, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func debugfs(t *testing.T, dev, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, dev).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v", req, dev, err)
	}
	return string(out)
}

// TestAssemble builds a disk from two small trees the way Build does and
// reads it back with independent tools: sfdisk for the table, blkid for
// the file systems' identities, debugfs for contents and ownership.
func TestAssemble(t *testing.T) {
	testenv.RequireBinaries(t, "sfdisk", "mkfs.ext4", "blkid", "debugfs")
	dir := t.TempDir()
	boot, root := filepath.Join(dir, "boot"), filepath.Join(dir, "root")
	cfg := testConfig(t, NameDebian)
	for _, d := range []string{boot, filepath.Join(root, "boot"), filepath.Join(root, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(boot, "vmlinuz-"+testRelease), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(boot, bootFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(root, rootFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	wantOwner := os.Getuid()
	if os.Geteuid() == 0 {
		// Owners must survive into the image (mkfs.ext4 -d copies them).
		wantOwner = 4321
		if err := os.Chown(filepath.Join(root, "etc/hostname"), wantOwner, wantOwner); err != nil {
			t.Fatal(err)
		}
	}
	// Small partitions keep the test quick; newLayout's sizes are checked
	// by TestLayout.
	l := layout{BootStart: firstLBA * sectorSize, BootSize: 32 * mib, RootStart: firstLBA*sectorSize + 32*mib, RootSize: 64 * mib}
	l.Total = l.RootStart + l.RootSize + gptTail
	id := idsFor(NameDebian)
	img := filepath.Join(dir, "disk.img")
	r := &runner{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.assemble(ctx, img, boot, root, l, id); err != nil {
		t.Fatalf("assemble: %v", err)
	}

	info, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != l.Total {
		t.Errorf("image size = %d, want %d", info.Size(), l.Total)
	}
	if a, _ := allocated(img); a > l.Total/2 {
		t.Errorf("image occupies %d MiB of %d MiB, want it sparse", a>>20, l.Total>>20)
	}

	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var dump sfdiskDump
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("sfdisk --json output: %v", err)
	}
	pt := dump.PartitionTable
	if pt.Label != "gpt" || !strings.EqualFold(pt.ID, id.Disk) || len(pt.Partitions) != 2 {
		t.Fatalf("partition table = %+v, want gpt %s with 2 partitions", pt, id.Disk)
	}
	for i, want := range []struct {
		start, size int64
		typ, uuid   string
		name        string
	}{
		{l.BootStart, l.BootSize, gptXBOOTLDR, id.BootPart, "boot"},
		{l.RootStart, l.RootSize, gptRootX8664, id.RootPart, "root"},
	} {
		p := pt.Partitions[i]
		if p.Start*sectorSize != want.start || p.Size*sectorSize != want.size || !strings.EqualFold(p.Type, want.typ) ||
			!strings.EqualFold(p.UUID, want.uuid) || p.Name != want.name {
			t.Errorf("partition %d = %+v, want start %d size %d type %s uuid %s name %s", i+1, p,
				want.start/sectorSize, want.size/sectorSize, want.typ, want.uuid, want.name)
		}
	}

	bootPart := extract(t, img, l.BootStart, l.BootSize)
	rootPart := extract(t, img, l.RootStart, l.RootSize)
	for _, tc := range []struct {
		dev, label, uuid string
	}{{bootPart, "boot", id.Boot}, {rootPart, "root", id.Root}} {
		b := blkid(t, tc.dev)
		if b["TYPE"] != "ext4" || b["LABEL"] != tc.label || b["UUID"] != tc.uuid {
			t.Errorf("blkid(%s partition) = %v, want ext4 %s %s", tc.label, b, tc.label, tc.uuid)
		}
	}
	entry := debugfs(t, bootPart, "cat /loader/entries/"+blsEntryID(testRelease)+".conf")
	if !strings.Contains(entry, "options root=UUID="+id.Root+" rw console=ttyS0,115200\n") {
		t.Errorf("BLS entry in the image = %q, want the root=UUID= options line", entry)
	}
	if fstab := debugfs(t, rootPart, "cat /etc/fstab"); !strings.Contains(fstab, "UUID="+id.Boot+"\t/boot") {
		t.Errorf("fstab in the image = %q, want /boot by UUID %s", fstab, id.Boot)
	}
	stat := debugfs(t, rootPart, "stat /etc/hostname")
	if !regexp.MustCompile(`User:\s+` + strconv.Itoa(wantOwner) + `\s`).MatchString(stat) {
		t.Errorf("debugfs stat /etc/hostname = %q, want owner %d", stat, wantOwner)
	}
	if ls := debugfs(t, rootPart, "ls -l /boot"); strings.Contains(ls, "vmlinuz") {
		t.Errorf("root partition /boot = %q, want an empty mount point", ls)
	}
}

// TestAssembleUEFI builds a LayoutUEFI disk from small trees and reads it
// back: the table (ESP first), the ESP's FAT volume ID and stub (mtype),
// the root's UUID and grub.cfg.
func TestAssembleUEFI(t *testing.T) {
	testenv.RequireBinaries(t, "sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mtype", "blkid", "debugfs")
	dir := t.TempDir()
	esp, root := filepath.Join(dir, "esp"), filepath.Join(dir, "root")
	cfg := testConfig(t, NameDebianUEFI)
	cfg.Layout = LayoutUEFI
	if err := writeFiles(esp, espFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	if err := writeFiles(root, append(rootFiles(cfg), uefiRootFiles(cfg)...)); err != nil {
		t.Fatal(err)
	}
	l := newUEFILayout(0)
	l.RootSize = 64 * mib
	l.Total = l.RootStart + l.RootSize + gptTail
	id := cfg.IDs
	img := filepath.Join(dir, "disk.img")
	r := &runner{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.assembleUEFI(ctx, img, esp, root, l, id); err != nil {
		t.Fatalf("assembleUEFI: %v", err)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var dump sfdiskDump
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("sfdisk --json output: %v", err)
	}
	pt := dump.PartitionTable
	if len(pt.Partitions) != 2 || !strings.EqualFold(pt.Partitions[0].Type, gptESP) || !strings.EqualFold(pt.Partitions[1].Type, gptLinuxFS) ||
		pt.Partitions[0].Start*sectorSize != l.BootStart || pt.Partitions[1].Start*sectorSize != l.RootStart {
		t.Fatalf("partition table = %+v, want the ESP at %d then a Linux file system at %d", pt, l.BootStart, l.RootStart)
	}
	espPart := extract(t, img, l.BootStart, l.BootSize)
	if b := blkid(t, espPart); b["TYPE"] != "vfat" || b["UUID"] != id.ESP {
		t.Errorf("blkid(ESP) = %v, want vfat with UUID %s", b, id.ESP)
	}
	stubText, err := exec.Command("mtype", "-i", espPart, "::/"+espStubPath).Output()
	if err != nil || !strings.Contains(string(stubText), "search.fs_uuid "+id.Root+" root") {
		t.Errorf("mtype %s = %q, %v; want the stub searching %s", espStubPath, stubText, err, id.Root)
	}
	rootPart := extract(t, img, l.RootStart, l.RootSize)
	if b := blkid(t, rootPart); b["TYPE"] != "ext4" || b["UUID"] != id.Root {
		t.Errorf("blkid(root) = %v, want ext4 %s", b, id.Root)
	}
	if cfgText := debugfs(t, rootPart, "cat /boot/grub/grub.cfg"); !strings.Contains(cfgText, "linux\t/boot/vmlinuz-"+testRelease+" "+entryCmdline(id.Root)) {
		t.Errorf("/boot/grub/grub.cfg in the image = %q, want the linux line", cfgText)
	}
}
