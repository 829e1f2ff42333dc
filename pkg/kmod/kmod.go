// Package kmod loads the kernel modules a lunboot image carries: stage 1 of
// the boot, before any NIC, NBD device or /boot file system can be used.
//
// The image builder (initramfs/mkimage, with package depmod) resolves the
// module list against the kernel tree and writes the modules under
// lib/modules/<release>/ with a load order, OrderFile, in which every module
// comes after what it needs. LoadAll reads that order and inserts each module
// with finit_module(2) (init_module(2) on kernels without it), passing
// "<module>.<param>=" values from the kernel command line, and reports one
// Result per module. It parses nothing else at boot: no modules.dep, no
// modinfo.
//
// Nothing here is fatal to the boot: a module that fails is reported with
// the errno and what it usually means, the modules that needed it are
// skipped, and the rest load.
package kmod

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrWrongKernel is returned (wrapped) when the image carries modules for
// another kernel release than the running one: the kernel would refuse
// them, so none is loaded. A kernel built with the drivers in (see
// initramfs/linuxboot.config) needs none.
var ErrWrongKernel = errors.New("modules are for another kernel")

// Status is what happened to one module.
type Status int

// The statuses a Result can have.
const (
	// Loaded: the module was inserted now.
	Loaded Status = iota + 1
	// Present: the kernel already had it, loaded earlier or built in.
	Present
	// NoDevice: the module declined to initialise (ENODEV/ENXIO): no
	// matching hardware or CPU feature. Not a failure.
	NoDevice
	// Failed: the kernel refused it; Result.Err holds the errno.
	Failed
	// Skipped: not attempted, because a dependency was not loaded, the
	// modules are for another kernel, or the context ended.
	Skipped
	// Unneeded: not attempted, because Options.MatchHardware found no
	// device it drives and nothing loaded needs it. Not a failure.
	Unneeded
	// Deferred: not attempted, because it is in Options.OnDemand or only
	// those need it; LoadNamed loads it when the caller asks.
	Deferred
)

