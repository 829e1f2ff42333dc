package distro

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/osfind"
)

const testRelease = "6.1.0-28-amd64"

func testConfig(t *testing.T, name string) sysConfig {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lunboot-proof")
	if err := os.WriteFile(bin, []byte("\x7fELF fake proof"), 0o644); err != nil {
		t.Fatal(err)
	}
	return sysConfig{Name: name, KernelRelease: testRelease, IDs: idsFor(name), ProofBinary: bin}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestIDs(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{NameDebian, NameDracut, NameNoISCSI} {
		id := idsFor(name)
		if again := idsFor(name); again != id {
			t.Errorf("idsFor(%q) not stable: %v then %v", name, id, again)
		}
		for what, u := range map[string]string{"disk": id.Disk, "boot part": id.BootPart, "root part": id.RootPart, "boot": id.Boot, "root": id.Root} {
			if !uuidRE.MatchString(u) {
				t.Errorf("idsFor(%q) %s = %q, want a version 4 UUID", name, what, u)
			}
			if prev, dup := seen[u]; dup {
				t.Errorf("idsFor(%q) %s = %s, same as %s", name, what, u, prev)
			}
			seen[u] = name + " " + what
		}
	}
}

// TestBootEntryReadByOsfind checks that lunboot's OS finder (u-root's BLS
// parser underneath) reads the boot partition as built: one entry, the
// kernel and initrd found, the command line the distribution would write.
func TestBootEntryReadByOsfind(t *testing.T) {
	cfg := testConfig(t, NameDebian)
	boot := t.TempDir()
	for _, f := range []string{"vmlinuz-" + testRelease, "initrd.img-" + testRelease, "config-" + testRelease, "System.map-" + testRelease} {
		if err := os.WriteFile(filepath.Join(boot, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFiles(boot, bootFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	entries, part := osfind.ScanDir(context.Background(), nil, boot, "/dev/nbd0p1", nil, nil)
	if len(entries) != 1 {
		t.Fatalf("osfind.ScanDir(boot partition) = %d entries (%+v), want 1", len(entries), part)
	}
	e := entries[0]
	if e.Format != osfind.BLS {
		t.Errorf("entry format = %s, want %s", e.Format, osfind.BLS)
	}
	want := "root=UUID=" + cfg.IDs.Root + " rw console=ttyS0,115200"
	if e.Cmdline != want {
		t.Errorf("entry cmdline = %q, want %q", e.Cmdline, want)
	}
	if !strings.Contains(e.Label, testRelease) {
		t.Errorf("entry label = %q, want it to name %s", e.Label, testRelease)
	}
	for what, r := range map[string]interface {
		ReadAt([]byte, int64) (int, error)
	}{"vmlinuz-": e.Kernel, "initrd.img-": e.Initrd} {
		if r == nil {
			t.Errorf("entry %s file missing", what)
			continue
		}
		buf := make([]byte, len(what+testRelease))
		if _, err := r.ReadAt(buf, 0); err != nil || string(buf) != what+testRelease {
			t.Errorf("entry %s file reads %q, %v; want %q", what, buf, err, what+testRelease)
		}
	}
	// The entry must leave the iSCSI hand-off to lunboot: no parameter
	// of either dialect, and no ip=.
	for _, a := range handoff.ParseCmdline(e.Cmdline) {
		if strings.HasPrefix(a.Key, "iscsi") || strings.HasPrefix(a.Key, "rd.iscsi") || a.Key == "netroot" || a.Key == "ip" || a.Key == "BOOTIF" {
			t.Errorf("entry cmdline carries %s, which only lunboot may add", a.Raw)
		}
	}
}

func TestRootFiles(t *testing.T) {
	cfg := testConfig(t, NameDracut)
	files := map[string]file{}
	for _, f := range rootFiles(cfg) {
		files[f.Path] = f
	}
	fstab := files["/etc/fstab"].Data
	for _, want := range []string{
		"UUID=" + cfg.IDs.Root + "\t/\text4\t",
		"UUID=" + cfg.IDs.Boot + "\t/boot\text4\t",
	} {
		if !strings.Contains(fstab, want) {
			t.Errorf("fstab = %q, want a line starting %q", fstab, want)
		}
	}
	unit := files["/etc/systemd/system/lunboot-proof.service"].Data
	for _, want := range []string{"After=network-online.target remote-fs.target multi-user.target", "WantedBy=multi-user.target", "ExecStart=/usr/local/sbin/lunboot-proof"} {
		if !strings.Contains(unit, want) {
			t.Errorf("lunboot-proof.service lacks %q:\n%s", want, unit)
		}
	}
	if l := files["/etc/systemd/system/multi-user.target.wants/lunboot-proof.service"].Link; l != "/etc/systemd/system/lunboot-proof.service" {
		t.Errorf("proof service enabled through %q, want a link to the unit", l)
	}
	if l := files["/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"].Link; l != "/lib/systemd/system/serial-getty@.service" {
		t.Errorf("serial getty enabled through %q, want a link to serial-getty@.service", l)
	}
}

// TestWriteFilesLeavesStage writes the configuration into a hard-linked
// copy of a tree, as buildDisk does, and checks that the original keeps
// its contents: a cached root stage must stay pristine.
func TestWriteFilesLeavesStage(t *testing.T) {
	testenv.RequireBinaries(t, "cp")
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	orig := map[string]string{
		"etc/fstab":              "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n",
		"etc/hostname":           "buildhost\n",
		"etc/network/interfaces": "source /etc/network/interfaces.d/*\n",
		"lib/systemd/system/serial-getty@.service": "[Unit]\n",
	}
	for p, data := range orig {
		full := filepath.Join(stage, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(dir, "work")
	if out, err := exec.Command("cp", "-al", stage, work).CombinedOutput(); err != nil {
		t.Fatalf("cp -al: %v: %s", err, out)
	}
	cfg := testConfig(t, NameDebian)
	if err := writeFiles(work, rootFiles(cfg)); err != nil {
		t.Fatalf("writeFiles: %v", err)
	}
	// Twice: rebuilding over an already configured tree works.
	if err := writeFiles(work, rootFiles(cfg)); err != nil {
		t.Fatalf("writeFiles again: %v", err)
	}
	for p, data := range orig {
		got, err := os.ReadFile(filepath.Join(stage, p))
		if err != nil || string(got) != data {
			t.Errorf("stage %s = %q, %v after configuring the copy; want it unchanged (%q)", p, got, err, data)
		}
	}
	hostname, _ := os.ReadFile(filepath.Join(work, "etc/hostname"))
	if string(hostname) != "lunboot-debian\n" {
		t.Errorf("configured hostname = %q, want lunboot-debian", hostname)
	}
	info, err := os.Stat(filepath.Join(work, "usr/local/sbin/lunboot-proof"))
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("proof program: %v, mode %v; want 0755", err, info.Mode())
	}
	if l, err := os.Readlink(filepath.Join(work, "etc/systemd/system/multi-user.target.wants/lunboot-proof.service")); err != nil || l != "/etc/systemd/system/lunboot-proof.service" {
		t.Errorf("proof service link = %q, %v", l, err)
	}
}

// TestUEFILayoutFiles checks LayoutUEFI's configuration: the ESP holds
// only grub-install's stub, naming the root's UUID and /boot/grub, and the
// root's /boot/grub/grub.cfg gives osfind one GRUB entry with the kernel,
// the initrd, the distribution's command line and grub-mkconfig's id.
func TestUEFILayoutFiles(t *testing.T) {
	cfg := testConfig(t, NameDebianUEFI)
	cfg.Layout = LayoutUEFI
	esp := t.TempDir()
	if err := writeFiles(esp, espFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	stubText, err := os.ReadFile(filepath.Join(esp, espStubPath))
	if err != nil {
		t.Fatal(err)
	}
	want := "search.fs_uuid " + cfg.IDs.Root + " root hd0,gpt2 \nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"
	if string(stubText) != want {
		t.Errorf("ESP stub = %q, want %q", stubText, want)
	}
	if entries, _ := osfind.ScanDir(context.Background(), nil, esp, "/dev/nbd0p1", nil, nil); len(entries) != 0 {
		t.Errorf("the ESP alone gives entries %v; the stub's target is on another partition", entries)
	}

	root := t.TempDir()
	for _, f := range []string{"vmlinuz-" + testRelease, "initrd.img-" + testRelease} {
		if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "boot", f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFiles(root, uefiRootFiles(cfg)); err != nil {
		t.Fatal(err)
	}
	entries, part := osfind.ScanDir(context.Background(), nil, root, "/dev/nbd0p2", nil, nil)
	if len(entries) != 1 {
		t.Fatalf("osfind.ScanDir(root) = %d entries (%+v), want 1", len(entries), part)
	}
	e := entries[0]
	if e.Format != osfind.GRUB || e.ID != grubMenuID(cfg.IDs.Root) || e.Cmdline != entryCmdline(cfg.IDs.Root) || e.Initrd == nil {
		t.Errorf("entry = %s, cmdline %q, initrd %v; want GRUB id %s, cmdline %q, an initrd", e, e.Cmdline, e.Initrd != nil, grubMenuID(cfg.IDs.Root), entryCmdline(cfg.IDs.Root))
	}
	if fstab := rootFiles(cfg)[0]; !strings.Contains(fstab.Data, "UUID="+cfg.IDs.ESP+"\t/boot/efi\tvfat") {
		t.Errorf("UEFI fstab = %q, want the ESP on /boot/efi", fstab.Data)
	}
	if !regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`).MatchString(cfg.IDs.ESP) {
		t.Errorf("ESP volume ID = %q, want XXXX-XXXX in hex", cfg.IDs.ESP)
	}
}
