package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/internal/flock"
	"github.com/lunboot/lunboot/internal/fsutil"
	"github.com/lunboot/lunboot/internal/proc"
)

// defaultSource is where Debian's linux-source-6.1 package puts the tree.
const defaultSource = "/usr/src/linux-source-6.1.tar.xz"

// Names in the output directory.
const (
	outName       = "linuxboot.bzImage"
	outConfigName = "linuxboot.bzImage.config" // the kernel's full .config, for whoever rebuilds it by hand
	flashCPIO     = "lunboot-nomodules.cpio"   // initramfs/mkimage's flashName
)

// recipe names how a tree is configured and built: change it when that
// changes, so that trees built the old way are not reused.
const recipe = "mklinuxboot v1: ARCH=x86_64 tinyconfig, merge_config.sh -m fragment, olddefconfig, INITRAMFS_SOURCE=<tree>/lunboot.cpio uncompressed, make bzImage"

// buildEnv makes the kernel build reproducible and says who built it
// (uname -v, /proc/version): Documentation/kbuild/reproducible-builds.rst.
// The time is fixed so that a relink with a new initramfs changes only the
// initramfs.
var buildEnv = []string{
	"ARCH=x86_64",
	"KBUILD_BUILD_USER=lunboot",
	"KBUILD_BUILD_HOST=mklinuxboot",
	"KBUILD_BUILD_TIMESTAMP=2026-01-01",
	"KBUILD_BUILD_VERSION=1",
	"LOCALVERSION=-lunboot",
}

type config struct {
	out, cache, source, fragment, initramfs string
	jobs                                    int
	budget                                  int64
}

