package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/lunboot/lunboot/internal/testenv"
	"github.com/lunboot/lunboot/internal/version"
	"github.com/lunboot/lunboot/pkg/kmod"
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
)

// fakeModules writes module files under a temporary module directory.
func fakeModules(t *testing.T) (*depmod.Tree, []depmod.Module) {
	t.Helper()
	tree := &depmod.Tree{Dir: filepath.Join(t.TempDir(), "6.1.0-test"), Release: "6.1.0-test"}
	mods := []depmod.Module{
		{Name: "nls_base", Builtin: true},
		{Name: "virtio_ring", Rel: "kernel/drivers/virtio/virtio_ring.ko"},
		{Name: "virtio", Rel: "kernel/drivers/virtio/virtio.ko", Depends: []string{"virtio_ring"}},
		{Name: "virtio_net", Rel: "kernel/drivers/net/virtio_net.ko", Depends: []string{"virtio_ring", "virtio"},
			Aliases: []string{"virtio:d00000001v*"}},
	}
	for i := range mods {
		if mods[i].Builtin {
			continue
		}
		mods[i].Path = filepath.Join(tree.Dir, mods[i].Rel)
		if err := os.MkdirAll(filepath.Dir(mods[i].Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mods[i].Path, []byte("ELF of "+mods[i].Name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tree.Dir, "modules.builtin"), []byte("kernel/fs/nls/nls_base.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return tree, mods
}

func TestModulesDep(t *testing.T) {
	_, mods := fakeModules(t)
	var entries []kmod.Entry
	for _, m := range mods[1:] {
		entries = append(entries, kmod.Entry{Name: m.Name, Path: m.Rel, Depends: m.Depends})
	}
	want := `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
`
	if diff := cmp.Diff(want, string(modulesDep(entries))); diff != "" {
		t.Errorf("modulesDep (-want +got):\n%s", diff)
	}
}

// TestMergeModules merges a small base archive with modules and reads the
// result back as the kernel would see it.
func TestMergeModules(t *testing.T) {
	tree, mods := fakeModules(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.cpio")
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	if err := cpio.WriteRecords(w, []cpio.Record{
		cpio.Directory("bbin", 0o755),
		cpio.StaticFile("bbin/bb", "busybox", 0o755),
		cpio.Directory("lib", 0o755), // a directory both have is written once
		cpio.Symlink("init", "bbin/init"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "full.cpio")
	n, size, err := mergeModules(base, out, tree, mods, "test header")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || size != int64(len("ELF of virtio_ring")+len("ELF of virtio")+len("ELF of virtio_net")) {
		t.Errorf("mergeModules = %d modules, %d bytes; want 3 and the files' total", n, size)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(f)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	content := map[string]string{}
	for _, r := range recs {
		names = append(names, r.Name)
		if r.ReaderAt != nil && r.Mode&cpio.S_IFMT == cpio.S_IFREG {
			c, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
			content[r.Name] = string(c)
		}
		if r.MTime != 0 || r.UID != 0 {
			t.Errorf("record %s has mtime %d uid %d, want 0 (reproducible)", r.Name, r.MTime, r.UID)
		}
	}
	mdir := "lib/modules/6.1.0-test"
	want := []string{
		"bbin", "bbin/bb", "lib", "init",
		"lib/modules", mdir, mdir + "/kernel", mdir + "/kernel/drivers", mdir + "/kernel/drivers/net", mdir + "/kernel/drivers/virtio",
		mdir + "/kernel/drivers/virtio/virtio_ring.ko", mdir + "/kernel/drivers/virtio/virtio.ko", mdir + "/kernel/drivers/net/virtio_net.ko",
		mdir + "/" + kmod.OrderFile, mdir + "/" + kmod.AliasFile, mdir + "/modules.dep", mdir + "/modules.builtin",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("merged archive names (-want +got):\n%s", diff)
	}
	if got := content[mdir+"/kernel/drivers/net/virtio_net.ko"]; got != "ELF of virtio_net" {
		t.Errorf("virtio_net.ko in the archive = %q", got)
	}
	order, err := kmod.ParseOrder(strings.NewReader(content[mdir+"/"+kmod.OrderFile]))
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := []kmod.Entry{
		{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"},
		{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko", Depends: []string{"virtio_ring"}},
		{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"virtio_ring", "virtio"}},
	}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("load order in the archive (-want +got):\n%s", diff)
	}
	aliases, err := kmod.ParseAliases(strings.NewReader(content[mdir+"/"+kmod.AliasFile]))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]kmod.Alias{{Pattern: "virtio:d00000001v*", Module: "virtio_net"}}, aliases); diff != "" {
		t.Errorf("alias list in the archive (-want +got):\n%s", diff)
	}
	if !strings.Contains(content[mdir+"/"+kmod.OrderFile], "# test header") {
		t.Errorf("load order lacks its header:\n%s", content[mdir+"/"+kmod.OrderFile])
	}

	// Same inputs, same bytes: the image can be cached and compared.
	out2 := filepath.Join(dir, "again.cpio")
	if _, _, err := mergeModules(base, out2, tree, mods, "test header"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	c, _ := os.ReadFile(out2)
	if !bytes.Equal(a, c) {
		t.Errorf("mergeModules is not reproducible: two runs differ")
	}
}

func TestCheckXZ(t *testing.T) {
	xz := testenv.RequireBinaries(t, "xz")[0]
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, bytes.Repeat([]byte("lunboot "), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := compressXZ(t.Context(), in, in+".xz"); err != nil {
		t.Fatalf("compressXZ = %v", err)
	}
	// What the kernel would refuse: the xz default, CRC64.
	crc64 := filepath.Join(dir, "crc64.xz")
	out, err := exec.Command(xz, "--check=crc64", "--stdout", in).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crc64, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkXZ(crc64); err == nil || !strings.Contains(err.Error(), "CRC32") {
		t.Errorf("checkXZ(CRC64 stream) = %v, want an error asking for CRC32", err)
	}
	if err := checkXZ(in); err == nil {
		t.Errorf("checkXZ(plain file) = nil, want an error")
	}
}

func TestToolCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "tools.go")
		if err := os.WriteFile(p, []byte("//go:build tools\n\npackage tools\n\nimport (\n"+body+")\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const lunboot = "\t_ \"github.com/lunboot/lunboot/cmds/lunboot\"\n"
	got, err := toolCommands(write(lunboot + "\t_ \"github.com/u-root/u-root/cmds/core/init\"\n\t_ \"github.com/u-root/u-root/cmds/core/gosh\"\n\t_ \"golang.org/x/sys/unix\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"github.com/lunboot/lunboot/cmds/lunboot", "github.com/u-root/u-root/cmds/core/init", "github.com/u-root/u-root/cmds/core/gosh"}, got); diff != "" {
		t.Errorf("toolCommands (-want +got):\n%s", diff)
	}
	if _, err := toolCommands(write(lunboot + "\t_ \"github.com/u-root/u-root/cmds/core/gosh\"\n")); err == nil || !strings.Contains(err.Error(), `"init"`) {
		t.Errorf("toolCommands(no init) = %v, want an error naming init", err)
	}
	if _, err := toolCommands(write("\t_ \"github.com/u-root/u-root/cmds/core/init\"\n\t_ \"github.com/u-root/u-root/cmds/core/gosh\"\n")); err == nil || !strings.Contains(err.Error(), `"lunboot"`) {
		t.Errorf("toolCommands(no lunboot) = %v, want an error naming lunboot", err)
	}
	// The repository's own list must satisfy it.
	if _, err := toolCommands(filepath.Join("..", "uroot", "tools.go")); err != nil {
		t.Errorf("toolCommands(%s/tools.go) = %v", urootModule, err)
	}
}

func TestChanges(t *testing.T) {
	out := t.TempDir()
	lines := []string{"go go1.26", "src a.go 01", "kernel 02"}
	if got := changes(out, lines); len(got) == 0 {
		t.Errorf("changes(empty dir) = nil, want a reason to build")
	}
	for _, n := range []string{imageName, kernelName, flashName} {
		if err := os.WriteFile(filepath.Join(out, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(out, stampName), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := changes(out, lines); got != nil {
		t.Errorf("changes(same inputs) = %q, want nil (up to date)", got)
	}
	got := changes(out, []string{"go go1.26", "src a.go 03", "kernel 02"})
	if diff := cmp.Diff([]string{"+ src a.go 03", "- src a.go 01"}, got); diff != "" {
		t.Errorf("changes(edited source) (-want +got):\n%s", diff)
	}
	for _, n := range []string{flashName, kernelName} {
		os.Remove(filepath.Join(out, n))
		if got := changes(out, lines); len(got) == 0 {
			t.Errorf("changes(%s missing) = nil, want a rebuild", n)
		}
	}
}

// TestInputs lists the inputs of an image of lunboot alone, as mkimage
// does: the sources of lunboot's packages (listed in the u-root module,
// where lunboot is a directory replacement) and of mkimage are hashed,
// other modules go by version, and both modules' go.mod and go.sum count.
func TestInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over lunboot's dependencies")
	}
	repo, err := repoRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	vmlinuz := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(vmlinuz, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines, err := inputs(t.Context(), repo, filepath.Join(repo, urootModule), []string{"github.com/lunboot/lunboot/cmds/lunboot"}, version.Info{Version: "v0.0.0-test", Commit: "0123456789ab"}, []byte("nbd\n"), vmlinuz, nil)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n") + "\n"
	for _, want := range []string{
		"\nsrc github.com/lunboot/lunboot/cmds/lunboot/boot.go ",
		"\nsrc github.com/lunboot/lunboot/pkg/netconf/lease.go ",
		// mkimage is the last package go list prints: its line ends in
		// an empty field that must survive.
		"\nsrc github.com/lunboot/lunboot/initramfs/mkimage/inputs.go ",
		"\npkg github.com/u-root/u-root/pkg/boot github.com/u-root/u-root@v",
		"\ngo.sum ",
		"\n" + urootModule + "/go.mod ",
		"\n" + urootModule + "/go.sum ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("inputs() has no line starting %q:\n%s", strings.TrimSpace(want), text)
		}
	}
	if strings.Contains(text, "\npkg github.com/lunboot/") {
		t.Errorf("inputs() lists a lunboot package by version, not by its sources:\n%s", text)
	}
}

// TestImageModule builds the module the busybox is built in and checks
// what the local-only pkg/curl is for: the image's lunboot no longer
// depends on net/http, crypto/tls, crypto/x509 or TFTP. (make image
// compiles u-root's GRUB and syslinux parsers against it, and osfind's
// tests run against it with `go test github.com/lunboot/lunboot/pkg/osfind`
// in the uroot/ directory that mkimage -keep leaves.)
func TestImageModule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list and go vet over the image's u-root")
	}
	repo, err := repoRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := imageModule(t.Context(), repo, filepath.Join(repo, urootModule), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := goCmd(t.Context(), dir, "list", "-deps", "-tags", strings.Join(buildTags, ","), "github.com/lunboot/lunboot/cmds/lunboot")
	if err != nil {
		t.Fatal(err)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(out) {
		deps[p] = true
	}
	for _, p := range []string{"github.com/u-root/u-root/pkg/curl", "github.com/u-root/u-root/pkg/boot/grub", "github.com/u-root/u-root/pkg/boot/syslinux"} {
		if !deps[p] {
			t.Errorf("the image's lunboot does not depend on %s: the check below proves nothing", p)
		}
	}
	for _, p := range []string{"net/http", "crypto/tls", "crypto/x509", "pack.ag/tftp"} {
		if deps[p] {
			t.Errorf("the image's lunboot depends on %s", p)
		}
	}
}
