package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/lio"
	"github.com/lunboot/lunboot/internal/netns"
	"github.com/lunboot/lunboot/internal/tgt"
)

// TargetOptions configures the lab's iSCSI target (tgtd).
type TargetOptions struct {
	// Port is the TCP port on the server address (default 3260).
	Port int
	// Debug turns on tgtd's protocol debug output in tgtd.log.
	Debug bool
	// Addr is the address tgtd listens on: the server address (ServerIP)
	// by default, or one AddServerAddr added, for a second portal of the
	// same target host. A target on another address logs to
	// tgtd-<addr>-<port>.log.
	Addr netip.Addr
}

// Target is tgtd running inside the lab's namespace, listening on
// ServerIP:Port. The embedded *tgt.Server offers every tgtadm operation
// (AddTarget, AddLUN, AddCHAP, SetParam, Sessions, Admin…); Export wraps the
// common case and remembers it, so that Restart can bring the same
// configuration back.
type Target struct {
	*tgt.Server
	lab     *Lab
	opts    TargetOptions
	logFile string

	mu      sync.Mutex
	exports []*Export
	nextTID int
	stopped bool
}

// CHAP holds CHAP credentials for an export: the account initiators log in
// with, and optionally the target's own for mutual CHAP.
type CHAP struct {
	Username, Secret             string
	TargetUsername, TargetSecret string
}

// String never shows the secrets.
func (c *CHAP) String() string {
	if c == nil {
		return "none"
	}
	if c.TargetUsername != "" {
		return fmt.Sprintf("mutual CHAP (user %q, target user %q)", c.Username, c.TargetUsername)
	}
	return fmt.Sprintf("CHAP (user %q)", c.Username)
}

// ExportSpec describes one iSCSI target to export.
type ExportSpec struct {
	// IQN is the target name; default iqn.2026-11.org.lunboot.lab:<first
	// image's base name>.
	IQN string
	// Images are exported as LUN 1, 2, … (tgtd's LUN 0 is its controller).
	Images []string
	// Direct exports the files themselves, writable, with no private
	// copy: for a second tgtd serving the same backing store as another
	// (several portals to one logical unit), pass the first Export's LUNs.
	Direct bool
	// Shared exports the files themselves, read-only. By default each image
	// is first copied (sparsely) into the lab's work folder, so guests may
	// write and cached fixtures stay pristine.
	Shared bool
	// ReadOnly makes the LUNs read-only (implied by Shared).
	ReadOnly bool
	// ImagesReadOnly makes the Images' LUNs read-only and leaves the
	// blank LUNs of Sizes writable (a golden image and its clients'
	// overlay LUNs); tgtd only.
	ImagesReadOnly bool
	// CHAP, when set, requires CHAP (mutual if TargetUsername is set).
	CHAP *CHAP
	// Params are target-wide iSCSI keys (MaxRecvDataSegmentLength,
	// HeaderDigest, ImmediateData, InitialR2T…).
	Params map[string]string
	// LUNParams are tgtadm logical-unit parameters applied to every LUN
	// ("thin_provisioning=1"); tgtd only.
	LUNParams string
	// Sizes adds blank sparse LUNs of these sizes (bytes) after Images:
	// files in the lab's work folder for tgtd, on the target VM's tmpfs
	// for LIO.
	Sizes []int64
	// Initiators, when set, admits only these initiator names (tgtd: its
	// ACL by initiator name instead of ALL; LIO: one ACL each, with CHAP
	// if set, instead of demo mode).
	Initiators []string
	// Attrib are LIO TPG attributes (authentication, generate_node_acls,
	// demo_mode_write_protect, cache_dynamic_acls…) over what Export
	// chose; LIO only.
	Attrib map[string]string
}

// withDefaults fills the default target name.
func (spec ExportSpec) withDefaults() ExportSpec {
	if spec.IQN == "" {
		base := "blank"
		if len(spec.Images) > 0 {
			base = strings.TrimSuffix(filepath.Base(spec.Images[0]), filepath.Ext(spec.Images[0]))
		}
		spec.IQN = "iqn.2026-11.org.lunboot.lab:" + strings.ToLower(sanitizeName(base))
	}
	if spec.Shared {
		spec.ReadOnly = true
	}
	return spec
}

