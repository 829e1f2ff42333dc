package osproof

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/internal/sysfs"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

// Env is where Collect looks. Root prefixes every absolute path it reads
// (/proc, /sys, /dev, /etc), so tests can point it at a fake tree.
type Env struct {
	// Root is "/" on a real system.
	Root string
	// Systemctl runs systemctl with args and returns its trimmed standard
	// output; a non-zero exit with output is not an error for the
	// is-* queries, which report the state on stdout either way. nil skips
	// the systemd checks.
	Systemctl func(ctx context.Context, args ...string) (string, error)
	// Interfaces lists network interfaces; nil skips them.
	Interfaces func() ([]Interface, error)
	// Kernel returns the running kernel's release; nil reads
	// /proc/sys/kernel/osrelease.
	Kernel func() (string, error)
}

// maxEntries bounds what Collect reads from one folder: no real system has
// thousands of sessions or iBFT entries. (sysfs.ReadAttr bounds each file.)
const maxEntries = 512

// Collect gathers the proof. It never fails: what it cannot read is listed
// in Proof.Errors, so the console always gets a line to show.
func Collect(ctx context.Context, env Env) *Proof {
	c := collector{env: env, p: &Proof{V: Version, Root: Root{LUN: -1}}}
	c.p.Cmdline = c.attr("/proc/cmdline", true)
	c.kernel()
	c.osRelease()
	c.uptime()
	c.sessions()
	c.root()
	c.ibft()
	c.efi()
	c.systemd(ctx)
	c.net()
	return c.p
}

type collector struct {
	env Env
	p   *Proof
}

func (c *collector) path(p string) string { return filepath.Join(c.env.Root, p) }

func (c *collector) fail(format string, args ...any) {
	c.p.Errors = append(c.p.Errors, fmt.Sprintf(format, args...))
}

// attr reads a file under Root, recording a failure when required.
func (c *collector) attr(p string, required bool) string {
	s, err := sysfs.ReadAttr(c.path(p))
	if err != nil && required {
		c.fail("read %s: %v", p, err)
	}
	return s
}

func (c *collector) kernel() {
	if c.env.Kernel != nil {
		k, err := c.env.Kernel()
		if err != nil {
			c.fail("kernel release: %v", err)
		}
		c.p.Kernel = k
		return
	}
	c.p.Kernel = c.attr("/proc/sys/kernel/osrelease", false)
}

func (c *collector) osRelease() {
	f, err := os.Open(c.path("/etc/os-release"))
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PRETTY_NAME="); ok {
			c.p.OS = strings.Trim(v, `"'`)
		}
	}
}

func (c *collector) uptime() {
	s := c.attr("/proc/uptime", true)
	if f := strings.Fields(s); len(f) > 0 {
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			c.p.UptimeSeconds = v
		}
	}
}

// listDir returns the names in a folder, sorted, bounded.
func listDir(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(maxEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

var (
	sessionName    = regexp.MustCompile(`^session([0-9]+)$`)
	connectionName = regexp.MustCompile(`^connection([0-9]+):([0-9]+)$`)
	hctlName       = regexp.MustCompile(`^([0-9]+):([0-9]+):([0-9]+):([0-9]+)$`)
)

// sessions reads the iSCSI transport class. A connection belongs to the
// session whose number it carries: the kernel names connections
// "connection<sid>:<cid>" (scsi_transport_iscsi.c iscsi_create_conn).
func (c *collector) sessions() {
	c.p.Sessions = []Session{}
	names, err := listDir(c.path("/sys/class/iscsi_session"))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.fail("list iSCSI sessions: %v", err)
		}
		return
	}
	conns, _ := listDir(c.path("/sys/class/iscsi_connection"))
	for _, n := range names {
		m := sessionName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		dir := "/sys/class/iscsi_session/" + n
		s := Session{
			Name:          n,
			TargetName:    c.attr(dir+"/targetname", true),
			InitiatorName: c.attr(dir+"/initiatorname", true),
			State:         c.attr(dir+"/state", false),
			Connections:   []Connection{},
		}
		for _, cn := range conns {
			cm := connectionName.FindStringSubmatch(cn)
			if cm == nil || cm[1] != m[1] {
				continue
			}
			cd := "/sys/class/iscsi_connection/" + cn
			conn := Connection{
				Name:              cn,
				PersistentAddress: c.attr(cd+"/persistent_address", true),
				Address:           c.attr(cd+"/address", false),
			}
			conn.PersistentPort, _ = strconv.Atoi(c.attr(cd+"/persistent_port", true))
			conn.Port, _ = strconv.Atoi(c.attr(cd+"/port", false))
			s.Connections = append(s.Connections, conn)
		}
		s.Disks = c.sessionDisks(dir)
		c.p.Sessions = append(c.p.Sessions, s)
	}
}

