package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Limits bound what Inspect may consume; the zero value of a field means
// the DefaultLimits value.
type Limits struct {
	// MaxUnpacked bounds the decompressed bytes of all segments together.
	MaxUnpacked int64
	// MaxEntries bounds the number of cpio entries.
	MaxEntries int
}

// DefaultLimits are generous for real initrds (a Debian MODULES=most initrd
// unpacks to ~100 MB and ~3000 entries; dracut images are similar) and
// still bound memory and time on hostile input.
var DefaultLimits = Limits{MaxUnpacked: 2 << 30, MaxEntries: 200_000}

// ErrLimit is returned when an initrd exceeds a Limits bound.
var ErrLimit = errors.New("handoff: initrd exceeds inspection limits")

// ErrNotInitramfs is returned when no cpio archive is found at all.
var ErrNotInitramfs = errors.New("handoff: no initramfs cpio archive found")

// Segment is one archive (or run of archives inside one compressed stream)
// of an initrd, in file order.
type Segment struct {
	Offset      int64       // where it starts in the initrd file
	Compression Compression // CompressionNone for an uncompressed cpio
	Entries     int         // cpio entries read
	Unpacked    int64       // decompressed bytes read
}

// Initrd is what Inspect learned about an OS initrd: the generator that
// built it, the names it contains (contents are not kept, except the few
// small configuration files below) and anything odd on the way.
type Initrd struct {
	Segments []Segment
	// Warnings lists anomalies the kernel would also stumble over (junk
	// after an archive, a truncated stream) and data the inspector could
	// not look at. Inspection stops at the first of those.
	Warnings []string

	Generator Generator
	// Network is the dracut network backend found (NetUnknown when none),
	// NetKlibc for initramfs-tools.
	Network NetBackend
	// DracutModules lists dracut's lib/dracut/modules.txt.
	DracutModules []string
	// DracutVersion comes from the lib/dracut/dracut-<version> marker.
	DracutVersion string
	// InitramfsConf holds conf/initramfs.conf and conf/conf.d/* settings
	// of an initramfs-tools image (MODULES, BUSYBOX, DEVICE…).
	InitramfsConf map[string]string
	// ISCSIConf holds etc/iscsi.initramfs (open-iscsi's baked-in
	// ISCSI_TARGET_NAME, ISCSI_AUTO…), command-line values override it.
	ISCSIConf map[string]string
	// InitiatorName is the name baked into the image
	// (etc/initiatorname.iscsi or etc/iscsi/initiatorname.iscsi), if any.
	InitiatorName string
	// BakedCmdline holds dracut's etc/cmdline.d/*.conf arguments, which
	// dracut reads together with /proc/cmdline.
	BakedCmdline []Arg

	entries  map[string]*entry
	captured map[string][]byte
	kmods    map[string]map[string]string // kernel version → module → path
	builtin  map[string]map[string]bool   // kernel version → built-in modules
	nentries int
	unpacked int64
	limits   Limits
}

type entryType uint8

const (
	typeOther entryType = iota
	typeFile
	typeDir
	typeSymlink
)

type entry struct {
	typ  entryType
	size int64
	link string // symlink target
}

// Files whose contents the inspector keeps, and how much of each.
var captureRules = []struct {
	re  *regexp.Regexp
	max int64
}{
	{regexp.MustCompile(`^conf/initramfs\.conf$`), 64 << 10},
	{regexp.MustCompile(`^conf/conf\.d/[^/]+$`), 64 << 10},
	{regexp.MustCompile(`^etc/iscsi\.initramfs$`), 64 << 10},
	{regexp.MustCompile(`^etc/(iscsi/)?initiatorname\.iscsi$`), 4 << 10},
	{regexp.MustCompile(`^(usr/)?lib/dracut/modules\.txt$`), 64 << 10},
	{regexp.MustCompile(`^etc/cmdline\.d/[^/]+\.conf$`), 64 << 10},
	{regexp.MustCompile(`^(usr/)?lib/modules/[^/]+/modules\.builtin$`), 4 << 20},
	{regexp.MustCompile(`^(usr/)?lib/systemd/system/iscsid\.service$`), 16 << 10},
	// initramfs-tools runs only the scripts its ORDER lists: a carry-in
	// hook must extend it (CarryHook).
	{regexp.MustCompile(`^scripts/local-top/ORDER$`), 64 << 10},
}

