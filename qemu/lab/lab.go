package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
)

// Options configures a lab.
type Options struct {
	// Name labels the lab in its namespace name and log folder
	// ("gpt-bls"). Letters, digits, '-' and '_' are kept; default "lab".
	Name string
	// LogDir is the folder that receives every component's log. Default:
	// $LUNBOOT_OUT/lab-logs/<name>-<time>-<pid>-<seq> (or under the system
	// temporary directory when LUNBOOT_OUT is unset). The lab never deletes
	// it: the caller decides whether logs are kept.
	LogDir string
	// Taps is the number of tap interfaces on the bridge, one per guest NIC
	// (default 1).
	Taps int
	// VLAN, when not 0, makes every tap a trunk port that carries this
	// 802.1Q VLAN only: the guest reaches the bridge (DHCP, targets) only
	// with frames tagged with it, and gets the bridge's frames tagged;
	// untagged frames and other VLANs reach nothing (see trunk.go).
	VLAN uint16
	// Logger receives progress messages (components started and stopped).
	// nil discards them; commands.log in LogDir records everything anyway.
	Logger *slog.Logger
	// NoSignalHandler leaves SIGINT and SIGTERM alone. By default, while any
	// lab is open, either signal tears every open lab down and then
	// terminates the process with that signal: `go test` dies on ^C without
	// running cleanups, which would leave namespaces and daemons behind.
	// Programs that handle signals themselves and call Close set this.
	NoSignalHandler bool
	// IPv6Only leaves the bridge without an IPv4 address: the lab's
	// server address is its IPv6 ULA one (ServerAddr), where tgtd
	// listens, and dnsmasq serves DHCPv6 and router advertisements only.
	IPv6Only bool
}

// Tap is one tap interface of the lab's bridge and the MAC address the
// guest NIC on it gets by default.
type Tap struct {
	Name string
	MAC  net.HardwareAddr
}

// Lab is a running lab: a network namespace holding a bridge with the
// server address, its taps, and the daemons and guests started on it. All
// traffic stays inside the namespace: it has no route out and no link to the
// host's namespace.
type Lab struct {
	opts     Options
	log      *slog.Logger
	seq      int
	ns       string
	bridge   string
	prefix   netip.Prefix
	server   netip.Addr
	prefix6  netip.Prefix
	server6  netip.Addr
	taps     []Tap
	logDir   string
	workDir  string
	cmds     *cmdLog
	cmdsPath string
	created  time.Time

	mu        sync.Mutex
	closed    bool
	closeDone chan struct{} // closed when Close has finished
	closeErr  error
	secrets   []string
	procs     []*process
	vms       []*VM
	dhcp      *DHCP
	targets   []*Target
	late      []*LateTarget
	trunks    []*trunk
	https     []*FileServer
	clientSeq int
	monSeq    int
	keep      string       // why the logs must outlive a passing test (KeepLogs)
	addrs     []netip.Addr // server addresses added by AddServerAddr
	faults    *faultRules  // portal addresses cut off by Target.SetLink
}

// nextSeq returns *p and increments it, under the lab's lock.
func (l *Lab) nextSeq(p *int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := *p
	*p++
	return n
}

// workPrefix starts the lab's work folders in the temporary directory,
// followed by the owner's process ID, so that a later lab can find and
// remove what a killed test binary left behind (as package netns does for
// the namespaces).
const workPrefix = "lunboot-lab-"

var workPattern = regexp.MustCompile(`^` + workPrefix + `([0-9]+)-[0-9]+-`)

// registry tracks open labs for the signal handler.
var registry struct {
	mu      sync.Mutex
	open    map[*Lab]struct{}
	handled int // open labs that want the signal handler
	sigc    chan os.Signal
}

