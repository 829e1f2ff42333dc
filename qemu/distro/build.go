package distro

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/flock"
	"github.com/lunboot/lunboot/internal/testenv"
)

// Recipe versions: bump one when its stage changes in a way its key's other
// inputs cannot see.
const (
	baseRecipe      = "distro-base-v1"
	dracutRecipe    = "distro-dracut-v1"
	noISCSIRecipe   = "distro-noiscsi-v1"
	targetcliRecipe = "distro-targetcli-v1"
	diskRecipe      = "distro-disk-v1"
)

// basePackages are debootstrap's --include list on top of minbase: the
// kernel, the iSCSI initiator and the initrd generator that knows it,
// systemd as init, and a DHCP client and ifupdown as a Debian install has;
// iproute2 and procps for looking around at the login prompt.
var basePackages = []string{
	"linux-image-amd64", "open-iscsi", "initramfs-tools", "systemd-sysv", "udev",
	"ifupdown", "isc-dhcp-client", "iproute2", "procps",
}

// dracutPackages replace initramfs-tools (dracut conflicts with it);
// dracut-network brings the iscsi and network-legacy modules, dbus and
// procps are what dracut's systemd modules and scripts call.
var dracutPackages = []string{"dracut", "dracut-network", "dbus", "procps"}

// dracutConf is the dracut configuration of the dracut system. Debian's
// iscsid.service runs /lib/open-iscsi/startup-checks.sh first and fails
// ("Initiatorname required") without it and iscsid.conf, which dracut's
// iscsi module does not install (dracutdevs/dracut#2498).
const dracutConf = `# lunboot distro: a generic (not host-only) initrd that can boot from iSCSI.
hostonly="no"
add_dracutmodules+=" iscsi network-legacy "
omit_dracutmodules+=" systemd-networkd network-manager "
install_items+=" /lib/open-iscsi/startup-checks.sh /etc/iscsi/iscsid.conf "
`

// dracutArgs build the initrd. network-legacy rather than the default
// systemd-networkd backend: with networkd, dracut 059 gets a DHCP lease but
// never runs the iSCSI login.
var dracutArgs = []string{"--force", "--no-hostonly", "--add", "iscsi network-legacy", "--omit", "systemd-networkd network-manager"}

// targetcliPackages are installed in a copy of the base root for the LIO
// target VM, which runs docs/targets.md's targetcli commands chrooted into
// it (qemu/lab LIOOptions.Share): Debian's targetcli-fb and what it pulls
// in (python3, rtslib-fb, configshell-fb), and dbus: targetcli asks the
// system bus for tcmu-runner's backstores at every start and exits when
// there is no bus (targetcli/ui_backstore.py _user_backstores).
var targetcliPackages = []string{"targetcli-fb", "dbus"}

// stageRecord is a built root stage's stage.json.
type stageRecord struct {
	Name          string        `json:"name"`
	Key           string        `json:"key"`
	KernelRelease string        `json:"kernel_release"`
	Built         time.Time     `json:"built"`
	Took          time.Duration `json:"took"`
}

// stage is a root tree: root/ (with an empty /boot) and boot/ (the
// separate boot file system's contents).
type stage struct {
	stageRecord
	dir string
}

func (s *stage) root() string { return filepath.Join(s.dir, "root") }
func (s *stage) boot() string { return filepath.Join(s.dir, "boot") }

type builder struct {
	opts    Options
	log     *slog.Logger
	dir     string
	unlock  func()
	mirror  string
	release string
	keys    map[string]string // stage name → key
	stages  map[string]*stage
	set     *Set
	r       *runner
	logFile *os.File
}