// Exporter is what the lab's targets (tgtd: *Target; LIO: *LIO) offer the
// tests, so that one table of cases runs against both.
type Exporter interface {
	// Export serves spec and says how to reach it.
	Export(spec ExportSpec) (*Export, error)
	// Portal is the target's default portal.
	Portal() netip.AddrPort
	// Kind names the target: "tgtd" or "lio".
	Kind() string
}

var (
	_ Exporter = (*Target)(nil)
	_ Exporter = (*LIO)(nil)
)

// Export is an exported target.
type Export struct {
	TID    int
	IQN    string
	Portal netip.AddrPort
	// LUNs are the exported images and blank LUNs in LUN order (LUN
	// LUNBase+i is LUNs[i]; a blank LUN on LIO is "lio:<file in the VM>").
	LUNs []string
	// LUNBase is the first LUN's number: 1 on tgtd (its LUN 0 is the
	// controller), 0 on LIO (the disk is LUN 0, as appliances have it).
	LUNBase int
	CHAP    *CHAP
	spec    ExportSpec
	lio     lio.Target
}

// LUN returns the number of the export's i-th LUN.
func (e *Export) LUN(i int) int { return e.LUNBase + i }

// RootPath returns the RFC 4173 root-path of the export's first LUN,
// "iscsi:<server>::<port>:<lun>:<iqn>" (the LUN field is hexadecimal).
func (e *Export) RootPath() string { return e.RootPathLUN(e.LUNBase) }

// RootPathLUN returns the root-path of LUN n; an IPv6 portal is written in
// brackets (RFC 4173 leaves it open; dracut, EDK2 and lunboot read it so).
func (e *Export) RootPathLUN(n int) string {
	host := e.Portal.Addr().String()
	if e.Portal.Addr().Is6() {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("iscsi:%s::%d:%x:%s", host, e.Portal.Port(), n, e.IQN)
}

// StartTarget starts tgtd inside the namespace on the server address.
func (l *Lab) StartTarget(ctx context.Context, opts TargetOptions) (*Target, error) {
	if l.isClosed() {
		return nil, errClosed
	}
	if opts.Port == 0 {
		opts.Port = 3260
	}
	logFile := l.LogPath("tgtd.log")
	if !opts.Addr.IsValid() {
		opts.Addr = l.ServerAddr()
	} else if opts.Addr != l.ServerAddr() {
		if !l.hasAddr(opts.Addr) {
			return nil, fmt.Errorf("lab: target on %s: not an address of the lab's bridge (AddServerAddr adds one)", opts.Addr)
		}
		logFile = l.LogPath(fmt.Sprintf("tgtd-%s-%d.log", opts.Addr, opts.Port))
	}
	t := &Target{lab: l, opts: opts, nextTID: 1, logFile: logFile}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.targets = append(l.targets, t)
	}
	l.mu.Unlock()
	if closed {
		t.Stop()
		return nil, errClosed
	}
	return t, nil
}

func (t *Target) start(ctx context.Context) error {
	portal := t.Portal().String()
	t.lab.cmds.printf("& tgtd on %s in %s (via internal/tgt), log %s", portal, t.lab.ns, t.logFile)
	s, err := tgt.Start(ctx, tgt.Options{Portal: portal, NetNS: t.lab.ns, LogFile: t.logFile, Debug: t.opts.Debug})
	if err != nil {
		return componentError("tgtd", t.logFile, err)
	}
	t.lab.cmds.printf("  tgtd up, control port %d (tgtadm -C %d --lld iscsi --op show --mode target)", s.ControlPort(), s.ControlPort())
	t.mu.Lock()
	t.Server = s
	t.stopped = false
	t.mu.Unlock()
	t.lab.log.Info("tgtd up", "portal", portal, "log", t.logFile)
	return nil
}

// Portal returns the address initiators connect to.
func (t *Target) Portal() netip.AddrPort {
	return netip.AddrPortFrom(t.opts.Addr, uint16(t.opts.Port))
}

// Kind names the target ("tgtd").
func (t *Target) Kind() string { return "tgtd" }

// LogFile returns tgtd's log.
func (t *Target) LogFile() string { return t.logFile }

// Exports returns what Export has set up so far.
func (t *Target) Exports() []*Export {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Export(nil), t.exports...)
}