func (s Status) String() string {
	switch s {
	case Loaded:
		return "loaded"
	case Present:
		return "present"
	case NoDevice:
		return "no device"
	case Failed:
		return "failed"
	case Skipped:
		return "skipped"
	case Unneeded:
		return "not needed"
	case Deferred:
		return "on demand"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// OK reports whether the module is in the kernel after the attempt.
func (s Status) OK() bool { return s == Loaded || s == Present }

// Result is the outcome for one module.
type Result struct {
	Name string
	// Path is the .ko file that was (or would have been) loaded.
	Path   string
	Status Status
	// Err is the cause for NoDevice, Failed and Skipped; nil otherwise.
	// For Failed it wraps the syscall.Errno, see Explain.
	Err error
	// Params are the parameters passed from the kernel command line.
	Params string
	// Elapsed is the time the kernel took to insert it.
	Elapsed time.Duration
}

// Detail is a one-line explanation for a console table: the errno with its
// usual meaning, or why the module was skipped; "" when all went well.
func (r Result) Detail() string {
	if r.Err == nil {
		if r.Status == Present {
			return "already loaded or built in"
		}
		return ""
	}
	return Explain(r.Err)
}

// LoadTimeout is the bound callers put on LoadAll: inserting an image's
// ~45 modules takes about a second under QEMU TCG, so a module whose init
// is still running after this long (waiting for firmware or hardware that
// never answers) will not come back.
const LoadTimeout = 2 * time.Minute

// Options tune LoadAll. The zero value loads the image's modules for the
// running kernel.
type Options struct {
	// Root is the file system root holding lib/modules; default "/".
	Root string
	// Release is the kernel release whose modules to load; default the
	// running kernel's (uname -r).
	Release string
	// Params maps module name to its parameter string. Nil means: take
	// them from /proc/cmdline (ParamsFromCmdline).
	Params map[string]string
	// Parallel is how many modules may be inserted at once, each only
	// after its dependencies; below 1 means one at a time.
	Parallel int
	// Load inserts one module file with its parameters; nil means
	// finit_module(2) with an init_module(2) fallback. Tests inject one.
	Load func(path, params string) error
	// Present reports whether the kernel already has the named module;
	// nil means /sys/module/<name> exists.
	Present func(name string) bool
	// MatchHardware loads only what the machine needs, as udev and
	// modprobe would: the device drivers whose aliases (AliasFile) match
	// a device present, every module that is no device driver and no
	// other module's dependency (file systems, nbd), and their
	// dependencies. The devices are read again after each round, since
	// loading a bus driver (virtio_pci) creates devices (virtio) for the
	// next. An image without an alias list loads everything.
	MatchHardware bool
	// Modaliases lists the devices present for MatchHardware; nil means
	// Modaliases("/sys").
	Modaliases func() ([]string, error)
	// OnDemand names modules that MatchHardware leaves out, with the
	// dependencies only they need, because the caller loads them with
	// LoadNamed once it knows they are wanted (a file system when a
	// partition of its type is found, 8021q when a VLAN is asked for).
	// Without MatchHardware everything is loaded, these too.
	OnDemand []string
}

// location fills in Root and Release, all Order needs.
func (o *Options) location() error {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Release == "" {
		r, err := release()
		if err != nil {
			return err
		}
		o.Release = r
	}
	return nil
}

func (o *Options) defaults() error {
	if err := o.location(); err != nil {
		return err
	}
	if o.Params == nil {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read module parameters: %w", err)
		}
		o.Params = ParamsFromCmdline(string(b))
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Load == nil {
		o.Load = loadFile
	}
	if o.Present == nil {
		o.Present = func(name string) bool {
			_, err := os.Stat(filepath.Join("/sys/module", name))
			return err == nil
		}
	}
	return nil
}

// Order finds and reads the load order for opts.Release under opts.Root. When
// the image has none for that release but has one for another, it returns
// that order, its directory and an error wrapping ErrWrongKernel. When there
// is none at all, the error wraps fs.ErrNotExist.
func Order(opts Options) (entries []Entry, dir string, err error) {
	if err := opts.location(); err != nil {
		return nil, "", err
	}
	dir = filepath.Join(opts.Root, "lib", "modules", opts.Release)
	entries, err = readOrder(filepath.Join(dir, OrderFile))
	if !errors.Is(err, fs.ErrNotExist) {
		return entries, dir, err
	}
	others, _ := filepath.Glob(filepath.Join(opts.Root, "lib", "modules", "*", OrderFile))
	if len(others) == 0 {
		return nil, dir, fmt.Errorf("load modules: no %s under %s: this image carries no modules: %w", OrderFile, filepath.Join(opts.Root, "lib", "modules"), fs.ErrNotExist)
	}
	var rels []string
	for _, o := range others {
		rels = append(rels, filepath.Base(filepath.Dir(o)))
	}
	dir = filepath.Dir(others[0])
	entries, err = readOrder(others[0])
	if err != nil {
		return nil, dir, err
	}
	return entries, dir, fmt.Errorf("load modules: the image's modules are for %s, the running kernel is %s: %w (build the image against this kernel, or build the drivers in)", strings.Join(rels, ", "), opts.Release, ErrWrongKernel)
}

func readOrder(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := ParseOrder(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return entries, nil
}

// LoadAll loads the image's modules (see Order) in dependency order and
// returns one Result per module, in load-order order whatever the
// parallelism. It logs each result, in that order, as soon as it and those
// before it are known.
//
// The error is about the whole run: no load order, modules for another
// kernel (every module is then Present or Skipped), or ctx ending (modules
// not yet done are Skipped; a module whose init is stuck in the kernel
// cannot be interrupted, but LoadAll stops waiting for it). Per-module
// failures are in the results only.
func LoadAll(ctx context.Context, logger *slog.Logger, opts Options) ([]Result, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	entries, dir, err := Order(opts)
	if errors.Is(err, ErrWrongKernel) {
		results := make([]Result, len(entries))
		for i, e := range entries {
			results[i] = Result{Name: e.Name, Path: filepath.Join(dir, e.Path), Status: Skipped, Err: ErrWrongKernel}
			if opts.Present(e.Name) {
				results[i].Status, results[i].Err = Present, nil
			}
			logResult(logger, results[i])
		}
		return results, err
	}
	if err != nil {
		return nil, err
	}
	if !opts.MatchHardware {
		return run(ctx, logger, entries, dir, opts, nil)
	}
	aliases, err := readAliases(dir)
	if errors.Is(err, fs.ErrNotExist) {
		logger.Info("no alias list in the image: loading every module", "file", filepath.Join(dir, AliasFile))
		return run(ctx, logger, entries, dir, opts, nil)
	}
	if err != nil {
		return nil, err
	}
	m := newMatcher(entries, aliases)
	m.later = opts.OnDemand
	return matchAndLoad(ctx, logger, entries, dir, opts, m)
}

// LoadNamed loads the named modules of the image and what they depend on,
// in load order, skipping what the kernel already has: the second half of
// Options.OnDemand. Names the image does not carry are left out and named
// in the error, which wraps fs.ErrNotExist; the others are loaded all the
// same, and the results cover every module it tried.
func LoadNamed(ctx context.Context, logger *slog.Logger, opts Options, names ...string) ([]Result, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	entries, dir, err := Order(opts)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[strings.ReplaceAll(n, "-", "_")] = true
	}
	var missing []string
	for n := range want {
		if !slices.ContainsFunc(entries, func(e Entry) bool { return e.Name == n }) {
			missing = append(missing, n)
		}
	}
	addDeps(entries, want)
	var batch []Entry
	for _, e := range entries {
		if want[e.Name] {
			batch = append(batch, e)
		}
	}
	res, err := run(ctx, logger, batch, dir, opts, nil)
	if err == nil && len(missing) > 0 {
		slices.Sort(missing)
		err = fmt.Errorf("load modules %s: not in the image's %s: %w", strings.Join(missing, ", "), OrderFile, fs.ErrNotExist)
	}
	return res, err
}

// matchAndLoad loads, in rounds, the modules the devices present want
// (see Options.MatchHardware), until a round adds none; the rest are
// Unneeded. Each round adds at least one module, so there are at most
// len(entries) rounds.
func matchAndLoad(ctx context.Context, logger *slog.Logger, entries []Entry, dir string, opts Options, m *matcher) ([]Result, error) {
	list := opts.Modaliases
	if list == nil {
		list = func() ([]string, error) { return Modaliases("/sys") }
	}
	decided := map[string]Result{}
	for round := 1; ; round++ {
		var batch []Entry
		mas, err := list()
		if err != nil {
			// Without the device list, loading everything is the
			// safe answer: the boot worked that way before.
			logger.Warn("cannot list the devices present: loading every module", "err", err)
		}
		want := m.wanted(mas)
		for _, e := range entries {
			if _, ok := decided[e.Name]; !ok && (err != nil || want[e.Name]) {
				batch = append(batch, e)
			}
		}
		if len(batch) == 0 {
			break
		}
		logger.Debug("loading modules for the devices present", "round", round, "devices", len(mas), "modules", len(batch))
		res, rerr := run(ctx, logger, batch, dir, opts, decided)
		for _, r := range res {
			decided[r.Name] = r
		}
		if rerr != nil || err != nil {
			break
		}
	}
	out := make([]Result, len(entries))
	for i, e := range entries {
		r, ok := decided[e.Name]
		if !ok {
			r = Result{Name: e.Name, Path: filepath.Join(dir, e.Path), Status: Unneeded}
			if m.deferred[e.Name] {
				r.Status = Deferred
			}
			if opts.Present(e.Name) {
				r.Status = Present
			}
			logResult(logger, r)
		}
		out[i] = r
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("load modules: %w", err)
	}
	return out, nil
}

// run is the scheduler: a dispatcher starts modules in order, each once its
// dependencies are done, at most opts.Parallel at a time; the caller's
// goroutine collects results in order. Dependencies outside entries must be
// in prior (modules an earlier round decided).
func run(ctx context.Context, logger *slog.Logger, entries []Entry, dir string, opts Options, prior map[string]Result) ([]Result, error) {
	n := len(entries)
	results := make([]Result, n) // results[i] is written before done[i] closes
	done := make([]chan struct{}, n)
	index := make(map[string]int, n)
	for i, e := range entries {
		done[i] = make(chan struct{})
		index[e.Name] = i
		results[i] = Result{Name: e.Name, Path: filepath.Join(dir, e.Path), Params: opts.Params[e.Name]}
	}
	sem := make(chan struct{}, opts.Parallel)

	go func() {
		for i, e := range entries {
			r := &results[i]
			if err := waitDeps(ctx, e, index, done, results, prior); err != nil {
				r.Status, r.Err = Skipped, err
				close(done[i])
				continue
			}
			if opts.Present(e.Name) {
				r.Status = Present
				close(done[i])
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				r.Status, r.Err = Skipped, ctx.Err()
				close(done[i])
				continue
			}
			go func() {
				defer func() { <-sem; close(done[i]) }()
				start := time.Now()
				err := opts.Load(r.Path, r.Params)
				r.Elapsed = time.Since(start)
				r.Status, r.Err = classify(err)
			}()
		}
	}()

	out := make([]Result, n)
	for i := range entries {
		select {
		case <-done[i]:
			out[i] = results[i]
		case <-ctx.Done():
			for k := i; k < n; k++ {
				select {
				case <-done[k]:
					out[k] = results[k]
				default:
					out[k] = Result{Name: entries[k].Name, Path: results[k].Path, Params: results[k].Params, Status: Skipped, Err: fmt.Errorf("not finished: %w", ctx.Err())}
				}
				logResult(logger, out[k])
			}
			return out, fmt.Errorf("load modules: %w", ctx.Err())
		}
		logResult(logger, out[i])
	}
	return out, nil
}

// waitDeps waits until e's dependencies are done and checks they loaded.
func waitDeps(ctx context.Context, e Entry, index map[string]int, done []chan struct{}, results []Result, prior map[string]Result) error {
	for _, d := range e.Depends {
		j, ok := index[d]
		if !ok {
			if st := prior[d].Status; !st.OK() {
				return fmt.Errorf("dependency %s %s", d, st)
			}
			continue
		}
		select {
		case <-done[j]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if st := results[j].Status; !st.OK() {
			return fmt.Errorf("dependency %s %s", d, st)
		}
	}
	return ctx.Err()
}

func logResult(logger *slog.Logger, r Result) {
	attrs := []any{"module", r.Name, "result", r.Status.String()}
	if r.Elapsed > 0 {
		attrs = append(attrs, "elapsed", r.Elapsed.Round(time.Microsecond))
	}
	if r.Params != "" {
		attrs = append(attrs, "params", r.Params)
	}
	if r.Err != nil {
		attrs = append(attrs, "detail", r.Detail())
	}
	level := slog.LevelInfo
	if r.Status == Unneeded || r.Status == Deferred {
		level = slog.LevelDebug
	}
	if r.Status == Failed || r.Status == Skipped {
		level = slog.LevelWarn
	}
	logger.Log(context.Background(), level, "kernel module", attrs...)
}

// Summary counts results by status.
type Summary map[Status]int

// Summarize counts results by status.
func Summarize(results []Result) Summary {
	s := Summary{}
	for _, r := range results {
		s[r.Status]++
	}
	return s
}

// String reads like "40 loaded, 2 present, 1 failed"; zero counts are left
// out.
func (s Summary) String() string {
	var parts []string
	for st := Loaded; st <= Deferred; st++ {
		if s[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", s[st], st))
		}
	}
	if len(parts) == 0 {
		return "no modules"
	}
	return strings.Join(parts, ", ")
}
