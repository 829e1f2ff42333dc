package handoff

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/kmod"
)

// Carry-in (ModeCarry): lunboot appends a cpio to the OS initrd that runs
// its own initiator in the OS's early userspace. Its layout:
//
//	lunboot/lunboot                     the running image's lunboot binary
//	lunboot/carry.json                  CarrySettings, mode 0600 (CHAP secrets)
//	lunboot/lib/modules/<rel>/…         the OS kernel's modules, as shipped
//	lunboot/lib/modules/<rel>/lunboot.order   their load order (package kmod)
//	scripts/local-top/lunboot           the initramfs-tools hook
//	scripts/local-top/ORDER             the initrd's ORDER with the hook first
//
// or, for a dracut initrd (a systemd initrd: /init is systemd, dracut's
// hooks run from its dracut-*.service units), instead of the last two:
//
//	etc/systemd/system/lunboot-carry.service                   the unit (CarryUnit)
//	etc/systemd/system/initrd.target.wants/lunboot-carry.service  a symlink to it
//
// The kernel unpacks the archives of an initrd one after another into the
// same rootfs, a later file replacing an earlier one of the same name
// (init/initramfs.c), so the appended ORDER replaces the initrd's own.
const (
	CarryDir          = "lunboot"
	CarryBinary       = CarryDir + "/lunboot"
	CarrySettingsPath = CarryDir + "/carry.json"
	CarryHookPath     = "scripts/local-top/lunboot"
	carryOrderPath    = "scripts/local-top/ORDER"
	CarryUnitPath     = "etc/systemd/system/" + carryUnitName
	CarryUnitWants    = "etc/systemd/system/initrd.target.wants/" + carryUnitName
	carryUnitName     = "lunboot-carry.service"
)

// CarryModulesWanted are the data path's modules besides the NIC driver:
// the kernel's NBD client, through which the carried lunboot serves the LUN.
var CarryModulesWanted = []string{"nbd"}

// CarrySettingsVersion is CarrySettings.V.
const CarrySettingsVersion = 1

// CarrySettings is what the carried lunboot needs to log in again from the
// OS's initrd. It travels only inside the in-memory initrd (mode 0600),
// never on a command line: it holds the CHAP secrets.
type CarrySettings struct {
	V int `json:"v"`
	// Portal is the target's address and port as the firmware session used
	// them (after any redirection); Target its IQN; LUN the LUN as Linux
	// numbers it; ISID the session's ISID (12 hex digits), kept across
	// the jump.
	Portal    string `json:"portal"`
	Target    string `json:"target"`
	LUN       uint64 `json:"lun"`
	Initiator string `json:"initiator"`
	ISID      string `json:"isid,omitempty"`
	// CHAP credentials, when the target demanded them.
	CHAPUser         string `json:"chap_user,omitempty"`
	CHAPSecret       string `json:"chap_secret,omitempty"`
	CHAPTargetUser   string `json:"chap_target_user,omitempty"`
	CHAPTargetSecret string `json:"chap_target_secret,omitempty"`
	// HeaderDigest and DataDigest are the policies ("", "crc32c",
	// "prefer").
	HeaderDigest string `json:"header_digest,omitempty"`
	DataDigest   string `json:"data_digest,omitempty"`
	// MAC names the boot NIC; Address (CIDR) and Gateway are the
	// firmware's configuration of it, reused as is: the lease is still
	// valid and the OS's DHCP client, if any, renews it later.
	MAC     string `json:"mac"`
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	// Release is the OS kernel release the carried modules are for.
	Release string `json:"release"`
	// NBD is the /dev/nbdN index to serve the LUN on.
	NBD int `json:"nbd"`
	// Overlay is lunboot.overlay= ("ram", "lun:<hex>"; "" for none) and
	// OverlaySize lunboot.overlay_size= as given ("" for the default):
	// the LUN is then a golden image, opened read-only (overlay.go).
	Overlay     string `json:"overlay,omitempty"`
	OverlaySize string `json:"overlay_size,omitempty"`
}