// Export creates a target with spec's images as LUNs 1…n, its CHAP
// accounts and parameters, and returns how to reach it.
func (t *Target) Export(spec ExportSpec) (*Export, error) {
	if len(spec.Images) == 0 && len(spec.Sizes) == 0 {
		return nil, errors.New("lab: export: no images and no blank LUNs")
	}
	if len(spec.Attrib) > 0 {
		return nil, errors.New("lab: export: Attrib holds LIO TPG attributes, tgtd has none")
	}
	spec = spec.withDefaults()
	if c := spec.CHAP; c != nil {
		t.lab.AddSecret(c.Secret)
		t.lab.AddSecret(c.TargetSecret)
	}
	var luns []string
	for i, img := range spec.Images {
		abs, err := filepath.Abs(img)
		if err != nil {
			return nil, fmt.Errorf("lab: export %s: %w", img, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("lab: export: %w", err)
		}
		if !spec.Shared && !spec.Direct {
			dst := filepath.Join(t.lab.workDir, fmt.Sprintf("%s-lun%d-%s", sanitizeName(spec.IQN[strings.LastIndex(spec.IQN, ":")+1:]), i+1, filepath.Base(abs)))
			start := time.Now()
			if err := copySparse(abs, dst); err != nil {
				return nil, fmt.Errorf("lab: export: private copy of %s: %w", abs, err)
			}
			t.lab.cmds.printf("# copied %s -> %s (%s)", abs, dst, time.Since(start).Round(time.Millisecond))
			abs = dst
		}
		luns = append(luns, abs)
	}
	for i, size := range spec.Sizes {
		n := len(spec.Images) + i + 1
		dst := filepath.Join(t.lab.workDir, fmt.Sprintf("%s-lun%d-blank.img", sanitizeName(spec.IQN[strings.LastIndex(spec.IQN, ":")+1:]), n))
		if err := createSparse(dst, size); err != nil {
			return nil, fmt.Errorf("lab: export: blank LUN %d: %w", n, err)
		}
		luns = append(luns, dst)
	}
	t.mu.Lock()
	tid := t.nextTID
	t.nextTID++
	t.mu.Unlock()
	e := &Export{TID: tid, IQN: spec.IQN, Portal: t.Portal(), LUNs: luns, LUNBase: 1, CHAP: spec.CHAP, spec: spec}
	if err := t.apply(e); err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.exports = append(t.exports, e)
	t.mu.Unlock()
	t.lab.cmds.printf("# exported %s (tid %d, %d LUN(s), %s) at %s", e.IQN, e.TID, len(e.LUNs), e.CHAP, e.RootPath())
	return e, nil
}

// apply configures e on the running tgtd.
func (t *Target) apply(e *Export) error {
	s := t.server()
	wrap := func(err error) error {
		return componentError("tgtd", t.logFile, fmt.Errorf("export %s: %w", e.IQN, err))
	}
	if err := s.AddTarget(e.TID, e.IQN); err != nil {
		return wrap(err)
	}
	if len(e.spec.Initiators) > 0 {
		// AddTarget bound ALL; the ACL names the initiators instead.
		tid := fmt.Sprint(e.TID)
		if err := s.Admin("--op", "unbind", "--mode", "target", "--tid", tid, "-I", "ALL"); err != nil {
			return wrap(err)
		}
		for _, name := range e.spec.Initiators {
			if err := s.Admin("--op", "bind", "--mode", "target", "--tid", tid, "-Q", name); err != nil {
				return wrap(err)
			}
		}
	}
	for i, p := range e.LUNs {
		if err := s.AddLUN(e.TID, i+1, p); err != nil {
			return wrap(err)
		}
		params := e.spec.LUNParams
		if e.spec.ReadOnly || e.spec.ImagesReadOnly && i < len(e.spec.Images) {
			params = strings.Trim(params+",readonly=1", ",")
		}
		if params != "" {
			if err := s.SetLUNParams(e.TID, i+1, params); err != nil {
				return wrap(err)
			}
		}
	}
	if c := e.CHAP; c != nil {
		// Account names are global in tgtd: two exports cannot share one.
		if err := s.AddCHAP(e.TID, c.Username, c.Secret, false); err != nil {
			return wrap(err)
		}
		if c.TargetUsername != "" {
			if err := s.AddCHAP(e.TID, c.TargetUsername, c.TargetSecret, true); err != nil {
				return wrap(err)
			}
		}
	}
	keys := make([]string, 0, len(e.spec.Params))
	for k := range e.spec.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := s.SetParam(e.TID, k, e.spec.Params[k]); err != nil {
			return wrap(err)
		}
	}
	return nil
}

