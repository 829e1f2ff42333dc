package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lunboot/lunboot/internal/lio"
	"github.com/lunboot/lunboot/internal/vmtest"
)

// LIOModules are the kernel modules the LIO target VM loads (their
// dependencies, configfs and target_core_mod among them, come first):
// the NIC, the fileio backstore, the iSCSI fabric, and the digests. LIO
// offers a CHAP algorithm only if the kernel has its hash
// (iscsi_target_auth.c chap_check_algorithm allocates it): md5, sha1 and
// sha256 are built into Debian's kernel, sha3_generic (CHAP_A 8) is a
// module; crc32c_generic provides CRC32C digests on a CPU without SSE4.2.
var LIOModules = []string{
	"virtio_pci", "virtio_net", "virtio_blk",
	"target_core_mod", "target_core_file", "iscsi_target_mod",
	"md5", "sha1_generic", "sha256_generic", "sha3_generic", "crc32c_generic",
}

// LIOOptions configures the lab's LIO target VM.
type LIOOptions struct {
	// Tap is the lab tap the VM's NIC plugs into; default the last one
	// (give the lab Taps: 2 when a client guest boots too).
	Tap *int
	// Host is the last octet of the VM's address in the lab's /24
	// (default 2: the bridge is .1, DHCP leases .100–.199).
	Host byte
	// Port is the iSCSI portal's TCP port (default 3260).
	Port int
	// Memory is the guest's RAM (default "1G"; its tmpfs, half of it,
	// holds the written parts of blank LUNs).
	Memory string
	// Images are host disk images the VM can serve (Export's
	// ExportSpec.Images): each is first copied sparsely into the lab's
	// work folder, as tgtd's Export does, so guests may write and cached
	// images stay pristine; the copies are attached as virtio disks
	// (/dev/vda, /dev/vdb…).
	Images []string
	// Share is a host folder the VM mounts read-only over virtio-9p for
	// Run to chroot into: a Debian root with targetcli-fb
	// (distro.TargetcliRoot), so that docs/targets.md's commands run
	// against this VM's LIO. Adds the 9p modules to the VM.
	Share string
	// Debug logs every configfs write on the VM's console.
	Debug bool
	// OnConsole receives each line of the VM's console (the agent's log).
	OnConsole func(line string)
}

// LIO is the Linux kernel's iSCSI target running in a QEMU guest on the
// lab's bridge, with its own address. The lab talks to an agent in the
// guest (internal/lio/cmd/lioagent) over TCP to configure it.
type LIO struct {
	lab    *Lab
	vm     *VM
	opts   LIOOptions
	addr   netip.Addr
	images map[string]lioDisk // host path → its copy in the VM

	mu      sync.Mutex
	exports []*Export
	extra   []lio.Target // Apply's own targets
	seq     int
}

// lioDisk is one of LIOOptions.Images: the private copy and its device in
// the guest.
type lioDisk struct{ copy, dev string }

// lioReady is the agent's console line once it serves the control port.
var lioReady = regexp.MustCompile(`lioagent: ready on \S+ \(([^)]*)\)`)

