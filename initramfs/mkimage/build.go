package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/internal/fsutil"
	"github.com/lunboot/lunboot/internal/version"
	"github.com/lunboot/lunboot/internal/version/vcs"
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
)

// Names of what mkimage writes in the output directory.
const (
	imageName = "lunboot.cpio.xz"
	// flashName is the image without kernel modules, uncompressed: what a
	// kernel with the drivers built in embeds (CONFIG_INITRAMFS_SOURCE
	// takes a cpio file as it is; the kernel build compresses it, once,
	// with the rest of the kernel). make linuxboot reads it.
	flashName  = "lunboot-nomodules.cpio"
	kernelName = "vmlinuz"
	stampName  = ".lunboot.cpio.xz.inputs"
	// versionName holds the version the image's lunboot was stamped with,
	// as its boot's first console line names it (version.Info.String):
	// what the lab's tests check that line against.
	versionName = "lunboot.version"
)

// uinit is what u-root's init runs after setting up the root file system
// (u-root writes the arguments to /etc/uinit.flags).
const uinit = "lunboot boot"

type config struct {
	out, kernel, modules string
	budget               int64
	force, keep          bool
}

// buildEnv is the environment of every go command: an image that runs on
// any x86-64 (and under TCG), with no C toolchain involved.
var buildEnv = []string{"GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "CGO_ENABLED=0"}

// buildTags apply to every package of the image. goshsmall builds u-root's
// shell with a plain line reader instead of the bubbline editor: ~220 KiB
// less compressed, fourteen fewer modules, and a prompt that behaves on a
// serial console (the tty's own line editing still works). lunbootimage
// leaves out what only lunboot's host subcommands use (runtime/pprof for
// bench --cpuprofile, see cmds/lunboot/profile_image.go).
var buildTags = []string{"goshsmall", "lunbootimage"}

func build(ctx context.Context, c config, stdout, stderr io.Writer) error {
	start := time.Now()
	repo, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	if c.modules == "" {
		c.modules = filepath.Join(repo, "initramfs", "modules.txt")
	}

	// Inputs: kernel, modules, commands.
	tree, err := depmod.Open(c.kernel)
	if err != nil {
		return err
	}
	vmlinuz := filepath.Join(c.kernel, "boot", "vmlinuz-"+tree.Release)
	if _, err := os.Stat(vmlinuz); err != nil {
		return fmt.Errorf("kernel for the modules' release %s: %w", tree.Release, err)
	}
	listBytes, err := os.ReadFile(c.modules)
	if err != nil {
		return fmt.Errorf("module list: %w", err)
	}
	list, err := depmod.ReadList(bytes.NewReader(listBytes))
	if err != nil {
		return fmt.Errorf("%s: %w", c.modules, err)
	}
	mods, err := tree.Resolve(list)
	if err != nil {
		return fmt.Errorf("%s: %w", c.modules, err)
	}
	urootDir := filepath.Join(repo, urootModule)
	pkgs, err := toolCommands(filepath.Join(urootDir, "tools.go"))
	if err != nil {
		return err
	}
	// Firmware in flash must say what it is: lunboot gets the checkout's
	// version and commit at link time (package version). The stamp is an
	// input, so a new commit rebuilds the image rather than leave it
	// naming the old one.
	ver, err := vcs.Describe(ctx, repo)
	if err != nil {
		ver = version.Info{Version: version.UnknownVersion, Commit: version.UnknownCommit}
		fmt.Fprintf(stderr, "warning: no version stamp, the image will say %q: %v\n", ver.String(), err)
	}

	tmp, err := os.MkdirTemp("", "lunboot-mkimage-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintf(stdout, "build directory: %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	// The busybox builds in a copy of the u-root module whose u-root has
	// the local-only pkg/curl (localcurl.go); its sources are inputs.
	imageDir, err := imageModule(ctx, repo, urootDir, tmp)
	if err != nil {
		return err
	}

	in, err := inputs(ctx, repo, imageDir, pkgs, ver, listBytes, vmlinuz, mods)
	if err != nil {
		return err
	}
	imagePath := filepath.Join(c.out, imageName)
	diff := changes(c.out, in)
	if !c.force && diff == nil {
		fmt.Fprintf(stdout, "image up to date: %s (%s, kernel %s)\n", imagePath, bytesize.MiB(fsutil.Size(imagePath)), tree.Release)
		return nil
	}
	if !c.force {
		fmt.Fprintf(stdout, "inputs changed since the last build:\n  %s\n", strings.Join(diff, "\n  "))
	}

	// 1. The u-root part: init, lunboot, the rescue commands.
	fmt.Fprintf(stdout, "building %d commands with u-root (busybox mode): %s\n", len(pkgs), shortNames(pkgs))
	base := filepath.Join(tmp, "base.cpio")
	if err := urootBuild(ctx, imageDir, tmp, base, pkgs, ver, stderr); err != nil {
		return err
	}

	// 2. The modules, merged into the same archive.
	for _, m := range mods {
		if m.Builtin {
			fmt.Fprintf(stdout, "module %s: built into %s, nothing to load\n", m.Name, tree.Release)
		}
		for _, s := range m.MissingSoftdeps {
			fmt.Fprintf(stdout, "warning: module %s wants %q loaded first (softdep) and nothing in the list provides it: add the module that does to %s\n", m.Name, s, c.modules)
		}
	}
	full := filepath.Join(tmp, "lunboot.cpio")
	header := fmt.Sprintf("generated by initramfs/mkimage from %s for %s; do not edit", filepath.Base(c.modules), tree.Release)
	nmods, modBytes, err := mergeModules(base, full, tree, mods, header)
	if err != nil {
		return err
	}

	// 3. Compress both: the full image, and the base alone to hold it to
	// the budget.
	fmt.Fprintf(stdout, "compressing (xz, CRC32 check)\n")
	baseXZ, fullXZ := base+".xz", full+".xz"
	errc := make(chan error, 1)
	go func() { errc <- compressXZ(ctx, base, baseXZ) }()
	err = compressXZ(ctx, full, fullXZ)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if err != nil {
		return err
	}
	baseSize, fullSize := fsutil.Size(baseXZ), fsutil.Size(fullXZ)
	if baseSize > c.budget {
		return fmt.Errorf("the image without modules is %s compressed, over the %s budget: drop commands from %s/tools.go or find what grew in lunboot (go tool nm -size -sort size)", bytesize.MiB(baseSize), bytesize.MiB(c.budget), urootModule)
	}

	// 4. Publish: the image, the kernel, then the stamp.
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	os.Remove(filepath.Join(c.out, stampName))
	if err := fsutil.CopyFile(fullXZ, imagePath); err != nil {
		return err
	}
	if err := fsutil.CopyFile(base, filepath.Join(c.out, flashName)); err != nil {
		return err
	}
	if err := fsutil.CopyFile(vmlinuz, filepath.Join(c.out, kernelName)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, versionName), []byte(ver.String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, stampName), []byte(strings.Join(in, "\n")+"\n"), 0o644); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "image: %s %s (without modules %s of the %s budget; %d modules for %s, %s uncompressed)\n",
		imagePath, bytesize.MiB(fullSize), bytesize.MiB(baseSize), bytesize.MiB(c.budget), nmods, tree.Release, bytesize.MiB(modBytes))
	fmt.Fprintf(stdout, "kernel: %s (from %s)\n", filepath.Join(c.out, kernelName), vmlinuz)
	fmt.Fprintf(stdout, "without modules, uncompressed: %s (%s, for a kernel with the drivers built in: make linuxboot)\n", filepath.Join(c.out, flashName), bytesize.MiB(fsutil.Size(filepath.Join(c.out, flashName))))
	fmt.Fprintf(stdout, "version: lunboot %s\n", ver)
	fmt.Fprintf(stdout, "built in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// urootModule is the directory, relative to the repository, of the Go
// module that builds the image's busybox binary: its tools.go lists the
// commands, its go.mod pins u-root and what the commands need to build
// (u-root's shell editor and friends), so lunboot's own go.mod lists only
// what lunboot's code uses.
const urootModule = "initramfs/uroot"

// repoRoot is the directory of the main module's go.mod: mkimage reads the
// module list and finds the u-root module from there.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("mkimage must run inside the lunboot module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

// urootBuild runs `go tool u-root` in the u-root module (dir), with
// lunboot's version stamp.
func urootBuild(ctx context.Context, dir, tmp, out string, pkgs []string, ver version.Info, stderr io.Writer) error {
	args := []string{"tool", "u-root",
		"-o", out,
		"-initcmd=init",
		"-uinitcmd=" + uinit,
		"-defaultsh=gosh",
		"-tmp-dir", tmp,
		"-go-extra-args", ldflags(ver),
	}
	for _, t := range buildTags {
		args = append(args, "-go-build-tags", t)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), buildEnv...)
	var log bytes.Buffer
	cmd.Stdout = &log
	cmd.Stderr = &log
	if err := cmd.Run(); err != nil {
		stderr.Write(log.Bytes())
		return fmt.Errorf("go tool u-root: %w%s", err, hint(log.String()))
	}
	return nil
}

// ldflags is the -ldflags argument of the busybox build: u-root's own
// (gobusybox's pkg/golang passes "-s -w -buildid=": no symbols, no build ID,
// a reproducible binary) and the version stamp. go build keeps only the
// last -ldflags it is given, and u-root puts -go-extra-args after its own,
// so this one must repeat them. The busybox build rewrites each command's
// package main into a library, but leaves other packages at their import
// path: -X of package version reaches it as it reaches go build.
func ldflags(ver version.Info) string {
	return "-ldflags=-s -w -buildid= " + version.LDFlags(ver)
}

// hint turns the go tool's best-known build failure into what to do.
func hint(out string) string {
	if !strings.Contains(out, "missing go.sum entry") {
		return ""
	}
	return fmt.Sprintf("\n  go.sum lacks entries for packages the image's commands import (a command added to %[1]s/tools.go, or lunboot's go.mod changed): run\n    (cd %[1]s && go mod tidy)", urootModule)
}

// compressXZ compresses in to out as the kernel can unpack it: CRC32 check
// (XZ_DEC supports only none and CRC32 for the initramfs), LZMA2 with a
// 1 MiB dictionary (the decoder's memory), preset 9. Single-threaded, so
// the output depends on the input alone.
func compressXZ(ctx context.Context, in, out string) error {
	xz, err := exec.LookPath("xz")
	if err != nil {
		return fmt.Errorf("xz not found: install xz-utils (make deps): %w", err)
	}
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	defer dst.Close()
	cmd := exec.CommandContext(ctx, xz, "--format=xz", "--check=crc32", "--lzma2=preset=9,dict=1MiB", "--threads=1", "--stdout")
	cmd.Stdin = src
	cmd.Stdout = dst
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xz %s: %w: %s", in, err, strings.TrimSpace(errb.String()))
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return checkXZ(out)
}

// checkXZ verifies the stream header asks for a CRC32 check: the kernel
// refuses anything else with "XZ-compressed data is corrupt" at boot, long
// after the build, so catch an xz that ignored the option here.
func checkXZ(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [12]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	// .xz file format 1.0.4 §2.1.1: magic FD 37 7A 58 5A 00, then stream
	// flags 00 0x where x is the check type (1 = CRC32).
	if !bytes.Equal(hdr[:6], []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return fmt.Errorf("check %s: not an xz stream", path)
	}
	if hdr[6] != 0 || hdr[7] != 1 {
		return fmt.Errorf("check %s: xz check type %#x, want CRC32 (0x1): the kernel cannot unpack it", path, hdr[7])
	}
	return nil
}

func shortNames(pkgs []string) string {
	var s []string
	for _, p := range pkgs {
		s = append(s, filepath.Base(p))
	}
	return strings.Join(s, " ")
}
