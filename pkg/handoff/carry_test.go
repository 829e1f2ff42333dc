package handoff

import (
	"bytes"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/lunboot/lunboot/pkg/kmod"
)

const testRelease = "6.8.0-31-generic"

// osRoot is an OS root file system as the LUN holds it: Ubuntu-style
// compressed modules, a modules.dep whose dependency lists are in depmod's
// order (not load order) and a built-in module.
func osRoot(dep string) fstest.MapFS {
	dir := "lib/modules/" + testRelease + "/"
	return fstest.MapFS{
		dir + "modules.dep":                            {Data: []byte(dep)},
		dir + "modules.builtin":                        {Data: []byte("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n")},
		dir + "kernel/drivers/net/virtio_net.ko.zst":   {Data: []byte("virtio_net zst")},
		dir + "kernel/drivers/net/net_failover.ko.zst": {Data: []byte("net_failover zst")},
		dir + "kernel/net/core/failover.ko.zst":        {Data: []byte("failover zst")},
		dir + "kernel/drivers/block/nbd.ko.xz":         {Data: []byte("nbd xz")},
		dir + "kernel/drivers/net/e1000e/e1000e.ko":    {Data: []byte("e1000e")},
	}
}

const ubuntuDep = `kernel/drivers/net/e1000e/e1000e.ko:
kernel/drivers/net/virtio_net.ko.zst: kernel/drivers/net/net_failover.ko.zst kernel/net/core/failover.ko.zst
kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.zst
kernel/net/core/failover.ko.zst:
kernel/drivers/block/nbd.ko.xz:
`