// StartLIO builds the target VM's initramfs, boots it and waits until its
// agent answers (about 20–40 s under TCG). The VM is part of the lab: Close
// kills it. The caller holds a guest slot for it (labtest.LIO does).
func (l *Lab) StartLIO(ctx context.Context, opts LIOOptions) (*LIO, error) {
	if l.isClosed() {
		return nil, errClosed
	}
	tap := len(l.taps) - 1
	if opts.Tap != nil {
		tap = *opts.Tap
	}
	if opts.Host == 0 {
		opts.Host = 2
	}
	if opts.Host == 1 || (opts.Host >= 100 && opts.Host <= 199) || opts.Host == 255 {
		return nil, fmt.Errorf("lab: lio: address .%d is the bridge's, DHCP's (.100–.199) or broadcast", opts.Host)
	}
	if opts.Port == 0 {
		opts.Port = 3260
	}
	if opts.Memory == "" {
		opts.Memory = "1G"
	}
	a4 := l.prefix.Addr().As4()
	a4[3] = opts.Host
	t := &LIO{lab: l, opts: opts, addr: netip.AddrFrom4(a4), images: map[string]lioDisk{}}

	dir := filepath.Join(l.workDir, "lio-image")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: lio: %w", err)
	}
	initrd := filepath.Join(dir, "initramfs.cpio")
	start := time.Now()
	modules := LIOModules
	var args []string
	if opts.Share != "" {
		if st, err := os.Stat(opts.Share); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("lab: lio: LIOOptions.Share %s is not a folder (%v)", opts.Share, err)
		}
		// fs/9p and net/9p/trans_virtio.c: the guest's side of -virtfs.
		modules = append(append([]string(nil), modules...), "9pnet_virtio", "9p")
		args = append(args, "-virtfs", "local,path="+strings.ReplaceAll(opts.Share, ",", ",,")+",mount_tag="+lio.ShareTag+",security_model=none,readonly=on")
	}
	kernel, err := vmtest.BuildImage(ctx, initrd, vmtest.ImageSpec{
		Modules:  modules,
		Programs: map[string]string{"/bin/lioagent": "github.com/lunboot/lunboot/internal/lio/cmd/lioagent"},
		Command:  []string{"/bin/lioagent"},
	})
	if err != nil {
		return nil, fmt.Errorf("lab: lio: %w", err)
	}
	l.cmds.printf("# lio: guest image %s built in %s (kernel %s)", initrd, time.Since(start).Round(time.Millisecond), kernel)

	for i, img := range opts.Images {
		abs, err := filepath.Abs(img)
		if err != nil {
			return nil, fmt.Errorf("lab: lio: image %s: %w", img, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("lab: lio: %w", err)
		}
		dst := filepath.Join(l.workDir, fmt.Sprintf("lio-disk%d-%s", i, filepath.Base(abs)))
		cstart := time.Now()
		if err := copySparse(abs, dst); err != nil {
			return nil, fmt.Errorf("lab: lio: private copy of %s: %w", abs, err)
		}
		l.cmds.printf("# copied %s -> %s (%s)", abs, dst, time.Since(cstart).Round(time.Millisecond))
		args = append(args, "-drive", "file="+strings.ReplaceAll(dst, ",", ",,")+",format=raw,if=virtio,cache=writeback")
		t.images[abs] = lioDisk{copy: dst, dev: "/dev/vd" + string(rune('a'+i))}
	}
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 quiet no_timer_check lio.addr=%s", netip.PrefixFrom(t.addr, l.prefix.Bits()))
	if opts.Debug {
		cmdline += " lio.debug=1"
	}
	vm, err := l.StartVM(ctx, VMConfig{
		Name:      "lio",
		Memory:    opts.Memory,
		Kernel:    kernel,
		Initrd:    initrd,
		Cmdline:   cmdline,
		NICs:      []NIC{{Tap: tap}},
		Args:      args,
		OnConsole: opts.OnConsole,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: lio: %w", err)
	}
	t.vm = vm
	m, err := vm.ExpectWithin(ctx, 4*time.Minute, lioReady)
	if err != nil {
		vm.Kill()
		return nil, fmt.Errorf("lab: lio: the target VM's agent did not come up: %w", err)
	}
	l.cmds.printf("# lio: up at %s after %s (%s)", t.Portal(), m.At.Round(time.Millisecond), m.Groups[1])
	l.log.Info("lio up", "portal", t.Portal(), "after", m.At)
	return t, nil
}

// VM returns the target's guest.
func (t *LIO) VM() *VM { return t.vm }

// Addr returns the target VM's address on the lab's bridge.
func (t *LIO) Addr() netip.Addr { return t.addr }

// Portal returns the default portal (Addr, Port).
func (t *LIO) Portal() netip.AddrPort { return netip.AddrPortFrom(t.addr, uint16(t.opts.Port)) }

// Kind names the target ("lio").
func (t *LIO) Kind() string { return "lio" }

// Stop kills the target VM.
func (t *LIO) Stop() { t.vm.Kill() }

// call sends one request to the agent and waits (up to a minute, six for
// OpRun) for its answer.
func (t *LIO) call(ctx context.Context, req lio.Request) (lio.Response, error) {
	d := time.Minute
	if req.Op == lio.OpRun {
		d = 6 * time.Minute // the agent gives the command 5
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ctl := netip.AddrPortFrom(t.addr, lio.ControlPort).String()
	c, err := t.lab.DialContext(ctx, "tcp", ctl)
	if err != nil {
		return lio.Response{}, fmt.Errorf("lab: lio %s: %w", req.Op, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return lio.Response{}, err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return lio.Response{}, fmt.Errorf("lab: lio %s: send: %w", req.Op, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return lio.Response{}, fmt.Errorf("lab: lio %s: answer: %w (console %s)", req.Op, err, t.vm.ConsoleLog())
	}
	var resp lio.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return lio.Response{}, fmt.Errorf("lab: lio %s: answer %q: %w", req.Op, line, err)
	}
	if resp.Error != "" {
		return resp, fmt.Errorf("lab: lio %s: %s (console %s)", req.Op, resp.Error, t.vm.ConsoleLog())
	}
	return resp, nil
}

// Apply replaces the whole configuration with Export's exports plus
// extra, for what Export does not cover (several TPGs and portals, ACLs
// with their own CHAP…). Every session is dropped.
func (t *LIO) Apply(ctx context.Context, extra ...lio.Target) error {
	t.mu.Lock()
	t.extra = extra
	t.mu.Unlock()
	return t.push(ctx)
}

// Reset removes every export and extra target.
func (t *LIO) Reset(ctx context.Context) error {
	t.mu.Lock()
	t.exports, t.extra = nil, nil
	t.mu.Unlock()
	return t.push(ctx)
}

func (t *LIO) config() lio.Config {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cfg lio.Config
	for _, e := range t.exports {
		cfg.Targets = append(cfg.Targets, e.lio)
	}
	cfg.Targets = append(cfg.Targets, t.extra...)
	return cfg
}

func (t *LIO) push(ctx context.Context) error {
	cfg := t.config()
	for _, s := range cfg.Secrets() {
		t.lab.AddSecret(s)
	}
	start := time.Now()
	_, err := t.call(ctx, lio.Request{Op: lio.OpApply, Config: &cfg})
	var names []string
	for _, tg := range cfg.Targets {
		names = append(names, tg.IQN)
	}
	t.lab.cmds.printf("# lio: configured %v in %s: %v", names, time.Since(start).Round(time.Millisecond), err)
	return err
}

// SetTPG enables or disables TPG tag of target iqn.
func (t *LIO) SetTPG(ctx context.Context, iqn string, tag int, enable bool) error {
	_, err := t.call(ctx, lio.Request{Op: lio.OpTPG, IQN: iqn, TPG: tag, Enable: enable})
	t.lab.cmds.printf("# lio: %s TPG %d enable=%v: %v", iqn, tag, enable, err)
	return err
}

// LinkDown takes the target VM's NIC down for d (in the guest, as a pulled
// cable looks to its kernel) and returns at once; the link comes back by
// itself.
func (t *LIO) LinkDown(ctx context.Context, d time.Duration) error {
	_, err := t.call(ctx, lio.Request{Op: lio.OpLinkDown, Millis: int(d / time.Millisecond)})
	t.lab.cmds.printf("# lio: link down for %s: %v", d, err)
	return err
}

// Dump returns the configfs tree under target/ (iscsi/… attributes and the
// backstores' info), passwords left out.
func (t *LIO) Dump(ctx context.Context) (map[string]string, error) {
	r, err := t.call(ctx, lio.Request{Op: lio.OpDump})
	return r.Dump, err
}

// Run runs argv in the VM chrooted into LIOOptions.Share (read-only,
// with tmpfs where targetcli writes; /proc, /sys, configfs and /dev from
// the VM) and returns its output. It configures the VM's LIO behind the
// lab's back: Reset or Apply afterwards to return to the lab's
// configuration.
func (t *LIO) Run(ctx context.Context, argv ...string) (string, error) {
	if t.opts.Share == "" {
		return "", errors.New("lab: lio run: the VM has no shared root (LIOOptions.Share)")
	}
	start := time.Now()
	r, err := t.call(ctx, lio.Request{Op: lio.OpRun, Argv: argv})
	t.lab.cmds.printf("# lio: ran %s in the shared root in %s: %v", argv[0], time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		return r.Output, fmt.Errorf("%w\n%s", err, r.Output)
	}
	return r.Output, nil
}

// Export serves spec on TPG 1 at Portal: its images (given in
// LIOOptions.Images) and blank LUNs from LUN 0 up, as LIO's users set it
// up. Without Initiators the TPG runs in demo mode (generate_node_acls=1:
// any initiator, CHAP from the TPG's own account); with them only those
// initiator names get in, each with spec.CHAP.
func (t *LIO) Export(spec ExportSpec) (*Export, error) {
	if len(spec.Images) == 0 && len(spec.Sizes) == 0 {
		return nil, errors.New("lab: lio export: no images and no blank LUNs")
	}
	spec = spec.withDefaults()
	t.mu.Lock()
	t.seq++
	seq := t.seq
	t.mu.Unlock()
	target, luns, err := lioTarget(spec, t.Portal(), t.images, seq)
	if err != nil {
		return nil, err
	}
	e := &Export{IQN: spec.IQN, Portal: t.Portal(), LUNs: luns, LUNBase: 0, CHAP: spec.CHAP, spec: spec, lio: target}
	t.mu.Lock()
	t.exports = append(t.exports, e)
	t.mu.Unlock()
	if err := t.push(context.Background()); err != nil {
		t.mu.Lock()
		t.exports = t.exports[:len(t.exports)-1]
		t.mu.Unlock()
		return nil, err
	}
	t.lab.cmds.printf("# lio: exported %s (%d LUN(s) from 0, %s, initiators %v) at %s", e.IQN, len(e.LUNs), e.CHAP, spec.Initiators, e.RootPath())
	return e, nil
}

// Exports returns what Export has set up since the last Reset or Apply.
func (t *LIO) Exports() []*Export {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Export(nil), t.exports...)
}

// lioTarget is the LIO configuration of spec (defaults filled) on TPG 1 at
// portal: images (the VM's disks, LIOOptions.Images) and blank LUNs
// (files on the VM's tmpfs named after seq) from LUN 0 up; demo mode
// without Initiators, one ACL each with them. It returns the LUNs' host
// copies or "lio:<guest file>".
func lioTarget(spec ExportSpec, portal netip.AddrPort, images map[string]lioDisk, seq int) (lio.Target, []string, error) {
	g := lio.TPG{
		Tag:     1,
		Portals: []string{portal.String()},
		Attrib:  map[string]string{},
		Params:  map[string]string{},
	}
	var luns []string
	for i, img := range spec.Images {
		abs, err := filepath.Abs(img)
		if err != nil {
			return lio.Target{}, nil, fmt.Errorf("lab: lio export %s: %w", img, err)
		}
		d, ok := images[abs]
		if !ok {
			return lio.Target{}, nil, fmt.Errorf("lab: lio export: %s is not one of the VM's disks (LIOOptions.Images names what it may serve)", abs)
		}
		g.LUNs = append(g.LUNs, lio.LUN{Number: i, File: d.dev, ReadOnly: spec.ReadOnly})
		luns = append(luns, d.copy)
	}
	for i, size := range spec.Sizes {
		n := len(spec.Images) + i
		file := fmt.Sprintf("/tmp/luns/e%d-lun%d.img", seq, n)
		g.LUNs = append(g.LUNs, lio.LUN{Number: n, File: file, Size: size, ReadOnly: spec.ReadOnly})
		luns = append(luns, "lio:"+file)
	}
	var chap *lio.CHAP
	if c := spec.CHAP; c != nil {
		chap = &lio.CHAP{UserID: c.Username, Password: c.Secret, MutualUserID: c.TargetUsername, MutualPassword: c.TargetSecret}
		g.Attrib["authentication"] = "1"
	} else {
		g.Attrib["authentication"] = "0"
	}
	if len(spec.Initiators) == 0 {
		// Demo mode: LIO admits any initiator and makes an ACL for it
		// (iscsi_target_tpg.c, lio_tpg_check_demo_mode); it write-protects
		// demo-mode LUNs unless told not to.
		g.Attrib["generate_node_acls"] = "1"
		g.Attrib["cache_dynamic_acls"] = "1"
		g.Attrib["demo_mode_write_protect"] = map[bool]string{true: "1", false: "0"}[spec.ReadOnly]
		g.Auth = chap
	} else {
		g.Attrib["generate_node_acls"] = "0"
		for _, name := range spec.Initiators {
			g.ACLs = append(g.ACLs, lio.ACL{Initiator: name, CHAP: chap})
		}
	}
	for k, v := range spec.Attrib {
		g.Attrib[k] = v
	}
	for k, v := range spec.Params {
		g.Params[k] = v
	}
	return lio.Target{IQN: spec.IQN, TPGs: []lio.TPG{g}}, luns, nil
}