// maxCaptured bounds all kept file contents together.
const maxCaptured = 16 << 20

var (
	kmodRE    = regexp.MustCompile(`^(?:usr/)?lib/modules/([^/]+)/.*/([^/]+)\.ko(?:\.(?:xz|zst|gz))?$`)
	builtinRE = regexp.MustCompile(`^(?:usr/)?lib/modules/([^/]+)/modules\.builtin$`)
	dracutVer = regexp.MustCompile(`^(?:usr/)?lib/dracut/dracut-([^/]+)$`)
)

// Inspect reads an OS initrd with DefaultLimits; see Limits.Inspect.
func Inspect(r io.ReaderAt, size int64) (*Initrd, error) {
	return DefaultLimits.Inspect(r, size)
}

// Inspect walks an initrd the way the kernel unpacks it (init/initramfs.c
// unpack_to_rootfs): uncompressed newc archives and compressed streams one
// after another, zero padding between them, archives inside a compressed
// stream back to back. Real initrds are an uncompressed early archive
// (CPU microcode, ACPI tables) followed by one compressed main archive, in
// gzip, xz, zstd or legacy lz4 (bzip2 and lzma also work; lzo is
// recognised but not read). Only names, types, sizes, symlink targets and a
// few small configuration files are kept. Hostile input gives an error or a
// warning, never a panic, and decompression stops at l.MaxUnpacked.
func (l Limits) Inspect(r io.ReaderAt, size int64) (*Initrd, error) {
	if l.MaxUnpacked <= 0 {
		l.MaxUnpacked = DefaultLimits.MaxUnpacked
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	in := &Initrd{
		entries:  map[string]*entry{},
		captured: map[string][]byte{},
		kmods:    map[string]map[string]string{},
		builtin:  map[string]map[string]bool{},
		limits:   l,
	}
	if err := in.walk(r, size); err != nil {
		return nil, err
	}
	if in.nentries == 0 {
		if len(in.Warnings) > 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotInitramfs, in.Warnings[0])
		}
		return nil, ErrNotInitramfs
	}
	in.digest()
	return in, nil
}

func (in *Initrd) warnf(format string, args ...any) {
	in.Warnings = append(in.Warnings, fmt.Sprintf(format, args...))
}

// walk reads the segments of the initrd file.
func (in *Initrd) walk(r io.ReaderAt, size int64) error {
	p := newPosReader(io.NewSectionReader(r, 0, size), 0)
	for {
		more, err := p.skipZeros()
		if err != nil {
			return fmt.Errorf("handoff: read initrd at offset %d: %w", p.pos(), err)
		}
		if !more {
			return nil
		}
		start := p.pos()
		head, _ := p.Peek(6)
		if bytes.HasPrefix(head, []byte("0707")) && start%4 == 0 {
			seg := Segment{Offset: start, Compression: CompressionNone}
			err := in.readArchive(p, &seg)
			in.Segments = append(in.Segments, seg)
			if err != nil {
				if errors.Is(err, ErrLimit) {
					return err
				}
				in.warnf("cpio archive at offset %d: %v; the kernel stops unpacking there too", start, err)
				return nil
			}
			continue
		}
		c, ok := sniff(head)
		if !ok {
			in.warnf("unrecognised data at offset %d (% x); the kernel stops unpacking there", start, head)
			return nil
		}
		if c == CompressionLZO {
			return fmt.Errorf("%w: %s segment at offset %d", ErrUnsupportedCompression, c, start)
		}
		if c == CompressionXZ {
			if err := checkXZ(r, start, size); err != nil {
				return fmt.Errorf("handoff: xz segment at offset %d: %w", start, err)
			}
		}
		seg := Segment{Offset: start, Compression: c}
		err = in.readCompressed(c, p, &seg)
		in.Segments = append(in.Segments, seg)
		if err != nil {
			if errors.Is(err, ErrLimit) {
				return err
			}
			in.warnf("%s segment at offset %d: %v", c, start, err)
			return nil
		}
		if c != CompressionGzip {
			// The decompressor may have read past the end of its stream;
			// generators put the compressed archive last anyway.
			return nil
		}
	}
}