func build(ctx context.Context, c config, stdout io.Writer) error {
	start := time.Now()
	if c.fragment == "" {
		repo, err := repoRoot(ctx)
		if err != nil {
			return err
		}
		c.fragment = filepath.Join(repo, "initramfs", "linuxboot.config")
	}
	if c.initramfs == "" {
		c.initramfs = filepath.Join(c.out, flashCPIO)
	}
	frag, err := os.ReadFile(c.fragment)
	if err != nil {
		return fmt.Errorf("config fragment: %w", err)
	}
	want, err := fragmentSymbols(frag)
	if err != nil {
		return fmt.Errorf("%s: %w", c.fragment, err)
	}
	srcSum, err := fileSHA256(c.source)
	if err != nil {
		return fmt.Errorf("kernel source (Debian package linux-source-6.1, make deps): %w", err)
	}
	cpioSum, err := fileSHA256(c.initramfs)
	if err != nil {
		return fmt.Errorf("initramfs without modules (make image writes it): %w", err)
	}
	tk := treeKey(srcSum, frag)
	ik := imageKey(tk, cpioSum)
	base, err := filepath.Abs(filepath.Join(c.cache, "linuxboot"))
	if err != nil {
		return err
	}
	cached := filepath.Join(base, "images", ik[:16]+".bzImage")
	outPath := filepath.Join(c.out, outName)
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}

	if _, err := os.Stat(cached); err == nil {
		if err := publish(cached, outPath, c.budget); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "linuxboot up to date: %s %s (from %s)\n", outPath, sizeNote(fsutil.Size(outPath), c.budget), cached)
		return nil
	}

	tree := filepath.Join(base, "tree-"+tk[:16])
	unlock, err := flock.Lock(ctx, tree+".lock", func() {
		fmt.Fprintf(stdout, "waiting for another build of %s\n", tree)
	})
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have built the same image while this one waited.
	if _, err := os.Stat(cached); err == nil {
		if err := publish(cached, outPath, c.budget); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "linuxboot up to date: %s %s\n", outPath, sizeNote(fsutil.Size(outPath), c.budget))
		return nil
	}

	src := filepath.Join(tree, "src")
	embedded := filepath.Join(tree, "lunboot.cpio")
	logPath := filepath.Join(tree, "build.log")
	b := &kbuild{ctx: ctx, dir: src, jobs: c.jobs}
	cold := false
	_, errBuilt := os.Stat(filepath.Join(tree, ".built"))
	_, errConfigured := os.Stat(filepath.Join(tree, ".configured"))
	switch {
	case errBuilt != nil && errConfigured == nil:
		// A cold build that was interrupted (^C, a timeout) after its
		// configuration: make picks up where it stopped.
		cold = true
		fmt.Fprintf(stdout, "resuming the interrupted kernel build in %s (log %s)\n", tree, logPath)
		lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer lf.Close()
		b.log = lf
		if err := fsutil.CopyFile(c.initramfs, embedded); err != nil {
			return err
		}
	case errBuilt != nil:
		cold = true
		fmt.Fprintf(stdout, "building the kernel from %s with %s (cold: once per machine and fragment; log %s)\n", c.source, c.fragment, logPath)
		if err := os.RemoveAll(tree); err != nil {
			return err
		}
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		lf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		defer lf.Close()
		b.log = lf
		if err := fsutil.CopyFile(c.initramfs, embedded); err != nil {
			return err
		}
		if err := b.run("tar", "-xJf", c.source, "-C", src, "--strip-components=1"); err != nil {
			return b.fail(err, logPath)
		}
		if err := configure(b, c.fragment, embedded, want); err != nil {
			return b.fail(err, logPath)
		}
		if err := os.WriteFile(filepath.Join(tree, ".configured"), []byte(recipe+"\n"), 0o644); err != nil {
			return err
		}
	default:
		fmt.Fprintf(stdout, "relinking the cached kernel %s with the new initramfs %s\n", tree, c.initramfs)
		lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer lf.Close()
		b.log = lf
		// The config names this path: kbuild sees a newer file and
		// regenerates usr/initramfs_data.o, then links vmlinux again.
		if err := fsutil.CopyFile(c.initramfs, embedded); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(tree, ".built"))
	compile := time.Now()
	if err := b.make("bzImage"); err != nil {
		return b.fail(err, logPath)
	}
	if err := os.WriteFile(filepath.Join(tree, ".built"), []byte(recipe+"\n"), 0o644); err != nil {
		return err
	}
	took := time.Since(compile).Round(time.Second)

	bz := filepath.Join(src, "arch", "x86", "boot", "bzImage")
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return err
	}
	if err := fsutil.CopyFile(bz, cached); err != nil {
		return err
	}
	prune(filepath.Dir(cached), 8)
	if err := fsutil.CopyFile(filepath.Join(src, ".config"), filepath.Join(c.out, outConfigName)); err != nil {
		return err
	}
	if err := publish(cached, outPath, c.budget); err != nil {
		return err
	}
	what := "relinked"
	if cold {
		what = "built cold"
	}
	fmt.Fprintf(stdout, "linuxboot: %s %s\n", outPath, sizeNote(fsutil.Size(outPath), c.budget))
	fmt.Fprintf(stdout, "kernel %s in %s with %d jobs (make bzImage %s); its config: %s\n", what, time.Since(start).Round(time.Second), c.jobs, took, filepath.Join(c.out, outConfigName))
	return nil
}

// configure writes the tree's .config: tinyconfig, the fragment, the
// embedded initramfs; then checks that every symbol the fragment sets
// survived olddefconfig (one whose dependencies are off is dropped silently).
func configure(b *kbuild, fragment, embedded string, want map[string]string) error {
	if err := b.make("tinyconfig"); err != nil {
		return err
	}
	// -m: merge only, so that olddefconfig below settles the dependencies
	// once for all.
	if err := b.run(filepath.Join(b.dir, "scripts", "kconfig", "merge_config.sh"), "-m", "-O", b.dir, filepath.Join(b.dir, ".config"), fragment); err != nil {
		return err
	}
	// Uncompressed: the bzImage compresses the whole kernel with xz, the
	// archive included (usr/Makefile: a single .cpio file is used as it is).
	if err := b.run(filepath.Join(b.dir, "scripts", "config"), "--file", filepath.Join(b.dir, ".config"),
		"--set-str", "INITRAMFS_SOURCE", embedded,
		"--enable", "INITRAMFS_COMPRESSION_NONE"); err != nil {
		return err
	}
	if err := b.make("olddefconfig"); err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(b.dir, ".config"))
	if err != nil {
		return err
	}
	want["CONFIG_INITRAMFS_COMPRESSION_NONE"] = "y"
	if lost := dropped(want, got); len(lost) > 0 {
		return fmt.Errorf("olddefconfig dropped %d line(s) of the fragment (a dependency is off; add it to the fragment):\n  %s", len(lost), strings.Join(lost, "\n  "))
	}
	return nil
}