func newBuilder(ctx context.Context, opts Options) (*builder, error) {
	b := &builder{opts: opts, log: opts.Log, dir: opts.Cache, stages: map[string]*stage{}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.dir == "" {
		b.dir = defaultCache()
	}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("distro: %w", err)
	}
	// Tests in several packages may build at once: the others wait.
	unlock, err := flock.Lock(ctx, filepath.Join(b.dir, ".lock"), func() {
		b.log.Info("waiting for another build of the same cache", "dir", b.dir)
	})
	if err != nil {
		return nil, err
	}
	b.unlock = unlock
	b.mirror = opts.Mirror
	if b.mirror == "" {
		if b.mirror, err = FindMirror("/etc", Suite); err != nil {
			b.close()
			return nil, err
		}
	}
	b.release = ReleaseDate("/var/lib/apt/lists", b.mirror, Suite)
	b.r = &runner{log: b.log}
	return b, nil
}

func (b *builder) close() {
	if b.logFile != nil {
		b.logFile.Close()
	}
	if b.unlock != nil {
		b.unlock()
	}
}

// debootstrapVersion identifies the installed debootstrap, whose scripts
// decide what a minbase root holds.
func debootstrapVersion() string {
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "debootstrap").Output(); err == nil && len(out) > 0 {
		return string(out)
	}
	if p, err := exec.LookPath("debootstrap"); err == nil {
		if s, err := fileHash(p); err == nil {
			return s
		}
	}
	return "unknown"
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// stageKeys computes every stage's key. The Release date is left out when
// apt has no copy (offline machines keep their cache).
func (b *builder) stageKeys() map[string]string {
	base := key(baseRecipe, Suite, b.mirror, "amd64", "minbase", strings.Join(basePackages, ","),
		debootstrapVersion(), b.release, RootPassword)
	return map[string]string{
		NameDebian:  base,
		NameDracut:  key(dracutRecipe, base, strings.Join(dracutPackages, ","), dracutConf, strings.Join(dracutArgs, "\x00")),
		NameNoISCSI: key(noISCSIRecipe, base),
		// Not a system (no disk): a root tree the LIO VM chroots into.
		StageTargetcli: key(targetcliRecipe, base, strings.Join(targetcliPackages, ",")),
	}
}

// repoRoot is the lunboot module to build the proof program from.
func (b *builder) repoRoot() (string, error) {
	root := b.opts.RepoRoot
	if root == "" {
		root = testenv.RepoRoot()
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(data), "module github.com/lunboot/lunboot\n") {
		return "", fmt.Errorf("distro: %s is not the lunboot module (set Options.RepoRoot): %v", root, err)
	}
	return root, nil
}

// buildProof compiles the proof program for the guests (static, baseline
// amd64) and returns its path and hash; Go's build cache makes a repeat
// build take a moment.
func (b *builder) buildProof(ctx context.Context) (string, string, error) {
	root, err := b.repoRoot()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(b.dir, "tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	bin := filepath.Join(dir, "lunboot-proof")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1")
	if _, err := b.r.run(ctx, cmdSpec{dir: root, env: env, argv: []string{"go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", bin, "./qemu/distro/cmd/lunboot-proof"}}); err != nil {
		return "", "", fmt.Errorf("distro: build the proof program: %w", err)
	}
	sum, err := fileHash(bin)
	if err != nil {
		return "", "", err
	}
	return bin, sum, nil
}

// sysSpec describes one system.
type sysSpec struct {
	name      string
	generator string
	iscsi     bool
	// stage is the root stage the disk is made from (name when empty).
	stage  string
	layout string
}

func (sp sysSpec) stageName() string {
	if sp.stage != "" {
		return sp.stage
	}
	return sp.name
}

var specs = []sysSpec{
	{NameDebian, "initramfs-tools", true, "", LayoutBLS},
	{NameDracut, "dracut", true, "", LayoutBLS},
	{NameNoISCSI, "initramfs-tools", false, "", LayoutBLS},
	// The Debian root again, as the UEFI installer lays it out: no
	// second debootstrap, one more disk assembly (about a minute).
	{NameDebianUEFI, "initramfs-tools", true, NameDebian, LayoutUEFI},
}