// readCompressed decompresses one stream and reads the archives in it.
func (in *Initrd) readCompressed(c Compression, p *posReader, seg *Segment) error {
	dec, release, err := decompressor(c, p)
	if err != nil {
		return err
	}
	defer release()
	lr := &limitReader{r: dec, in: in, seg: seg}
	dp := newPosReader(lr, 0)
	for {
		more, err := dp.skipZeros()
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
		if head, _ := dp.Peek(6); !bytes.HasPrefix(head, []byte("0707")) {
			// init/initramfs.c: "junk within compressed archive".
			return fmt.Errorf("junk at unpacked offset %d (% x)", dp.pos(), head)
		}
		if err := in.readArchive(dp, seg); err != nil {
			return err
		}
	}
}

// limitReader counts decompressed bytes against Limits.MaxUnpacked.
type limitReader struct {
	r   io.Reader
	in  *Initrd
	seg *Segment
}

func (l *limitReader) Read(b []byte) (int, error) {
	if l.in.unpacked >= l.in.limits.MaxUnpacked {
		return 0, fmt.Errorf("%w: more than %d bytes unpacked", ErrLimit, l.in.limits.MaxUnpacked)
	}
	if rest := l.in.limits.MaxUnpacked - l.in.unpacked; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := l.r.Read(b)
	l.in.unpacked += int64(n)
	l.seg.Unpacked += int64(n)
	return n, err
}

// readArchive reads one newc archive up to and including its trailer.
func (in *Initrd) readArchive(p *posReader, seg *Segment) error {
	for {
		h, err := readHeader(p)
		if err != nil {
			return err
		}
		if h.Name == newcTrailer {
			return nil
		}
		seg.Entries++
		in.nentries++
		if in.nentries > in.limits.MaxEntries {
			return fmt.Errorf("%w: more than %d cpio entries", ErrLimit, in.limits.MaxEntries)
		}
		if err := in.addEntry(p, h); err != nil {
			return err
		}
		if err := p.align(); err != nil {
			return err
		}
	}
}

// addEntry records one entry and consumes its data.
func (in *Initrd) addEntry(p *posReader, h newcHeader) error {
	name := cleanName(h.Name)
	size := int64(h.FileSize)
	e := &entry{size: size}
	switch h.Mode & modeTypeMask {
	case modeRegular:
		e.typ = typeFile
	case modeDir:
		e.typ = typeDir
	case modeSymlink:
		e.typ = typeSymlink
	}
	var keep int64 = -1
	switch {
	case name == "":
		// The archive root ("."): nothing to record.
	case e.typ == typeSymlink && size <= maxNameLen:
		keep = size
	case e.typ == typeFile:
		for _, c := range captureRules {
			if size <= c.max && c.re.MatchString(name) && in.capturedBytes()+size <= maxCaptured {
				keep = size
				break
			}
		}
	}
	if keep >= 0 {
		data := make([]byte, keep)
		if _, err := io.ReadFull(p, data); err != nil {
			return noEOF(err)
		}
		if e.typ == typeSymlink {
			e.link = string(bytes.TrimRight(data, "\x00"))
		} else {
			in.captured[name] = data
		}
	} else if err := p.discard(size); err != nil {
		return noEOF(err)
	}
	if name == "" {
		return nil
	}
	in.entries[name] = e
	// Later archives may omit directory entries the earlier ones had, or
	// the other way round: make every parent known as a directory.
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := in.entries[d]; ok {
			break
		}
		in.entries[d] = &entry{typ: typeDir}
	}
	if e.typ == typeFile {
		if m := kmodRE.FindStringSubmatch(name); m != nil {
			ver := m[1]
			if in.kmods[ver] == nil {
				in.kmods[ver] = map[string]string{}
			}
			in.kmods[ver][normModule(m[2])] = name
		}
	}
	return nil
}