// fragmentSymbols returns the CONFIG_X=value lines of a fragment.
func fragmentSymbols(frag []byte) (map[string]string, error) {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(frag))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			return nil, fmt.Errorf("line %d: %q is neither CONFIG_X=value nor a comment", n, line)
		}
		m[k] = v
	}
	return m, sc.Err()
}

// dropped lists the lines of want that config does not have, sorted.
func dropped(want map[string]string, config []byte) []string {
	have := map[string]bool{}
	for _, l := range strings.Split(string(config), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var lost []string
	for k, v := range want {
		if !have[k+"="+v] {
			lost = append(lost, k+"="+v)
		}
	}
	sort.Strings(lost)
	return lost
}

// treeKey identifies a kernel build tree: the source, the fragment and the
// recipe. The initramfs is not in it: a tree is relinked with each one.
func treeKey(srcSum string, fragment []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nsource %s\nfragment %x\nenv %s\n", recipe, srcSum, sha256.Sum256(fragment), strings.Join(buildEnv, " "))
	return hex.EncodeToString(h.Sum(nil))
}

// imageKey identifies a finished bzImage: its tree and the initramfs.
func imageKey(tree, cpioSum string) string {
	h := sha256.Sum256([]byte("tree " + tree + "\ninitramfs " + cpioSum + "\n"))
	return hex.EncodeToString(h[:])
}

// kbuild runs commands in a kernel tree with their output in a log.
type kbuild struct {
	ctx  context.Context
	dir  string
	jobs int
	log  io.Writer
}

func (b *kbuild) make(target string) error {
	return b.run("make", fmt.Sprintf("-j%d", b.jobs), target)
}

func (b *kbuild) run(name string, args ...string) error {
	fmt.Fprintf(b.log, "$ %s %s\n", name, strings.Join(args, " "))
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s (make deps): %w", name, err)
	}
	// kbuild's make forks a make per directory, each with its compilers:
	// stopping only the top one (as exec.CommandContext would) leaves the
	// others building, and a resumed build then races them for the same
	// files (seen: "fixdep: error opening file … .o.d"). So the command
	// runs in its own process group (package proc), and a cancelled build
	// stops the whole group; SIGTERM first, on which make deletes the
	// half-written target.
	p, err := proc.Start(append([]string{"/usr/bin/env", "-C", b.dir}, append(buildEnv, append([]string{path}, args...)...)...), proc.IO{Stdout: b.log, Stderr: b.log})
	if err != nil {
		return err
	}
	err = p.Wait(b.ctx)
	if b.ctx.Err() != nil {
		p.Stop(5 * time.Second)
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), b.ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

// fail adds the end of the build log to err.
func (b *kbuild) fail(err error, logPath string) error {
	data, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return fmt.Errorf("%w\n(last lines of %s:)\n%s", err, logPath, strings.Join(lines, "\n"))
}

// publish copies the cached bzImage to the output, unless it is over the
// budget.
func publish(cached, out string, budget int64) error {
	if n := fsutil.Size(cached); n > budget {
		return fmt.Errorf("%s is %s, over the %s budget for the flash: drop drivers from the fragment or commands from the image", cached, bytesize.MiB(n), bytesize.MiB(budget))
	}
	return fsutil.CopyFile(cached, out)
}

func sizeNote(n, budget int64) string {
	return fmt.Sprintf("%s (%d bytes; budget %s)", bytesize.MiB(n), n, bytesize.MiB(budget))
}

// prune keeps the newest keep files of dir.
func prune(dir string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type f struct {
		name string
		mod  time.Time
	}
	var fs []f
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			fs = append(fs, f{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].mod.After(fs[j].mod) })
	for i := keep; i < len(fs); i++ {
		os.Remove(filepath.Join(dir, fs[i].name))
	}
}

// repoRoot is the directory of the main module's go.mod.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("mklinuxboot must run inside the lunboot module (go env GOMOD is empty), or be given -config")
	}
	return filepath.Dir(gomod), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