// sessionDisks finds the block devices below a session's device: the SCSI
// devices of its target sit at <session>/device/target*/<h:c:t:l>/block/*.
func (c *collector) sessionDisks(dir string) []SessionDisk {
	matches, _ := filepath.Glob(c.path(dir + "/device/target*/*/block/*"))
	var out []SessionDisk
	for _, m := range matches {
		hctl := filepath.Base(filepath.Dir(filepath.Dir(m)))
		hm := hctlName.FindStringSubmatch(hctl)
		if hm == nil {
			continue
		}
		lun, _ := strconv.Atoi(hm[4])
		out = append(out, SessionDisk{Device: filepath.Base(m), LUN: lun})
	}
	return out
}

// root finds the device mounted at / in mountinfo, resolves it in
// /sys/dev/block and reads its position in the device tree.
func (c *collector) root() {
	r := &c.p.Root
	f, err := os.Open(c.path("/proc/self/mountinfo"))
	if err != nil {
		c.fail("read mountinfo: %v", err)
		return
	}
	defer f.Close()
	s := bufio.NewScanner(io.LimitReader(f, 4<<20))
	s.Buffer(make([]byte, 0, 4096), 64<<10)
	for s.Scan() {
		// proc(5): id parent major:minor root mountpoint options [optional
		// fields…] - fstype source superoptions. The last "/" mount wins:
		// it is the one on top.
		f := strings.Fields(s.Text())
		if len(f) < 7 || f[4] != "/" {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		r.MajMin, r.FSType, r.Source = f[2], f[sep+1], f[sep+2]
	}
	if r.MajMin == "" {
		c.fail("no / mount in mountinfo")
		return
	}
	link := c.path("/sys/dev/block/" + r.MajMin)
	resolved, err := filepath.EvalSymlinks(link)
	if err != nil {
		c.fail("resolve /sys/dev/block/%s: %v", r.MajMin, err)
		return
	}
	rel, err := filepath.Rel(c.path("/"), resolved)
	if err != nil {
		rel = resolved
	}
	r.SysPath = "/" + filepath.ToSlash(rel)
	r.Device = filepath.Base(resolved)
	r.Disk = r.Device
	// A partition's folder sits inside its disk's: …/block/sda/sda2.
	if _, err := os.Stat(filepath.Join(resolved, "partition")); err == nil {
		r.Disk = filepath.Base(filepath.Dir(resolved))
	}
	for _, comp := range strings.Split(r.SysPath, "/") {
		if sessionName.MatchString(comp) {
			r.Session = comp
		}
		if hm := hctlName.FindStringSubmatch(comp); hm != nil {
			r.LUN, _ = strconv.Atoi(hm[4])
		}
	}
	r.ByPath = c.byPath(r.Device)
	if r.Disk != r.Device {
		r.DiskByPath = c.byPath(r.Disk)
	}
}

// byPath lists the /dev/disk/by-path links that point at device.
func (c *collector) byPath(device string) []string {
	out := []string{}
	dir := c.path("/dev/disk/by-path")
	names, err := listDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.fail("list /dev/disk/by-path: %v", err)
		}
		return out
	}
	for _, n := range names {
		target, err := os.Readlink(filepath.Join(dir, n))
		if err == nil && filepath.Base(target) == device {
			out = append(out, n)
		}
	}
	return out
}