func (in *Initrd) capturedBytes() int64 {
	var n int64
	for _, b := range in.captured {
		n += int64(len(b))
	}
	return n
}

// cleanName normalises a cpio name: generators write "./usr/bin/x",
// "usr/bin/x" or "/usr/bin/x" for the same file.
func cleanName(n string) string {
	n = path.Clean("/" + n)
	return strings.TrimPrefix(n, "/")
}

// normModule spells a module name as the kernel does ('-' and '_' are the
// same in module names).
func normModule(n string) string { return strings.ReplaceAll(n, "-", "_") }

// digest interprets the captured files and detects the generator.
func (in *Initrd) digest() {
	names := make([]string, 0, len(in.captured))
	for n := range in.captured {
		names = append(names, n)
	}
	sort.Strings(names)
	in.InitramfsConf = map[string]string{}
	in.ISCSIConf = map[string]string{}
	for _, n := range names {
		data := in.captured[n]
		switch {
		case n == "conf/initramfs.conf", strings.HasPrefix(n, "conf/conf.d/"):
			parseShellVars(data, in.InitramfsConf)
		case n == "etc/iscsi.initramfs":
			parseShellVars(data, in.ISCSIConf)
		case n == "etc/initiatorname.iscsi" || n == "etc/iscsi/initiatorname.iscsi":
			vars := map[string]string{}
			parseShellVars(data, vars)
			if v := vars["InitiatorName"]; v != "" {
				in.InitiatorName = v
			}
		case strings.HasSuffix(n, "lib/dracut/modules.txt"):
			for _, f := range strings.Fields(string(data)) {
				in.DracutModules = append(in.DracutModules, f)
			}
		case strings.HasPrefix(n, "etc/cmdline.d/"):
			for _, line := range strings.Split(string(data), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					in.BakedCmdline = append(in.BakedCmdline, ParseCmdline(line)...)
				}
			}
		default:
			if m := builtinRE.FindStringSubmatch(n); m != nil {
				set := map[string]bool{}
				for _, line := range strings.Split(string(data), "\n") {
					if b := path.Base(strings.TrimSpace(line)); strings.HasSuffix(b, ".ko") {
						set[normModule(strings.TrimSuffix(b, ".ko"))] = true
					}
				}
				in.builtin[m[1]] = set
			}
		}
	}
	for n := range in.entries {
		if m := dracutVer.FindStringSubmatch(n); m != nil {
			in.DracutVersion = m[1]
		}
	}
	in.Generator, in.Network = in.detect()
}

// parseShellVars reads KEY=value lines (as sourced by sh) into vars.
func parseShellVars(data []byte, vars map[string]string) {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.HasPrefix(k, "#") || strings.ContainsAny(k, " \t") {
			continue
		}
		if i := strings.Index(v, " #"); i >= 0 {
			v = v[:i]
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		vars[k] = v
	}
}

// maxSymlinkHops bounds symlink resolution (Linux's MAXSYMLINKS is 40).
const maxSymlinkHops = 40

// lookup resolves p (relative to the initrd root, symlinks followed) and
// returns the entry and its resolved name.
func (in *Initrd) lookup(p string) (string, *entry) {
	rest := strings.Split(cleanName(p), "/")
	cur := ""
	for hops := 0; len(rest) > 0; {
		part := rest[0]
		rest = rest[1:]
		if part == "" || part == "." {
			continue
		}
		next := path.Join(cur, part)
		if part == ".." {
			cur = strings.TrimPrefix(path.Dir("/"+cur), "/")
			continue
		}
		e := in.entries[next]
		if e == nil {
			return "", nil
		}
		if e.typ != typeSymlink {
			cur = next
			if len(rest) == 0 {
				return cur, e
			}
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", nil
		}
		target := e.link
		if !strings.HasPrefix(target, "/") {
			target = path.Join(cur, target)
		}
		rest = append(strings.Split(cleanName(target), "/"), rest...)
		cur = ""
	}
	if cur == "" {
		return "", &entry{typ: typeDir}
	}
	return cur, in.entries[cur]
}