// New creates a lab: it removes what dead lab processes left behind, then
// makes the namespace, the bridge (with IPv4 <prefix>.1/24 and an IPv6 ULA
// /64 for router advertisements) and the taps. Close undoes all of it and
// everything started on the lab since.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if opts.Taps <= 0 {
		opts.Taps = 1
	}
	if opts.Taps > 16 {
		return nil, fmt.Errorf("lab: %d taps requested, at most 16", opts.Taps)
	}
	name := sanitizeName(opts.Name)
	if name == "" {
		name = "lab"
	}
	// The namespace's sequence number makes every name of the lab unique
	// within the process.
	ns, seq := netns.NewName(name)
	pid := os.Getpid()
	l := &Lab{
		opts:      opts,
		log:       opts.Logger,
		seq:       seq,
		ns:        ns,
		bridge:    "br0",
		created:   time.Now(),
		closeDone: make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	// The namespace isolates the lab, so addresses need not differ between
	// labs; they do anyway, which keeps logs of parallel labs apart.
	a, b := byte(20+seq%200), byte(1+pid%250)
	l.prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, a, b, 0}), 24)
	l.server = netip.AddrFrom4([4]byte{10, a, b, 1})
	u6 := [16]byte{0xfd, 0x6c, 0x62, 0x00, 0, a, 0, b}
	l.prefix6 = netip.PrefixFrom(netip.AddrFrom16(u6), 64)
	u6[15] = 1
	l.server6 = netip.AddrFrom16(u6)
	for i := range opts.Taps {
		l.taps = append(l.taps, Tap{
			Name: fmt.Sprintf("tap%d", i),
			MAC:  net.HardwareAddr{0x52, 0x54, 0x00, a, b, byte(i)},
		})
	}

	l.logDir = opts.LogDir
	if l.logDir == "" {
		base := os.Getenv("LUNBOOT_OUT")
		if base == "" {
			base = filepath.Join(os.TempDir(), "lunboot")
		}
		l.logDir = filepath.Join(base, "lab-logs",
			fmt.Sprintf("%s-%s-%d-%d", name, l.created.Format("20060102-150405"), pid, seq))
	}
	// Absolute: dnsmasq and tgtd change to / before they write their
	// pid and log files, and LUNBOOT_OUT or make demo's out may be relative.
	abs, err := filepath.Abs(l.logDir)
	if err != nil {
		return nil, fmt.Errorf("lab: log folder: %w", err)
	}
	l.logDir = abs
	if err := os.MkdirAll(l.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: log folder: %w", err)
	}
	l.cmdsPath = filepath.Join(l.logDir, "commands.log")
	if l.cmds, err = openCmdLog(l.cmdsPath); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	v4 := netip.PrefixFrom(l.server, 24).String()
	if opts.IPv6Only {
		v4 = "(no IPv4)"
	}
	l.cmds.printf("lab %s: namespace %s, bridge %s %s %s, logs %s", name, l.ns, l.bridge,
		v4, netip.PrefixFrom(l.server6, 64), l.logDir)
	if opts.VLAN != 0 {
		l.cmds.printf("lab %s: the taps are trunk ports carrying VLAN %d only", name, opts.VLAN)
	}
	if l.workDir, err = os.MkdirTemp("", fmt.Sprintf("%s%d-%d-*", workPrefix, pid, seq)); err != nil {
		l.cmds.close()
		return nil, fmt.Errorf("lab: work folder: %w", err)
	}

	l.register()
	l.sweepStale(ctx)
	if err := l.setupNetwork(ctx); err != nil {
		cerr := l.Close()
		return nil, errors.Join(fmt.Errorf("lab: network: %w", err), cerr)
	}
	l.log.Info("lab up", "namespace", l.ns, "server", l.server, "logs", l.logDir)
	return l, nil
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '/' || r == ' ' || r == '.':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// netns is the namespace harness, its commands recorded in commands.log.
func (l *Lab) netns() netns.Harness {
	return netns.Harness{Run: l.run, Logf: l.cmds.printf}
}

// setupNetwork makes the namespace (no route out: only its loopback and
// what is added here), the bridge with the server addresses, and the taps.
func (l *Lab) setupNetwork(ctx context.Context) error {
	h := l.netns()
	if err := h.Add(ctx, l.ns); err != nil {
		return err
	}
	br := netns.Bridge{Name: l.bridge, Addrs: []netip.Prefix{netip.PrefixFrom(l.server, 24), netip.PrefixFrom(l.server6, 64)}}
	if l.opts.IPv6Only {
		br.Addrs = br.Addrs[1:]
	}
	if err := h.AddBridge(ctx, l.ns, br); err != nil {
		return err
	}
	for _, t := range l.taps {
		if err := h.AddTap(ctx, l.ns, t.Name, l.bridge); err != nil {
			return err
		}
	}
	if v := l.opts.VLAN; v != 0 {
		if v >= 4095 {
			return fmt.Errorf("VLAN %d: give 1 to 4094", v)
		}
		for _, t := range l.taps {
			tr, err := l.startTrunk(ctx, t.Name, v)
			if err != nil {
				return err
			}
			l.mu.Lock()
			l.trunks = append(l.trunks, tr)
			l.mu.Unlock()
		}
	}
	return nil
}