func (b *builder) build(ctx context.Context) (*Set, error) {
	b.set = &Set{Dir: b.dir, Mirror: b.mirror, Suite: Suite, ReleaseDate: b.release}
	proofBin, proofSum, err := b.buildProof(ctx)
	if err != nil {
		return nil, err
	}
	b.keys = b.stageKeys()
	src := sourceHash()

	type todo struct {
		spec sysSpec
		key  string
	}
	for _, n := range b.opts.Only {
		if !slices.ContainsFunc(specs, func(sp sysSpec) bool { return sp.name == n }) {
			return nil, fmt.Errorf("distro: no system %q (have debian, dracut, noiscsi, debian-uefi)", n)
		}
	}
	var stale []todo
	for _, sp := range specs {
		if len(b.opts.Only) > 0 && !slices.Contains(b.opts.Only, sp.name) {
			continue
		}
		k := key(diskRecipe, sp.name, b.keys[sp.stageName()], proofSum, src, sp.layout)
		m, err := readManifest(filepath.Join(b.dir, sp.name, ManifestFile))
		if err == nil && !b.opts.Force && m.Key == k && m.intact() {
			b.log.Info("up to date", "system", sp.name, "disk", m.Disk, "key", k[:12])
			b.setSystem(m)
			continue
		}
		why := "no manifest"
		switch {
		case b.opts.Force:
			why = "forced"
		case err == nil && m.Key != k:
			why = "inputs changed"
		case err == nil:
			why = "files missing"
		}
		b.log.Info("needs building", "system", sp.name, "why", why)
		stale = append(stale, todo{sp, k})
	}
	if len(stale) > 0 && b.opts.NoBuild {
		var names []string
		for _, t := range stale {
			names = append(names, t.spec.name)
		}
		return nil, fmt.Errorf("%w: %s", ErrStale, strings.Join(names, ", "))
	}
	if len(stale) == 0 {
		return b.set, nil
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("distro: building the systems needs root (debootstrap, chroot, file ownership in the images)")
	}
	if err := b.openLog(); err != nil {
		return nil, err
	}
	for _, t := range stale {
		start := time.Now()
		st, err := b.ensureStage(ctx, t.spec.stageName())
		if err != nil {
			return nil, err
		}
		sys, err := b.buildDisk(ctx, t.spec, st, proofBin, t.key)
		if err != nil {
			return nil, fmt.Errorf("distro: %s disk: %w", t.spec.name, err)
		}
		sys.BuildTime = time.Since(start).Round(time.Millisecond)
		if err := writeJSON(filepath.Join(b.dir, t.spec.name, ManifestFile), sys); err != nil {
			return nil, fmt.Errorf("distro: %s manifest: %w", t.spec.name, err)
		}
		b.setSystem(sys)
		b.set.Rebuilt = append(b.set.Rebuilt, t.spec.name)
		b.log.Info("built", "system", t.spec.name, "disk", sys.Disk, "took", sys.BuildTime)
	}
	b.pruneStages()
	return b.set, nil
}