// Captured returns the contents of a small configuration file the
// inspector kept (captureRules), by its name in the initrd.
func (in *Initrd) Captured(name string) ([]byte, bool) {
	b, ok := in.captured[cleanName(name)]
	return b, ok
}

// Has reports whether path exists in the initrd, following symlinks
// (merged-/usr images have bin → usr/bin, lib → usr/lib).
func (in *Initrd) Has(p string) bool {
	_, e := in.lookup(p)
	return e != nil
}

// findFile returns the first of the paths that resolves to a regular file.
func (in *Initrd) findFile(paths ...string) (string, bool) {
	for _, p := range paths {
		if name, e := in.lookup(p); e != nil && e.typ == typeFile {
			return name, true
		}
	}
	return "", false
}

// HasMultipath reports whether the initrd can assemble dm-multipath
// devices: the multipath tools (dracut's multipath module, Debian's
// multipath-tools-boot hook) with the dm-multipath module.
func (in *Initrd) HasMultipath() bool {
	_, tools := in.findProgram("multipathd")
	if !tools {
		_, tools = in.findProgram("multipath")
	}
	_, mod := in.hasSuffix("/dm-multipath.ko")
	if !mod {
		_, mod = in.hasSuffix("/dm-multipath.ko.xz")
	}
	if !mod {
		_, mod = in.hasSuffix("/dm-multipath.ko.zst")
	}
	return tools && mod
}

// programDirs are the directories initrds keep executables in, in the
// order findProgram searches them.
var programDirs = []string{"usr/sbin", "sbin", "usr/bin", "bin", "usr/lib/klibc/bin", "usr/libexec", "usr/lib/systemd"}

// findProgram looks for an executable in programDirs.
func (in *Initrd) findProgram(name string) (string, bool) {
	var c []string
	for _, d := range programDirs {
		c = append(c, d+"/"+name)
	}
	return in.findFile(c...)
}

// notInProgramDirs says where findProgram looked, for a missing program.
func notInProgramDirs() string {
	d := make([]string, len(programDirs))
	for i, p := range programDirs {
		d[i] = "/" + p
	}
	return "not in " + strings.Join(d[:len(d)-1], ", ") + " or " + d[len(d)-1]
}

// hasPrefix reports whether any entry name starts with prefix.
func (in *Initrd) hasPrefix(prefix string) bool {
	for n := range in.entries {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// hasSuffix returns an entry whose name ends with suffix.
func (in *Initrd) hasSuffix(suffix string) (string, bool) {
	names := make([]string, 0, 4)
	for n, e := range in.entries {
		if e.typ == typeFile && strings.HasSuffix(n, suffix) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", false
	}
	sort.Strings(names)
	return names[0], true
}

// KernelVersions lists the kernel versions the initrd carries modules for.
func (in *Initrd) KernelVersions() []string {
	set := map[string]bool{}
	for v := range in.kmods {
		set[v] = true
	}
	for v := range in.builtin {
		set[v] = true
	}
	var out []string
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Module reports where kernel module name is available to the initrd: the
// path of its .ko (possibly compressed) or "built-in" when modules.builtin
// lists it. kver limits the search to one kernel version; "" means any.
// extraBuiltin names modules known built into the OS kernel from outside
// the initrd (its /lib/modules/<ver>/modules.builtin on the root file
// system), for initrds that do not carry modules.builtin.
func (in *Initrd) Module(name, kver string, extraBuiltin ...string) (string, bool) {
	name = normModule(name)
	for _, b := range extraBuiltin {
		if normModule(b) == name {
			return "built-in", true
		}
	}
	vers := in.KernelVersions()
	for _, v := range vers {
		if kver != "" && v != kver {
			continue
		}
		if p, ok := in.kmods[v][name]; ok {
			return p, true
		}
		if in.builtin[v][name] {
			return "built-in (lib/modules/" + v + "/modules.builtin)", true
		}
	}
	return "", false
}

// HasBuiltinList reports whether the initrd carries modules.builtin for
// kver ("" any), so that a module absent from it is known not built in.
func (in *Initrd) HasBuiltinList(kver string) bool {
	for v := range in.builtin {
		if kver == "" || v == kver {
			return true
		}
	}
	return false
}