// VLAN returns the VLAN the lab's taps carry (Options.VLAN), 0 for
// untagged.
func (l *Lab) VLAN() uint16 { return l.opts.VLAN }

// TrunkDrops returns how many frames the guests sent untagged or on
// another VLAN than the lab's, which the trunk ports dropped (0 without
// Options.VLAN).
func (l *Lab) TrunkDrops() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, t := range l.trunks {
		n += t.dropped.Load()
	}
	return n
}

// NetNS returns the name of the lab's network namespace (for
// `ip netns exec`).
func (l *Lab) NetNS() string { return l.ns }

// Bridge returns the bridge's interface name inside the namespace.
func (l *Lab) Bridge() string { return l.bridge }

// ServerIP returns the bridge's IPv4 address, where dnsmasq and tgtd listen.
func (l *Lab) ServerIP() netip.Addr { return l.server }

// ServerAddr returns the address the lab's servers (tgtd, HTTP) listen
// on: ServerIP, or ServerIP6 in an IPv6-only lab.
func (l *Lab) ServerAddr() netip.Addr {
	if l.opts.IPv6Only {
		return l.server6
	}
	return l.server
}

// IPv6Only reports whether the lab has no IPv4 (Options.IPv6Only).
func (l *Lab) IPv6Only() bool { return l.opts.IPv6Only }

// Prefix6 returns the lab's IPv6 ULA subnet.
func (l *Lab) Prefix6() netip.Prefix { return l.prefix6 }

// Prefix returns the lab's IPv4 subnet.
func (l *Lab) Prefix() netip.Prefix { return l.prefix }

// ServerIP6 returns the bridge's IPv6 (ULA) address.
func (l *Lab) ServerIP6() netip.Addr { return l.server6 }

// Taps returns the lab's taps.
func (l *Lab) Taps() []Tap { return append([]Tap(nil), l.taps...) }

// LogDir returns the folder holding every component's log.
func (l *Lab) LogDir() string { return l.logDir }

// KeepLogs marks the lab's logs as evidence worth keeping even if the test
// passes (a recovered fault, say); reason says why. See KeptFor.
func (l *Lab) KeepLogs(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep = reason
}

// KeptFor returns the reason given to KeepLogs, or "".
func (l *Lab) KeptFor() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keep
}

// WorkDir returns a scratch folder (private disk copies) that Close removes.
func (l *Lab) WorkDir() string { return l.workDir }