func TestModuleDepResolve(t *testing.T) {
	md, err := ParseModuleDep(strings.NewReader(ubuntuDep), strings.NewReader("kernel/drivers/virtio/virtio.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := md.Resolve([]string{"virtio-net", "nbd", "virtio"})
	if err != nil {
		t.Fatal(err)
	}
	want := []CarryModule{
		{Name: "failover", Rel: "kernel/net/core/failover.ko.zst"},
		{Name: "net_failover", Rel: "kernel/drivers/net/net_failover.ko.zst", Depends: []string{"failover"}},
		{Name: "virtio_net", Rel: "kernel/drivers/net/virtio_net.ko.zst", Depends: []string{"failover", "net_failover"}},
		{Name: "nbd", Rel: "kernel/drivers/block/nbd.ko.xz"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve(virtio-net, nbd, virtio) (-want +got):\n%s", diff)
	}
	// The result is a load order package kmod accepts as it is.
	var entries []kmod.Entry
	for _, m := range got {
		entries = append(entries, kmod.Entry{Name: m.Name, Path: m.Rel, Depends: m.Depends})
	}
	var b bytes.Buffer
	if err := kmod.WriteOrder(&b, "test", entries); err != nil {
		t.Fatalf("kmod.WriteOrder of the resolved modules: %v", err)
	}
	if _, err := kmod.ParseOrder(&b); err != nil {
		t.Errorf("kmod.ParseOrder of the resolved modules: %v", err)
	}

	if _, err := md.Resolve([]string{"nbd", "r8169"}); err == nil || !strings.Contains(err.Error(), "r8169") {
		t.Errorf("Resolve(r8169) = %v, want an error naming r8169", err)
	}
	for _, bad := range []string{"garbage line\n", "/abs/x.ko:\n", "../x.ko:\n", "# only a comment\n"} {
		if _, err := ParseModuleDep(strings.NewReader(bad), nil); err == nil {
			t.Errorf("ParseModuleDep(%q) = nil error", bad)
		}
	}
	cyc := "a.ko: b.ko\nb.ko: a.ko\n"
	md, err = ParseModuleDep(strings.NewReader(cyc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Resolve([]string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("Resolve on a cycle = %v, want a cycle error", err)
	}
}

func TestPlanCarry(t *testing.T) {
	deb := inspectBytes(t, cpioOf(without(debianFiles(), "iscsi")...))
	dracut := inspectBytes(t, cpioOf(dracutFiles()...))
	root := osRoot(ubuntuDep)

	p, c := PlanCarry(deb, []iofs.FS{fstest.MapFS{}, root}, testRelease, "virtio_net")
	if !c.OK || p == nil || len(p.Modules) != 4 {
		t.Fatalf("PlanCarry(debian, virtio_net) = %+v, %+v; want OK with 4 modules", p, c)
	}
	// A bus driver is carried when the OS has it as a module (virtio_pci
	// here), and left out when it has not (pcieport is built in or absent).
	withBus := ubuntuDep + "kernel/drivers/virtio/virtio_pci.ko.zst:\n"
	bp, c := PlanCarry(deb, []iofs.FS{osRoot(withBus)}, testRelease, "virtio_net", "virtio_pci", "pcieport")
	if !c.OK || len(bp.Modules) != 5 || bp.Modules[0].Name != "virtio_pci" {
		t.Errorf("PlanCarry(bus virtio_pci, pcieport) = %+v, %+v; want virtio_pci first, 5 modules", bp, c)
	}
	// A dracut initrd gets carry-in too, with its own hook (BuildCarry).
	if dp, c := PlanCarry(dracut, []iofs.FS{root}, testRelease, "virtio_net"); !c.OK || dp.Generator != GeneratorDracut || len(dp.Modules) != 4 {
		t.Errorf("PlanCarry(dracut) = %+v, %+v; want OK, generator dracut, 4 modules", dp, c)
	}
	for _, tt := range []struct {
		name    string
		in      *Initrd
		release string
		nic     string
		why     string
		fix     string
	}{
		{"no initrd", nil, testRelease, "virtio_net", "could not be read", ""},
		{"no module tree", deb, "6.1.0-9-amd64", "virtio_net", "no lib/modules/6.1.0-9-amd64/modules.dep", "apt install --reinstall linux-image-6.1.0-9-amd64"},
		{"NIC driver missing", deb, testRelease, "r8169", "no module r8169", "give the OS kernel r8169 as a module"},
		{"release unknown", deb, "", "virtio_net", "release is unknown", ""},
	} {
		_, c := PlanCarry(tt.in, []iofs.FS{root}, tt.release, tt.nic)
		if c.OK || !strings.Contains(c.Why, tt.why) || !strings.Contains(c.Fix, tt.fix) {
			t.Errorf("PlanCarry(%s) = %+v, want not OK because %q, with a fix naming %q", tt.name, c, tt.why, tt.fix)
		}
	}
	noNBD := strings.ReplaceAll(ubuntuDep, "kernel/drivers/block/nbd.ko.xz:\n", "")
	if _, c := PlanCarry(deb, []iofs.FS{osRoot(noNBD)}, testRelease, "virtio_net"); c.OK || !strings.Contains(c.Why, "no module nbd") || !strings.Contains(c.Fix, "CONFIG_BLK_DEV_NBD") {
		t.Errorf("PlanCarry(kernel without nbd) = %+v, want not OK naming nbd", c)
	}
}

func carrySettings() *CarrySettings {
	return &CarrySettings{V: CarrySettingsVersion, Portal: "10.1.2.1:3260", Target: "iqn.2026-11.org.lunboot.lab:x", LUN: 1,
		Initiator: "iqn.2026-11.org.lunboot:aa", MAC: "52:54:00:12:34:56", Address: "10.1.2.10/24", Release: testRelease,
		CHAPUser: "u", CHAPSecret: "s3cret-chap"}
}

// fakeBinary stands for /proc/self/exe in the carry cpio.
const fakeBinary = "\x7fELF lunboot"

// buildCarry runs WriteCarry into memory.
func buildCarry(t *testing.T, in CarryInput) ([]byte, *CarryContents) {
	t.Helper()
	var b bytes.Buffer
	c, err := WriteCarry(&b, in)
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), c
}

// TestBuildCarry unpacks the carry cpio with the inspector (which reads it
// as the kernel does) and checks every file the hook and the daemon need.
func TestBuildCarry(t *testing.T) {
	deb := inspectBytes(t, cpioOf(without(debianFiles(), "iscsi")...))
	p, c := PlanCarry(deb, []iofs.FS{osRoot(ubuntuDep)}, testRelease, "virtio_net")
	if !c.OK {
		t.Fatal(c)
	}
	ownOrder := "/scripts/local-top/lvm2 \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"
	input := func() CarryInput {
		return CarryInput{Binary: strings.NewReader(fakeBinary), BinarySize: int64(len(fakeBinary)), Plan: p, Settings: carrySettings(), Order: []byte(ownOrder)}
	}
	out, contents := buildCarry(t, input())
	if len(out)%512 != 0 || contents.Size != int64(len(out)) || len(contents.Modules) != 4 || contents.BinarySize != int64(len(fakeBinary)) {
		t.Errorf("WriteCarry: %d bytes, contents %+v", len(out), contents)
	}
	if got := extract(t, out, CarryBinary); string(got) != fakeBinary {
		t.Errorf("the carried binary = %q, want %q", got, fakeBinary)
	}
	// Appended to an initrd whose length is not a multiple of 4, as the
	// kernel will see it: the OS's files and the carried ones.
	osInitrd := cpioOf(without(debianFiles(), "iscsi")...)
	osInitrd = osInitrd[:len(osInitrd)-2] // the trailer's padding cut short
	var whole bytes.Buffer
	n, _, err := AppendCarry(&whole, bytes.NewReader(osInitrd), input())
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(whole.Len()) || !bytes.HasSuffix(whole.Bytes(), out) || whole.Len() != (len(osInitrd)+3)&^3+len(out) {
		t.Errorf("AppendCarry: %d bytes counted, %d written, want the OS initrd padded to 4 then the %d-byte carry cpio", n, whole.Len(), len(out))
	}
	in := inspectBytes(t, whole.Bytes())
	for _, name := range []string{CarryBinary, CarrySettingsPath, CarryHookPath, "scripts/local-top/ORDER",
		"lunboot/lib/modules/" + testRelease + "/kmod.order",
		"lunboot/lib/modules/" + testRelease + "/kernel/drivers/net/virtio_net.ko.zst",
		"lunboot/lib/modules/" + testRelease + "/kernel/drivers/block/nbd.ko.xz",
		"conf/initramfs.conf"} {
		if name == "lunboot/lib/modules/"+testRelease+"/kmod.order" {
			name = "lunboot/lib/modules/" + testRelease + "/" + kmod.OrderFile
		}
		if !in.Has(name) {
			t.Errorf("the initrd with the carry cpio lacks %s", name)
		}
	}
	order, ok := in.Captured("scripts/local-top/ORDER")
	if !ok || !strings.HasPrefix(string(order), "/scripts/local-top/lunboot \"$@\"\n") || !strings.Contains(string(order), "/scripts/local-top/lvm2") {
		t.Errorf("ORDER after the carry cpio = %q, want the hook first and lvm2 kept", order)
	}
	if got := CarryOrder([]byte(string(CarryOrder([]byte(ownOrder))))); strings.Count(string(got), "local-top/lunboot") != 1 {
		t.Errorf("CarryOrder twice lists the hook %d times:\n%s", strings.Count(string(got), "local-top/lunboot"), got)
	}
	// The settings round-trip, and stay out of everything but carry.json.
	set := extract(t, out, CarrySettingsPath)
	if s, err := ParseCarrySettings(set); err != nil || s.CHAPSecret != "s3cret-chap" {
		t.Errorf("ParseCarrySettings(carry.json) = %+v, %v", s, err)
	}
	if bytes.Count(out, []byte("s3cret-chap")) != 1 {
		t.Errorf("the CHAP secret appears %d times in the cpio, want once (carry.json)", bytes.Count(out, []byte("s3cret-chap")))
	}
	if mode := entryMode(t, out, CarrySettingsPath); mode&0o077 != 0 {
		t.Errorf("carry.json mode %o, want no access for group and others", mode)
	}
	bad := carrySettings()
	bad.MAC = ""
	if _, err := WriteCarry(io.Discard, CarryInput{Binary: strings.NewReader("x"), BinarySize: 1, Plan: p, Settings: bad}); err == nil || !strings.Contains(err.Error(), "mac") {
		t.Errorf("WriteCarry(no MAC) = %v, want an error naming mac", err)
	}
	// A binary shorter than its stated size fails the build, naming it.
	short := input()
	short.BinarySize++
	if _, err := WriteCarry(io.Discard, short); err == nil || !strings.Contains(err.Error(), CarryBinary) {
		t.Errorf("WriteCarry(binary short by a byte) = %v, want an error naming %s", err, CarryBinary)
	}
}

// TestBuildCarryDracut checks the dracut hook in the carry cpio appended to
// a dracut initrd without iSCSI: the unit and its initrd.target.wants
// symlink, the unit's ordering before dracut's root wait, its KillMode, and
// no initramfs-tools hook.
func TestBuildCarryDracut(t *testing.T) {
	osFiles := without(dracutFiles(), "iscsi")
	dr := inspectBytes(t, cpioOf(osFiles...))
	if dr.Generator != GeneratorDracut {
		t.Fatalf("fixture generator %s, want dracut", dr.Generator)
	}
	p, c := PlanCarry(dr, []iofs.FS{osRoot(ubuntuDep)}, testRelease, "virtio_net")
	if !c.OK {
		t.Fatal(c)
	}
	input := CarryInput{Binary: strings.NewReader(fakeBinary), BinarySize: int64(len(fakeBinary)), Plan: p, Settings: carrySettings()}
	var whole bytes.Buffer
	_, contents, err := AppendCarry(&whole, bytes.NewReader(cpioOf(osFiles...)), input)
	if err != nil {
		t.Fatal(err)
	}
	out := whole.Bytes()[len(cpioOf(osFiles...)):]
	if len(out)%512 != 0 || contents.Size != int64(len(out)) || len(contents.Modules) != 4 || contents.Hook != CarryUnitPath {
		t.Errorf("AppendCarry(dracut): %d bytes, contents %+v", len(out), contents)
	}
	in := inspectBytes(t, whole.Bytes())
	if in.Generator != GeneratorDracut {
		t.Errorf("the initrd with the carry cpio reads as %s, want dracut still", in.Generator)
	}
	for _, name := range []string{CarryBinary, CarrySettingsPath, CarryUnitPath, CarryUnitWants,
		"lunboot/lib/modules/" + testRelease + "/" + kmod.OrderFile,
		"lunboot/lib/modules/" + testRelease + "/kernel/drivers/block/nbd.ko.xz"} {
		if !in.Has(name) {
			t.Errorf("the dracut initrd with the carry cpio lacks %s", name)
		}
	}
	for _, name := range []string{CarryHookPath, carryOrderPath} {
		if in.Has(name) {
			t.Errorf("the dracut carry cpio has the initramfs-tools file %s", name)
		}
	}
	if mode := entryMode(t, out, CarryUnitWants); mode&0o170000 != 0o120000 {
		t.Errorf("%s mode %o, want a symlink", CarryUnitWants, mode)
	}
	if target := string(extract(t, out, CarryUnitWants)); target != "../lunboot-carry.service" {
		t.Errorf("%s -> %q, want ../lunboot-carry.service", CarryUnitWants, target)
	}
	unit := string(extract(t, out, CarryUnitPath))
	for _, want := range []string{
		"DefaultDependencies=no\n",
		"After=systemd-udevd.service systemd-udev-trigger.service\n",
		"Before=dracut-initqueue.service initrd-root-device.target sysroot.mount\n",
		"KillMode=process\n", "Type=oneshot\n", "OnFailure=emergency.target\n",
		"ExecStart=/lunboot/lunboot carry --settings /lunboot/carry.json start\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the carry unit lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "s3cret") {
		t.Error("the carry unit holds the CHAP secret")
	}
}

// TestCarryHookScript runs the hook as initramfs-tools does, with sh: its
// prereqs answer, and its run against a stand-in lunboot that fails, which
// must reach initramfs-tools' panic with the reason.
func TestCarryHookScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook")
	// The hook's absolute paths, moved under dir.
	text := strings.ReplaceAll(CarryHook, "/"+CarryBinary, dir+"/lunboot")
	text = strings.ReplaceAll(text, ". /scripts/functions", ". "+dir+"/functions")
	if err := os.WriteFile(hook, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	functions := "log_begin_msg() { echo \"begin: $*\"; }\nlog_end_msg() { echo end; }\npanic() { echo \"PANIC: $*\"; exit 7; }\n"
	os.WriteFile(filepath.Join(dir, "functions"), []byte(functions), 0o644)
	if out, err := exec.Command(sh, "-n", hook).CombinedOutput(); err != nil {
		t.Fatalf("sh -n hook: %v\n%s", err, out)
	}
	if out, err := exec.Command(sh, hook, "prereqs").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("hook prereqs = %q, %v; want nothing, exit 0", out, err)
	}
	for _, tt := range []struct {
		lunboot string
		code    int
		want    string
	}{
		{"#!/bin/sh\necho \"args: $*\"\nexit 0\n", 0, "args: carry --settings /lunboot/carry.json start"},
		{"#!/bin/sh\nexit 1\n", 7, "PANIC: lunboot carry-in failed"},
	} {
		os.WriteFile(filepath.Join(dir, "lunboot"), []byte(tt.lunboot), 0o755)
		out, err := exec.Command(sh, hook).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.Contains(string(out), tt.want) {
			t.Errorf("hook with lunboot exiting %q = exit %d, %q; want exit %d and %q", tt.lunboot, code, out, tt.code, tt.want)
		}
	}
}

// extract returns a file's data from an uncompressed newc archive.
func extract(t *testing.T, archive []byte, name string) []byte {
	t.Helper()
	p := newPosReader(bytes.NewReader(archive), 0)
	for {
		h, err := readHeader(p)
		if err != nil || h.Name == newcTrailer {
			t.Fatalf("%s not in the archive (%v)", name, err)
		}
		data := make([]byte, h.FileSize)
		if _, err := io.ReadFull(p, data); err != nil {
			t.Fatal(err)
		}
		p.align()
		if h.Name == name {
			return data
		}
	}
}

func entryMode(t *testing.T, archive []byte, name string) uint32 {
	t.Helper()
	p := newPosReader(bytes.NewReader(archive), 0)
	for {
		h, err := readHeader(p)
		if err != nil || h.Name == newcTrailer {
			t.Fatalf("%s not in the archive (%v)", name, err)
		}
		p.discard(int64(h.FileSize))
		p.align()
		if h.Name == name {
			return h.Mode
		}
	}
}