// ibft reads every attribute under /sys/firmware/ibft (iscsi_ibft.c: the
// initiator, ethernetN and targetN kobjects, and acpi_header).
func (c *collector) ibft() {
	base := c.path("/sys/firmware/ibft")
	if _, err := os.Stat(base); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.fail("stat /sys/firmware/ibft: %v", err)
		}
		return
	}
	t := IBFT{}
	n := 0
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n > maxEntries {
			return fmt.Errorf("more than %d entries", maxEntries)
		}
		// sysfs folders link back to devices (ethernet0/device → the
		// NIC); WalkDir does not follow symlinks, so those are skipped.
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		v, err := sysfs.ReadAttr(p)
		if err != nil {
			// Some attributes are not readable (write-only or absent
			// fields make the driver return an error); record why.
			v = "<" + err.Error() + ">"
		}
		// The kernel shows CHAP secrets in clear and the proof line goes
		// to the console: mask them here, in the guest, not only in the
		// lab that records the console.
		if ibft.SecretAttr(d.Name()) {
			v = rootpath.Mask
		}
		t[filepath.ToSlash(rel)] = v
		return nil
	})
	if err != nil {
		c.fail("read /sys/firmware/ibft: %v", err)
	}
	c.p.IBFT = t
}

// efi records the EFI firmware the kernel sees and reads one variable
// through the runtime services (efivarfs, which systemd mounts). The
// variables tried first are those every UEFI boot sets (UEFI 2.10 §3.3,
// globally defined variables); any other will do.
func (c *collector) efi() {
	base := c.path("/sys/firmware/efi")
	if _, err := os.Stat(base); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.fail("stat /sys/firmware/efi: %v", err)
		}
		return
	}
	e := &EFI{PlatformSize: c.attr("/sys/firmware/efi/fw_platform_size", false)}
	c.p.EFI = e
	names, err := listDir(filepath.Join(base, "efivars"))
	if err != nil {
		c.fail("list /sys/firmware/efi/efivars: %v", err)
		return
	}
	e.Vars = len(names)
	const global = "-8be4df61-93ca-11d2-aa0d-00e098032b8c"
	try := []string{"BootCurrent" + global, "BootOrder" + global, "Timeout" + global}
	try = append(try, names...)
	var lastErr error
	for _, n := range try {
		b, err := os.ReadFile(filepath.Join(base, "efivars", n))
		if err != nil {
			lastErr = err
			continue
		}
		e.VarRead = fmt.Sprintf("%s: %d bytes", n, len(b))
		return
	}
	c.fail("read an EFI variable: %v", lastErr)
}

// systemd waits for the boot to finish (is-system-running --wait returns
// once the start-up jobs are done) and records the state.
func (c *collector) systemd(ctx context.Context) {
	if c.env.Systemctl == nil {
		return
	}
	st, err := c.env.Systemctl(ctx, "is-system-running", "--wait")
	if st == "" && err != nil {
		c.fail("systemctl is-system-running: %v", err)
	}
	c.p.Systemd.State = st
	mu, err := c.env.Systemctl(ctx, "is-active", "multi-user.target")
	if mu == "" && err != nil {
		c.fail("systemctl is-active multi-user.target: %v", err)
	}
	c.p.Systemd.MultiUser = mu
	failed, err := c.env.Systemctl(ctx, "list-units", "--state=failed", "--plain", "--no-legend", "--no-pager")
	if err != nil {
		c.fail("systemctl list-units --state=failed: %v", err)
	}
	for _, line := range strings.Split(failed, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			c.p.Systemd.Failed = append(c.p.Systemd.Failed, f[0])
		}
	}
}

func (c *collector) net() {
	if c.env.Interfaces == nil {
		return
	}
	ifs, err := c.env.Interfaces()
	if err != nil {
		c.fail("list interfaces: %v", err)
	}
	c.p.Net = ifs
}