func (t *Target) server() *tgt.Server {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Server
}

// Stop stops tgtd (an orderly shutdown as far as tgtd allows: it ignores
// SIGTERM in the foreground, so it is killed after a grace period).
func (t *Target) Stop() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	s := t.Server
	t.mu.Unlock()
	if s != nil {
		_ = s.Stop()
		t.lab.cmds.printf("# tgtd stopped")
	}
}

// Kill stops tgtd abruptly, as a crashed or power-cycled target would go.
func (t *Target) Kill() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	s := t.Server
	t.mu.Unlock()
	if s != nil {
		s.Kill()
		t.lab.cmds.printf("# fault: tgtd %s killed", t.Portal())
	}
}

// Restart stops tgtd if it runs, starts a new one on the same portal and
// replays every Export (not raw tgtadm calls made through the embedded
// Server). The private disk copies are reused, so data written survives.
func (t *Target) Restart(ctx context.Context) error {
	t.Stop()
	if t.lab.isClosed() {
		return errClosed
	}
	if err := t.start(ctx); err != nil {
		return err
	}
	for _, e := range t.Exports() {
		if err := t.apply(e); err != nil {
			return err
		}
	}
	return nil
}

// LateTarget is a target that comes up after a delay, for boots that must
// wait for (or retry against) a portal that is not there yet.
type LateTarget struct {
	lab    *Lab
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	t      *Target
	err    error
}

// StartTargetAfter starts tgtd after delay in the background and then runs
// setup (typically Export calls). Until then the portal refuses
// connections. Wait returns the target once setup is done; Close stops it.
func (l *Lab) StartTargetAfter(delay time.Duration, opts TargetOptions, setup func(*Target) error) (*LateTarget, error) {
	ctx, cancel := context.WithCancel(context.Background())
	lt := &LateTarget{lab: l, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cancel()
		return nil, errClosed
	}
	l.late = append(l.late, lt)
	l.mu.Unlock()
	l.cmds.printf("# tgtd will start in %s", delay)
	go func() {
		defer close(lt.done)
		select {
		case <-ctx.Done():
			lt.err = fmt.Errorf("lab: late target cancelled: %w", ctx.Err())
			return
		case <-time.After(delay):
		}
		t, err := l.StartTarget(ctx, opts)
		if err != nil {
			lt.err = err
			return
		}
		lt.t = t
		if setup != nil {
			if err := setup(t); err != nil {
				lt.err = fmt.Errorf("lab: late target setup: %w", err)
				return
			}
		}
		l.cmds.printf("# late tgtd ready after %s", delay)
	}()
	return lt, nil
}

// Wait waits until the late target is up and configured.
func (lt *LateTarget) Wait(ctx context.Context) (*Target, error) {
	select {
	case <-lt.done:
		return lt.t, lt.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait is Close's view: the target, if it got started, once the goroutine
// has finished (it is cancelled first, so this is bounded by tgtd's start).
func (lt *LateTarget) wait() *Target {
	<-lt.done
	return lt.t
}

// createSparse makes a file of size bytes that holds no data yet.
func createSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copySparse copies src to dst keeping holes (SEEK_DATA/SEEK_HOLE), so a
// mostly empty disk image copies in milliseconds and stays small.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	size := st.Size()
	if err := out.Truncate(size); err != nil {
		out.Close()
		return err
	}
	fd := int(in.Fd())
	var off int64
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			// No SEEK_DATA support: copy everything.
			data = off
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			out.Close()
			return err
		}
		off = hole
	}
	return out.Close()
}

// DialContext opens a connection from inside the lab's namespace, so that
// host-side code (an initiator under test, a health check) can reach tgtd
// or a guest. Its signature fits iscsi.Config.Dial.
func (l *Lab) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(l.ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: dial %s in %s: %w", address, l.ns, err)
	}
	return c, nil
}