func (b *builder) openLog() error {
	f, err := os.OpenFile(filepath.Join(b.dir, "build.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("distro: %w", err)
	}
	fmt.Fprintf(f, "# lunboot distro build %s, mirror %s %s (Release %q)\n", time.Now().Format(time.RFC3339), b.mirror, Suite, b.release)
	b.logFile = f
	b.r.logFile = f
	return nil
}

// intact reports whether the manifest's files are all there.
func (s *System) intact() bool {
	for _, p := range []string{s.Disk, s.Kernel, s.Initrd} {
		info, err := os.Stat(p)
		if err != nil || info.Size() == 0 {
			return false
		}
		if p == s.Disk && info.Size() != s.Size {
			return false
		}
	}
	return true
}

func (b *builder) setSystem(s *System) {
	switch s.Name {
	case NameDebian:
		b.set.Debian = s
	case NameDracut:
		b.set.Dracut = s
	case NameNoISCSI:
		b.set.NoISCSI = s
	case NameDebianUEFI:
		b.set.DebianUEFI = s
	}
}

// stageDir is where stage name with key k lives.
func (b *builder) stageDir(name, k string) string {
	if name == StageTargetcli {
		// Its own folder: builders of other versions prune stages/ of
		// every stage they do not know.
		return filepath.Join(b.dir, StageTargetcli, name+"-"+k[:16])
	}
	return filepath.Join(b.dir, "stages", name+"-"+k[:16])
}

// ensureStage returns the root stage for a system, building it (and the
// base it derives from) when missing.
func (b *builder) ensureStage(ctx context.Context, name string) (*stage, error) {
	if st, ok := b.stages[name]; ok {
		return st, nil
	}
	k := b.keys[name]
	dir := b.stageDir(name, k)
	var rec stageRecord
	if !b.opts.Force {
		if err := readJSON(filepath.Join(dir, "stage.json"), &rec); err == nil && rec.Key == k {
			st := &stage{rec, dir}
			b.stages[name] = st
			b.log.Info("root stage up to date", "stage", name, "dir", dir)
			return st, nil
		}
	}
	var build func(ctx context.Context, tmp string) error
	switch name {
	case NameDebian:
		build = b.buildBase
	case NameDracut, NameNoISCSI, StageTargetcli:
		base, err := b.ensureStage(ctx, NameDebian)
		if err != nil {
			return nil, err
		}
		if name == NameDracut {
			build = func(ctx context.Context, tmp string) error { return b.buildDracut(ctx, base, tmp) }
		} else if name == StageTargetcli {
			build = func(ctx context.Context, tmp string) error { return b.buildTargetcli(ctx, base, tmp) }
		} else {
			build = func(ctx context.Context, tmp string) error { return b.buildNoISCSI(ctx, base, tmp) }
		}
	default:
		return nil, fmt.Errorf("distro: unknown stage %q", name)
	}
	b.log.Info("building root stage", "stage", name)
	start := time.Now()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("distro: clear %s: %w", tmp, err)
	}
	for _, d := range []string{tmp + "/root", tmp + "/boot"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := build(ctx, tmp); err != nil {
		// The log keeps what went wrong (debootstrap's own log included);
		// a half-built tree is only in the way.
		if rerr := os.RemoveAll(tmp); rerr != nil {
			b.log.Warn("remove failed stage", "dir", tmp, "err", rerr)
		}
		return nil, fmt.Errorf("distro: %s root: %w (log: %s)", name, err, filepath.Join(b.dir, "build.log"))
	}
	rel, err := kernelRelease(filepath.Join(tmp, "boot"))
	if err != nil {
		return nil, fmt.Errorf("distro: %s root: %w", name, err)
	}
	rec = stageRecord{Name: name, Key: k, KernelRelease: rel, Built: time.Now().UTC(), Took: time.Since(start).Round(time.Millisecond)}
	if err := writeJSON(filepath.Join(tmp, "stage.json"), rec); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	b.log.Info("root stage built", "stage", name, "kernel", rel, "took", rec.Took)
	b.set.Stages = append(b.set.Stages, StageTime{name, rec.Took})
	st := &stage{rec, dir}
	b.stages[name] = st
	return st, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// kernelRelease finds the one kernel in a boot folder.
func kernelRelease(boot string) (string, error) {
	ms, _ := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if len(ms) != 1 {
		return "", fmt.Errorf("want one kernel in %s, found %d", boot, len(ms))
	}
	rel := strings.TrimPrefix(filepath.Base(ms[0]), "vmlinuz-")
	if _, err := os.Stat(filepath.Join(boot, "initrd.img-"+rel)); err != nil {
		return "", fmt.Errorf("kernel %s has no initrd: %w", rel, err)
	}
	return rel, nil
}

// buildBase debootstraps the Debian root, moves /boot's contents to the
// stage's boot folder and sets the root password.
func (b *builder) buildBase(ctx context.Context, tmp string) error {
	root, boot := filepath.Join(tmp, "root"), filepath.Join(tmp, "boot")
	b.log.Info("debootstrap", "suite", Suite, "mirror", b.mirror, "include", strings.Join(basePackages, ","))
	// In a private mount namespace: debootstrap mounts /proc and /sys in
	// the target itself and would leave them behind if killed.
	if _, err := b.r.run(ctx, cmdSpec{privateMounts: true, argv: []string{"debootstrap", "--variant=minbase", "--arch=amd64",
		"--include=" + strings.Join(basePackages, ","), Suite, root, b.mirror}}); err != nil {
		if log, rerr := os.ReadFile(filepath.Join(root, "debootstrap", "debootstrap.log")); rerr == nil {
			fmt.Fprintf(b.logFile, "--- debootstrap.log ---\n%s\n", log)
		}
		return fmt.Errorf("debootstrap %s from %s (is the mirror reachable?): %w", Suite, b.mirror, err)
	}
	if err := moveBoot(root, boot); err != nil {
		return err
	}
	_, err := b.r.chroot(ctx, root, boot, false, "/bin/sh", "-c", "echo 'root:"+RootPassword+"' | chpasswd")
	return err
}

// moveBoot moves the contents of root/boot into boot, leaving root/boot an
// empty mount point: the disk has a separate boot partition.
func moveBoot(root, boot string) error {
	ents, err := os.ReadDir(filepath.Join(root, "boot"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(root, "boot", e.Name()), filepath.Join(boot, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copyStage copies a stage's trees (cp -a keeps owners, modes, links,
// xattrs; --reflink shares blocks where the file system can).
func (b *builder) copyStage(ctx context.Context, from *stage, tmp string) error {
	for _, d := range []string{"root", "boot"} {
		if err := os.RemoveAll(filepath.Join(tmp, d)); err != nil {
			return err
		}
		if _, err := b.r.run(ctx, cmdSpec{argv: []string{"cp", "-a", "--reflink=auto", filepath.Join(from.dir, d), filepath.Join(tmp, d)}}); err != nil {
			return err
		}
	}
	return nil
}

// buildDracut installs dracut in a copy of the base root and builds the
// initrd with it.
func (b *builder) buildDracut(ctx context.Context, base *stage, tmp string) error {
	if err := b.copyStage(ctx, base, tmp); err != nil {
		return err
	}
	root, boot := filepath.Join(tmp, "root"), filepath.Join(tmp, "boot")
	if err := os.MkdirAll(filepath.Join(root, "etc/dracut.conf.d"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/dracut.conf.d/90-lunboot.conf"), []byte(dracutConf), 0o644); err != nil {
		return err
	}
	rel := base.KernelRelease
	return withPolicy(root, func() error {
		if _, err := b.r.chroot(ctx, root, boot, true, "apt-get", "update"); err != nil {
			return fmt.Errorf("apt-get update in the root (is the mirror reachable?): %w", err)
		}
		if _, err := b.r.chroot(ctx, root, boot, true, append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, dracutPackages...)...); err != nil {
			return err
		}
		args := append(append([]string{"dracut"}, dracutArgs...), "/boot/initrd.img-"+rel, rel)
		if _, err := b.r.chroot(ctx, root, boot, false, args...); err != nil {
			return err
		}
		_, err := b.r.chroot(ctx, root, boot, false, "apt-get", "clean")
		return err
	})
}

// buildTargetcli installs targetcli-fb in a copy of the base root: an apt
// install on a root that already has libc, systemd's libraries and apt,
// cheaper than a debootstrap of its own (7m20s for minbase plus
// targetcli-fb on the loaded lab machine).
func (b *builder) buildTargetcli(ctx context.Context, base *stage, tmp string) error {
	if err := b.copyStage(ctx, base, tmp); err != nil {
		return err
	}
	root, boot := filepath.Join(tmp, "root"), filepath.Join(tmp, "boot")
	return withPolicy(root, func() error {
		if _, err := b.r.chroot(ctx, root, boot, true, "apt-get", "update"); err != nil {
			return fmt.Errorf("apt-get update in the root (is the mirror reachable?): %w", err)
		}
		if _, err := b.r.chroot(ctx, root, boot, true, append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, targetcliPackages...)...); err != nil {
			return err
		}
		_, err := b.r.chroot(ctx, root, boot, false, "apt-get", "clean")
		return err
	})
}

// TargetcliRoot returns a Debian root tree with targetcli-fb installed
// (for the LIO target VM to chroot into), building it from the base root
// (and that first, when missing) unless it is up to date. With
// opts.NoBuild a missing or stale tree is ErrStale.
func TargetcliRoot(ctx context.Context, opts Options) (string, error) {
	b, err := newBuilder(ctx, opts)
	if err != nil {
		return "", err
	}
	defer b.close()
	b.set = &Set{Dir: b.dir, Mirror: b.mirror, Suite: Suite, ReleaseDate: b.release}
	b.keys = b.stageKeys()
	k := b.keys[StageTargetcli]
	var rec stageRecord
	if err := readJSON(filepath.Join(b.stageDir(StageTargetcli, k), "stage.json"), &rec); err != nil || rec.Key != k || opts.Force {
		if opts.NoBuild {
			return "", fmt.Errorf("%w: %s root stage", ErrStale, StageTargetcli)
		}
		if os.Geteuid() != 0 {
			return "", errors.New("distro: building the targetcli root needs root (chroot, apt-get)")
		}
		if err := b.openLog(); err != nil {
			return "", err
		}
	}
	st, err := b.ensureStage(ctx, StageTargetcli)
	if err != nil {
		return "", err
	}
	// Trees of other keys are stale.
	ents, _ := os.ReadDir(filepath.Dir(st.dir))
	for _, e := range ents {
		if p := filepath.Join(filepath.Dir(st.dir), e.Name()); p != st.dir {
			b.log.Info("removing stale targetcli root", "dir", p)
			if err := os.RemoveAll(p); err != nil {
				b.log.Warn("remove stale targetcli root", "dir", p, "err", err)
			}
		}
	}
	return st.root(), nil
}

// buildNoISCSI purges open-iscsi from a copy of the base root and rebuilds
// its initrd, which then has no iscsistart, no local-top/iscsi script and
// no iscsi_tcp module.
func (b *builder) buildNoISCSI(ctx context.Context, base *stage, tmp string) error {
	if err := b.copyStage(ctx, base, tmp); err != nil {
		return err
	}
	root, boot := filepath.Join(tmp, "root"), filepath.Join(tmp, "boot")
	return withPolicy(root, func() error {
		if _, err := b.r.chroot(ctx, root, boot, false, "dpkg", "--purge", "open-iscsi"); err != nil {
			return err
		}
		_, err := b.r.chroot(ctx, root, boot, false, "update-initramfs", "-u", "-k", base.KernelRelease)
		return err
	})
}

// buildDisk configures a hard-linked copy of the stage for one system and
// assembles its disk, kernel and initrd under <cache>/<name>/.
func (b *builder) buildDisk(ctx context.Context, sp sysSpec, st *stage, proofBin, k string) (*System, error) {
	work := filepath.Join(b.dir, "tmp", sp.name)
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	root, boot := filepath.Join(work, "root"), filepath.Join(work, "boot")
	for _, d := range []struct{ from, to string }{{st.root(), root}, {st.boot(), boot}} {
		if _, err := b.r.run(ctx, cmdSpec{argv: []string{"cp", "-al", d.from, d.to}}); err != nil {
			return nil, err
		}
	}
	id := idsFor(sp.name)
	cfg := sysConfig{Name: sp.name, KernelRelease: st.KernelRelease, IDs: id, ProofBinary: proofBin, Layout: sp.layout}
	if err := writeFiles(root, rootFiles(cfg)); err != nil {
		return nil, fmt.Errorf("configure root: %w", err)
	}
	esp := filepath.Join(work, "esp")
	if sp.layout == LayoutUEFI {
		// /boot is a folder of the root: the kernel and initrd move
		// in (hard links), beside grub/grub.cfg.
		if err := os.Remove(filepath.Join(root, "boot")); err != nil {
			return nil, fmt.Errorf("configure root: %w", err)
		}
		if err := os.Rename(boot, filepath.Join(root, "boot")); err != nil {
			return nil, fmt.Errorf("configure root: %w", err)
		}
		boot = filepath.Join(root, "boot")
		if err := writeFiles(root, uefiRootFiles(cfg)); err != nil {
			return nil, fmt.Errorf("configure root: %w", err)
		}
		if err := writeFiles(esp, espFiles(cfg)); err != nil {
			return nil, fmt.Errorf("configure ESP: %w", err)
		}
	} else if err := writeFiles(boot, bootFiles(cfg)); err != nil {
		return nil, fmt.Errorf("configure boot: %w", err)
	}
	used, err := treeSize(root)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(b.dir, sp.name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	l := newLayout(used)
	if sp.layout == LayoutUEFI {
		l = newUEFILayout(used)
	}
	b.log.Info("assembling disk", "system", sp.name, "layout", sp.layout, "root_tree_MiB", used>>20, "disk_MiB", l.Total>>20)
	img := filepath.Join(work, "disk.img")
	if sp.layout == LayoutUEFI {
		if err := b.r.assembleUEFI(ctx, img, esp, root, l, id); err != nil {
			return nil, err
		}
	} else if err := b.r.assemble(ctx, img, boot, root, l, id); err != nil {
		return nil, err
	}
	sys := &System{
		Name:          sp.name,
		Disk:          filepath.Join(out, "disk.img"),
		Kernel:        filepath.Join(out, "vmlinuz-"+st.KernelRelease),
		Initrd:        filepath.Join(out, "initrd.img-"+st.KernelRelease),
		KernelRelease: st.KernelRelease,
		RootUUID:      id.Root,
		BootUUID:      id.Boot,
		Cmdline:       entryCmdline(id.Root),
		Entry:         "/loader/entries/" + blsEntryID(st.KernelRelease) + ".conf",
		Layout:        sp.layout,
		Generator:     sp.generator,
		ISCSI:         sp.iscsi,
		Size:          l.Total,
		RootUsed:      used,
		Key:           k,
		Built:         time.Now().UTC(),
	}
	// Remove the previous outputs first: their names carry the kernel
	// release, which a new point release changes.
	old, _ := filepath.Glob(filepath.Join(out, "*"))
	for _, p := range old {
		if filepath.Base(p) != ManifestFile {
			os.Remove(p)
		}
	}
	os.Remove(filepath.Join(out, ManifestFile))
	for _, f := range []struct{ from, to string }{
		{filepath.Join(boot, "vmlinuz-"+st.KernelRelease), sys.Kernel},
		{filepath.Join(boot, "initrd.img-"+st.KernelRelease), sys.Initrd},
	} {
		if _, err := b.r.run(ctx, cmdSpec{argv: []string{"cp", "--sparse=always", f.from, f.to}}); err != nil {
			return nil, err
		}
	}
	if err := os.Rename(img, sys.Disk); err != nil {
		return nil, err
	}
	if sp.layout == LayoutUEFI {
		sys.Entry, sys.BootUUID = "/"+espStubPath, id.ESP
	}
	if sys.Allocated, err = allocated(sys.Disk); err != nil {
		return nil, err
	}
	return sys, nil
}

// pruneStages removes stage folders that no current key names, and all of
// them unless KeepRoots.
func (b *builder) pruneStages() {
	keep := b.opts.KeepRoots == nil || *b.opts.KeepRoots
	want := map[string]bool{}
	if keep {
		for name, k := range b.keys {
			want[filepath.Base(b.stageDir(name, k))] = true
		}
	}
	ents, _ := os.ReadDir(filepath.Join(b.dir, "stages"))
	for _, e := range ents {
		if !want[e.Name()] {
			p := filepath.Join(b.dir, "stages", e.Name())
			b.log.Info("removing root stage", "dir", p)
			if err := os.RemoveAll(p); err != nil {
				b.log.Warn("remove root stage", "dir", p, "err", err)
			}
		}
	}
}