// AddSecret registers a secret (a CHAP password) that the lab must never
// write: every later console log, console line and command-log entry shows
// "***" instead. Export registers its CHAP secrets itself; tests that put
// secrets on a kernel command line register them here.
func (l *Lab) AddSecret(secret string) {
	if len(secret) < 3 {
		return // too short to mask without garbling unrelated text
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.secrets {
		if s == secret {
			return
		}
	}
	l.secrets = append(l.secrets, secret)
}

// mask hides registered secrets and anything that looks like a password
// parameter (…password=, …secret=, iscsi:user:pass@) in s.
func (l *Lab) mask(s string) string {
	l.mu.Lock()
	secrets := l.secrets
	l.mu.Unlock()
	return maskSecrets(s, secrets)
}

// LogPath returns the path of a file in the log folder.
func (l *Lab) LogPath(name string) string { return filepath.Join(l.logDir, name) }

// Logf appends a line to the lab's command log, for a test's own notes.
func (l *Lab) Logf(format string, args ...any) { l.cmds.printf("# "+format, args...) }

// Close tears everything down: guests, HTTP servers, DHCP, targets, client namespaces,
// any process still inside the namespace, the namespace itself and the
// work folder. It is bounded (tens of seconds at worst), safe to call more
// than once and from several goroutines (a second call waits for the first
// to finish), and returns what could not be undone. The log folder stays.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.closeDone
		return l.closeErr
	}
	l.closed = true
	vms, late, targets, dhcp, procs, https, trunks := l.vms, l.late, l.targets, l.dhcp, l.procs, l.https, l.trunks
	l.mu.Unlock()

	var errs []error
	for _, v := range vms {
		v.Kill()
	}
	for _, lt := range late {
		lt.cancel()
	}
	for _, lt := range late {
		if t := lt.wait(); t != nil {
			targets = append(targets, t)
		}
	}
	for _, h := range https {
		if err := h.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if dhcp != nil {
		if err := dhcp.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range targets {
		t.Stop()
	}
	for _, p := range procs {
		if err := p.stop(500 * time.Millisecond); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range trunks {
		if d := t.dropped.Load(); d > 0 {
			l.cmds.printf("# trunk port %s dropped %d frame(s) not on VLAN %d", t.guest, d, t.vid)
		}
		t.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := l.netns().DeleteMatching(ctx, func(ns string) bool {
		return ns == l.ns || strings.HasPrefix(ns, l.ns+"-c")
	}); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(l.workDir); err != nil {
		errs = append(errs, fmt.Errorf("lab: remove work folder: %w", err))
	}
	l.unregister()
	l.cmds.printf("lab closed after %s", time.Since(l.created).Round(time.Millisecond))
	l.cmds.close()
	l.log.Info("lab down", "namespace", l.ns)

	l.mu.Lock()
	l.closeErr = errors.Join(errs...)
	l.mu.Unlock()
	close(l.closeDone)
	return l.closeErr
}

// sweepStale removes namespaces (and the processes in them) and work folders
// that belong to lab processes that no longer exist: a test binary killed
// with SIGKILL cannot clean up, so the next lab does.
func (l *Lab) sweepStale(ctx context.Context) {
	if err := l.netns().SweepStale(ctx); err != nil {
		l.log.Warn("removing stale lab namespaces", "err", err)
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if e.IsDir() && netns.DeadOwner(workPattern, e.Name()) {
			l.cmds.printf("# removing stale work folder %s", filepath.Join(os.TempDir(), e.Name()))
			_ = os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

func (l *Lab) register() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.open == nil {
		registry.open = make(map[*Lab]struct{})
	}
	registry.open[l] = struct{}{}
	if l.opts.NoSignalHandler {
		return
	}
	registry.handled++
	if registry.sigc == nil {
		registry.sigc = make(chan os.Signal, 1)
		signal.Notify(registry.sigc, os.Interrupt, syscall.SIGTERM)
		go onSignal(registry.sigc)
	}
}

func (l *Lab) unregister() {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, ok := registry.open[l]; !ok {
		return
	}
	delete(registry.open, l)
	if l.opts.NoSignalHandler {
		return
	}
	registry.handled--
	if registry.handled == 0 && registry.sigc != nil {
		signal.Stop(registry.sigc)
		close(registry.sigc)
		registry.sigc = nil
	}
}

// onSignal tears down every open lab, then lets the signal do what it would
// have done without us.
func onSignal(c chan os.Signal) {
	sig, ok := <-c
	if !ok {
		return
	}
	registry.mu.Lock()
	var labs []*Lab
	for l := range registry.open {
		labs = append(labs, l)
	}
	registry.mu.Unlock()
	fmt.Fprintf(os.Stderr, "lab: %v: tearing down %d lab(s)\n", sig, len(labs))
	var wg sync.WaitGroup
	for _, l := range labs {
		wg.Add(1)
		go func() { defer wg.Done(); _ = l.Close() }()
	}
	wg.Wait()
	signal.Reset(sig)
	if s, ok := sig.(syscall.Signal); ok {
		_ = syscall.Kill(os.Getpid(), s)
	}
	time.Sleep(time.Second)
	os.Exit(1)
}

// addVM, addTarget… record components for Close; they fail once the lab is
// closed so nothing can be started behind Close's back.
func (l *Lab) addVM(v *VM) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errClosed
	}
	l.vms = append(l.vms, v)
	return nil
}

func (l *Lab) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}