// Validate checks the fields the daemon cannot do without.
func (s *CarrySettings) Validate() error {
	var miss []string
	for _, f := range []struct{ name, v string }{{"portal", s.Portal}, {"target", s.Target},
		{"initiator", s.Initiator}, {"mac", s.MAC}, {"address", s.Address}, {"release", s.Release}} {
		if f.v == "" {
			miss = append(miss, f.name)
		}
	}
	if s.V != CarrySettingsVersion {
		return fmt.Errorf("carry settings: version %d, want %d", s.V, CarrySettingsVersion)
	}
	if len(miss) > 0 {
		return fmt.Errorf("carry settings: missing %s", strings.Join(miss, ", "))
	}
	if _, err := ParseOverlay(s.Overlay); err != nil {
		return fmt.Errorf("carry settings: %w", err)
	}
	if s.OverlaySize != "" {
		if _, _, err := ParseOverlaySize(s.OverlaySize); err != nil {
			return fmt.Errorf("carry settings: %w", err)
		}
	}
	if (s.CHAPUser == "") != (s.CHAPSecret == "") || (s.CHAPTargetUser == "") != (s.CHAPTargetSecret == "") {
		return errors.New("carry settings: a CHAP user without its secret or the other way round")
	}
	return nil
}

// ParseCarrySettings decodes and validates carry.json.
func ParseCarrySettings(b []byte) (*CarrySettings, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s CarrySettings
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("carry settings: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// CarryModule is one OS kernel module to carry.
type CarryModule struct {
	// Name is the kernel's module name; Rel its file relative to
	// lib/modules/<release> on the LUN, compressed or not as shipped
	// (".ko", ".ko.xz", ".ko.zst", ".ko.gz"); Depends the earlier modules
	// it needs.
	Name    string
	Rel     string
	Depends []string
}

// ModuleDep is an OS kernel's modules.dep, as depmod(8) writes it on the
// installed system ("kernel/drivers/net/virtio_net.ko.xz: kernel/…/net_failover.ko.xz …"),
// and its modules.builtin.
type ModuleDep struct {
	files   map[string]string   // name -> rel path
	deps    map[string][]string // name -> dependency names
	builtin map[string]bool
}

// moduleName is the kernel's name for a module file, compressed or not.
func moduleName(rel string) string {
	b := path.Base(rel)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return normModule(strings.TrimSuffix(b, ".ko"))
}

// ParseModuleDep reads modules.dep and, when not nil, modules.builtin.
func ParseModuleDep(dep, builtin io.Reader) (*ModuleDep, error) {
	m := &ModuleDep{files: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(dep)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		file, rest, ok := strings.Cut(t, ":")
		if !ok || !strings.Contains(path.Base(file), ".ko") {
			return nil, fmt.Errorf("modules.dep line %d: %q is not \"<module>: <dependencies>\"", line, t)
		}
		if path.IsAbs(file) || strings.Contains("/"+file+"/", "/../") {
			return nil, fmt.Errorf("modules.dep line %d: %q leaves the module directory", line, file)
		}
		n := moduleName(file)
		m.files[n] = file
		for _, d := range strings.Fields(rest) {
			m.deps[n] = append(m.deps[n], moduleName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	if len(m.files) == 0 {
		return nil, errors.New("modules.dep lists no module")
	}
	if builtin != nil {
		sc := bufio.NewScanner(builtin)
		for sc.Scan() {
			if t := strings.TrimSpace(sc.Text()); t != "" {
				m.builtin[moduleName(t)] = true
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read modules.builtin: %w", err)
		}
	}
	return m, nil
}

// MissingModulesError is Resolve's error when the OS kernel has some of
// the modules asked for neither in modules.dep nor built in.
type MissingModulesError struct {
	Names []string
}

func (e *MissingModulesError) Error() string {
	return fmt.Sprintf("the OS kernel has no module %s (neither in modules.dep nor built in)", strings.Join(e.Names, ", "))
}

// Resolve returns the modules to load for names, dependencies first. A
// built-in name needs nothing; a name neither built in nor listed is an
// error naming it.
func (m *ModuleDep) Resolve(names []string) ([]CarryModule, error) {
	var out []CarryModule
	state := map[string]int{} // 1 visiting, 2 done
	var missing []string
	var visit func(n string, stack []string) error
	visit = func(n string, stack []string) error {
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("modules.dep: dependency cycle %s -> %s", strings.Join(stack, " -> "), n)
		}
		if m.builtin[n] {
			state[n] = 2
			return nil
		}
		rel, ok := m.files[n]
		if !ok {
			missing = append(missing, n)
			state[n] = 2
			return nil
		}
		state[n] = 1
		// modules.dep lists every transitive dependency; visiting each
		// orders them, whatever order depmod wrote them in.
		deps := append([]string(nil), m.deps[n]...)
		sort.Strings(deps)
		var direct []string
		for _, d := range deps {
			if err := visit(d, append(stack, n)); err != nil {
				return err
			}
			if !m.builtin[d] {
				if _, ok := m.files[d]; ok {
					direct = append(direct, d)
				}
			}
		}
		state[n] = 2
		out = append(out, CarryModule{Name: n, Rel: rel, Depends: direct})
		return nil
	}
	for _, n := range names {
		if err := visit(normModule(n), nil); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return out, &MissingModulesError{Names: missing}
	}
	return out, nil
}

// OSModules finds the OS kernel's module tree for release on the LUN's
// file systems (lib/modules/<release> or usr/lib/modules/<release>) and
// reads its modules.dep. The error says what is missing and what to do.
func OSModules(parts []fs.FS, release string) (fs.FS, string, *ModuleDep, error) {
	if release == "" {
		return nil, "", nil, errors.New("the OS kernel's release is unknown, so its module tree cannot be found")
	}
	for _, p := range parts {
		for _, dir := range []string{"lib/modules/" + release, "usr/lib/modules/" + release} {
			dep, err := p.Open(dir + "/modules.dep")
			if err != nil {
				continue
			}
			var builtin io.Reader
			if b, err := p.Open(dir + "/modules.builtin"); err == nil {
				defer b.Close()
				builtin = b
			}
			md, err := ParseModuleDep(dep, builtin)
			dep.Close()
			if err != nil {
				return nil, "", nil, fmt.Errorf("%s/modules.dep on the LUN: %w", dir, err)
			}
			return p, dir, md, nil
		}
	}
	return nil, "", nil, fmt.Errorf("no lib/modules/%s/modules.dep on the LUN: the OS kernel's module tree is missing: %w", release, ErrNoModuleTree)
}

// ErrNoModuleTree is matched by errors.Is when the OS kernel's module tree
// is not on the LUN.
var ErrNoModuleTree = errors.New("no module tree")

// CarryPlan is what the carry cpio will hold, found before the decision so
// that Decide knows whether carry-in can work.
type CarryPlan struct {
	// Generator is the OS initrd's make: it decides the hook.
	Generator Generator
	Release   string
	// Root is the file system holding the module tree and Dir the tree.
	Root    fs.FS
	Dir     string
	Modules []CarryModule
}

// PlanCarry checks whether carry-in can work for an OS whose initrd is in
// (nil when not inspected), kernel release is release and boot NIC is
// driven by nicModule (empty when built in or unknown), with the LUN's
// mounted file systems parts. busModules are the drivers of the devices the
// NIC hangs off (virtio_pci for virtio_net): carried when the OS kernel has
// them as modules, since an initrd built with MODULES=dep may lack them,
// and left out when it has not (built in, or another bus).
func PlanCarry(in *Initrd, parts []fs.FS, release, nicModule string, busModules ...string) (*CarryPlan, CarryCheck) {
	if in == nil {
		return nil, CarryCheck{Why: "the OS initrd could not be read", Fix: "give the entry a readable initrd"}
	}
	switch in.Generator {
	case GeneratorInitramfsTools, GeneratorDracut:
	default:
		return nil, CarryCheck{Why: "the OS initrd's generator is unknown: carry-in hooks into initramfs-tools and dracut initrds only"}
	}
	root, dir, md, err := OSModules(parts, release)
	if errors.Is(err, ErrNoModuleTree) {
		return nil, CarryCheck{Why: err.Error(), Fix: advice.CarryModuleTree(release)}
	}
	if err != nil {
		return nil, CarryCheck{Why: err.Error(), Fix: "repair the OS kernel's modules.dep on the LUN: run depmod " + release + " in the OS; or use an initrd with iSCSI support"}
	}
	var want []string
	for _, b := range busModules {
		if _, ok := md.files[normModule(b)]; ok {
			want = append(want, b)
		}
	}
	if nicModule != "" {
		want = append(want, nicModule)
	}
	want = append(want, CarryModulesWanted...)
	mods, err := md.Resolve(want)
	if me := (*MissingModulesError)(nil); errors.As(err, &me) {
		return nil, CarryCheck{Why: err.Error() + " in " + dir, Fix: advice.CarryModules(me.Names)}
	}
	if err != nil {
		return nil, CarryCheck{Why: err.Error() + " in " + dir, Fix: "repair the OS kernel's modules.dep on the LUN: run depmod " + release + " in the OS"}
	}
	return &CarryPlan{Generator: in.Generator, Release: release, Root: root, Dir: dir, Modules: mods}, CarryCheck{OK: true}
}

// CarryHook is the initramfs-tools local-top script: it runs the carried
// lunboot, which loads the modules, configures the NIC, logs in and
// attaches the LUN, then leaves its daemon behind (argv[0] "@lunboot") and
// returns; initramfs-tools then finds root= on the LUN's partitions as on
// a local disk. A failure drops to initramfs-tools' panic shell with the
// reason.
const CarryHook = `#!/bin/sh
# lunboot carry-in (lunboot.handoff=carry): appended to this initrd by
# lunboot before kexec. It logs in to the iSCSI root again and serves the
# LUN as /dev/nbd0 before initramfs-tools looks for root=.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
. /scripts/functions
log_begin_msg "lunboot carry-in: logging in to the iSCSI root"
if ! /` + CarryBinary + ` carry --settings /` + CarrySettingsPath + ` start; then
	panic "lunboot carry-in failed (see the lines above); the root disk is not available"
fi
log_end_msg
`

// CarryUnit is the dracut hook: a unit of dracut's systemd initrd that
// runs the carried lunboot as the initramfs-tools hook does. Why so:
//   - dracut's own hooks run too late or in the wrong place: pre-mount
//     runs after dracut-initqueue.service, whose main loop waits for the
//     root= device first; the initqueue and pre-mount units run their hooks
//     with KillMode=process, but their files come from the OS, not from us.
//     A unit of its own, DefaultDependencies=no, ordered after udev has
//     replayed the kernel's events (systemd-udev-trigger.service: udevd
//     then sees nbd0's partitions appear and makes the by-uuid links root=
//     is found by) and before dracut-initqueue.service and the root device
//     wait (initrd-root-device.target, sysroot.mount), makes /dev/nbd0 first.
//   - The daemon must outlive this unit. The unit is stopped when the
//     initrd isolates initrd-switch-root.target, and after switch-root the
//     OS's systemd knows it only by name (its file stays in the initrd), so
//     its KillMode would fall back to control-group at shutdown and the
//     daemon would be killed with the root still mounted. So `carry start`
//     moves the daemon out of the unit's cgroup into the root cgroup, where
//     the initramfs-tools hook's daemon is from the start (the OS's
//     systemd moves both into init.scope when it starts, and never stops
//     that): no unit's stop kills it, and systemd-shutdown's final kill spares it by its argv[0]
//     '@' (systemd.io/ROOT_STORAGE_DAEMONS). KillMode=process keeps a stop
//     of the unit off the daemon even before the move.
//   - A failure fails the unit; OnFailure= takes dracut's emergency shell.
const CarryUnit = `# lunboot carry-in (lunboot.handoff=carry): appended to this initrd by
# lunboot before kexec. It logs in to the iSCSI root again and serves the
# LUN as /dev/nbd0 before dracut looks for root=.
[Unit]
Description=lunboot carry-in: iSCSI root served as /dev/nbd0
DefaultDependencies=no
After=systemd-udevd.service systemd-udev-trigger.service
Before=dracut-initqueue.service initrd-root-device.target sysroot.mount
OnFailure=emergency.target
OnFailureJobMode=isolate

[Service]
Type=oneshot
RemainAfterExit=yes
KillMode=process
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/` + CarryBinary + ` carry --settings /` + CarrySettingsPath + ` start
`

// CarryOrder returns the local-top ORDER with the hook first: the
// initrd's own ORDER (nil when it has none) keeps its lines after it.
func CarryOrder(own []byte) []byte {
	var b bytes.Buffer
	b.WriteString("/" + CarryHookPath + " \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n")
	for _, l := range strings.Split(string(own), "\n") {
		if strings.Contains(l, CarryHookPath) || strings.TrimSpace(l) == "" {
			continue
		}
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

// CarryInput is what WriteCarry packs.
type CarryInput struct {
	// Binary is the running lunboot (/proc/self/exe), BinarySize bytes
	// of it: streamed into the cpio, never held in memory.
	Binary     io.Reader
	BinarySize int64
	// Plan says which modules to take from where.
	Plan *CarryPlan
	// Settings are written as carry.json.
	Settings *CarrySettings
	// Order is the OS initrd's scripts/local-top/ORDER, nil if none.
	Order []byte
}

// CarryContents summarises a built carry cpio for the console.
type CarryContents struct {
	Size        int64
	BinarySize  int64
	Modules     []string // module files, relative to lib/modules/<rel>
	ModuleBytes int
	// Hook is the hook's file: the local-top script or the systemd unit.
	Hook string
}

// WriteCarry writes the carry cpio (uncompressed newc, padded to 512
// bytes) to out and says what it holds. The OS modules are read before
// anything is written, so that a module the LUN cannot give fails the
// build with nothing written.
func WriteCarry(out io.Writer, in CarryInput) (*CarryContents, error) {
	if in.Plan == nil || in.Settings == nil || in.Binary == nil || in.BinarySize <= 0 {
		return nil, errors.New("carry: WriteCarry needs the binary, the plan and the settings")
	}
	if err := in.Settings.Validate(); err != nil {
		return nil, err
	}
	settings, err := json.Marshal(in.Settings)
	if err != nil {
		return nil, fmt.Errorf("carry: encode settings: %w", err)
	}
	modules := make([][]byte, len(in.Plan.Modules))
	for i, m := range in.Plan.Modules {
		if modules[i], err = fs.ReadFile(in.Plan.Root, in.Plan.Dir+"/"+m.Rel); err != nil {
			return nil, fmt.Errorf("carry: read the OS module %s from the LUN: %w", m.Rel, err)
		}
	}
	c := &CarryContents{BinarySize: in.BinarySize}
	w := newcWriter{W: out}
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var chain []string
		for d := path.Dir(p); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			dirs[chain[i]] = true
			w.add(chain[i], modeDir|0o755, nil)
		}
	}
	file := func(p string, mode uint32, data []byte) {
		mkdirs(p)
		w.add(p, modeRegular|mode, data)
	}
	mkdirs(CarryBinary)
	w.addFrom(CarryBinary, modeRegular|0o755, in.Binary, in.BinarySize)
	file(CarrySettingsPath, 0o600, settings)
	modDir := CarryDir + "/lib/modules/" + in.Plan.Release
	var entries []kmod.Entry
	for i, m := range in.Plan.Modules {
		data := modules[i]
		file(modDir+"/"+m.Rel, 0o644, data)
		c.Modules = append(c.Modules, m.Rel)
		c.ModuleBytes += len(data)
		entries = append(entries, kmod.Entry{Name: m.Name, Path: m.Rel, Depends: m.Depends})
	}
	var order bytes.Buffer
	if err := kmod.WriteOrder(&order, "lunboot carry-in: the OS kernel's modules for the data path", entries); err != nil {
		return nil, fmt.Errorf("carry: %w", err)
	}
	file(modDir+"/"+kmod.OrderFile, 0o644, order.Bytes())
	switch in.Plan.Generator {
	case GeneratorDracut:
		file(CarryUnitPath, 0o644, []byte(CarryUnit))
		c.Hook = CarryUnitPath
		mkdirs(CarryUnitWants)
		w.add(CarryUnitWants, modeSymlink|0o777, []byte("../"+carryUnitName))
	default:
		file(CarryHookPath, 0o755, []byte(CarryHook))
		c.Hook = CarryHookPath
		file(carryOrderPath, 0o644, CarryOrder(in.Order))
	}
	if err := w.finish(); err != nil {
		return nil, fmt.Errorf("carry: write the cpio: %w", err)
	}
	c.Size = w.n
	return c, nil
}

// AppendCarry writes the OS initrd, zero padding to a 4-byte boundary
// (the kernel's cpio parser needs headers 4-byte aligned and skips zeros
// between archives) and the carry cpio (WriteCarry) to w, and returns the
// bytes written in all.
func AppendCarry(w io.Writer, osInitrd io.Reader, in CarryInput) (int64, *CarryContents, error) {
	n, err := io.Copy(w, osInitrd)
	if err != nil {
		return n, nil, fmt.Errorf("carry: copy the OS initrd: %w", err)
	}
	if pad := (4 - n%4) % 4; pad > 0 {
		m, err := w.Write(make([]byte, pad))
		n += int64(m)
		if err != nil {
			return n, nil, err
		}
	}
	c, err := WriteCarry(w, in)
	if c != nil {
		n += c.Size
	}
	return n, c, err
}
