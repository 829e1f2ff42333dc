package kmod

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		// Patterns as scripts/mod/file2alias.c writes them.
		{"pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", true},
		{"pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00008086d0000100Esv00001AF4sd00000001bc02sc00i00", false},
		{"pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00", true},
		{"virtio:d00000001v*", "virtio:d00000001v00001AF4", true},
		{"virtio:d00000001v*", "virtio:d00000002v00001AF4", false},
		{"usb:v0B95p1790d*dc*dsc*dp*ic*isc*ip*in*", "usb:v0B95p1790d0100dcFFdsc00dp00icFFiscFFip00in00", true},
		{"pci:v*d*sv*sd*bc02sc00i*", "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", true},
		{"pci:v*d*sv*sd*bc02sc00i*", "pci:v00008086d0000100Esv00001AF4sd00001100bc01sc00i00", false},
		{"acpi*:PNP0C0A:*", "acpi:PNP0C0A:", true},
		{"of:N*T*Cfoo,bar", "of:NxTyCfoo,bar", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"x[0-9]y", "x5y", true},
		{"x[!0-9]y", "x5y", false},
		{"x[!0-9]y", "xay", true},
		{"x[]]y", "x]y", true},
		{"a\\*b", "a*b", true},
		{"a\\*b", "axb", false},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"a*", "a/b", true}, // fnmatch without FNM_PATHNAME: '*' crosses '/'
		{"[abc", "[abc", true},
	}
	for _, tt := range tests {
		if got := Match(tt.p, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestAliasesRoundTrip(t *testing.T) {
	in := []Alias{{"virtio:d00000001v*", "virtio_net"}, {"fs-ext4", "ext4"}, {"devname:nbd-control", "nbd"}}
	var b bytes.Buffer
	if err := WriteAliases(&b, "generated\nfor a test", in); err != nil {
		t.Fatal(err)
	}
	out, err := ParseAliases(&b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("ParseAliases(WriteAliases()) (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"alias x", "alias a b c", "options nbd max_part=8", "alias a b-c"} {
		if _, err := ParseAliases(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseAliases(%q) = nil error, want one", bad)
		}
	}
	if err := WriteAliases(&b, "", []Alias{{"a b", "m"}}); err == nil {
		t.Errorf("WriteAliases with a space in the pattern = nil error, want one")
	}
}

func TestIsDeviceAlias(t *testing.T) {
	for p, want := range map[string]bool{
		"pci:v*d*": true, "virtio:d00000001v*": true, "auxiliary:mlx5_core.eth": true, "cpu:type:x86,ven*": true,
		"fs-ext4": false, "crypto-crc32c": false, "devname:nbd-control": false, "block-major-43-*": false, "char-major-10-237": false,
	} {
		if got := IsDeviceAlias(p); got != want {
			t.Errorf("IsDeviceAlias(%q) = %v, want %v", p, got, want)
		}
	}
}

// lab is a load order like the image's: a PCI bus driver that creates
// virtio devices, the virtio NIC driver, two real NICs with a shared
// dependency, and the modules the boot needs whatever the hardware.
var lab = []Entry{
	{Name: "crc32c_generic", Path: "kernel/crypto/crc32c_generic.ko"},
	{Name: "virtio_pci_modern_dev", Path: "kernel/drivers/virtio/virtio_pci_modern_dev.ko"},
	{Name: "virtio_pci", Path: "kernel/drivers/virtio/virtio_pci.ko", Depends: []string{"virtio_pci_modern_dev"}},
	{Name: "failover", Path: "kernel/net/core/failover.ko"},
	{Name: "net_failover", Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
	{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"net_failover"}},
	{Name: "mdio", Path: "kernel/drivers/net/mdio.ko"},
	{Name: "e1000e", Path: "kernel/drivers/net/e1000e.ko", Depends: []string{"mdio"}},
	{Name: "igb", Path: "kernel/drivers/net/igb.ko", Depends: []string{"mdio"}},
	{Name: "nbd", Path: "kernel/drivers/block/nbd.ko"},
	{Name: "jbd2", Path: "kernel/fs/jbd2/jbd2.ko"},
	{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko", Depends: []string{"jbd2", "crc32c_generic"}},
}

var labAliases = []Alias{
	{"crypto-crc32c", "crc32c_generic"},
	{"pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_pci"},
	{"virtio:d00000001v*", "virtio_net"},
	{"pci:v00008086d000010D3sv*sd*bc*sc*i*", "e1000e"},
	{"pci:v00008086d00001533sv*sd*bc*sc*i*", "igb"},
	{"devname:nbd-control", "nbd"},
	{"block-major-43-*", "nbd"},
	{"fs-ext4", "ext4"},
}

func aliasImage(t *testing.T) string {
	t.Helper()
	root := image(t, rel, lab)
	var b bytes.Buffer
	if err := WriteAliases(&b, "test", labAliases); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "lib", "modules", rel, AliasFile), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestMatchHardware loads what a QEMU guest with one virtio NIC needs: the
// virtio device appears only once virtio_pci has loaded, so virtio_net
// comes in a second round; the Intel NICs and their mdio stay out.
func TestMatchHardware(t *testing.T) {
	root := aliasImage(t)
	l := &loader{t: t, done: map[string]bool{}, deps: depsOf(lab)}
	devices := func() ([]string, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		d := []string{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "pci:v00008086d00001237sv*"}
		if l.done["virtio_pci"] {
			d = append(d, "virtio:d00000001v00001AF4")
		}
		return d, nil
	}
	res, err := LoadAll(context.Background(), nil, Options{
		Root: root, Release: rel, Params: map[string]string{}, Parallel: 3,
		Load: l.load, Present: func(string) bool { return false },
		MatchHardware: true, Modaliases: devices,
	})
	if err != nil {
		t.Fatalf("LoadAll() = %v", err)
	}
	want := []outcome{
		{"crc32c_generic", "loaded", ""}, {"virtio_pci_modern_dev", "loaded", ""}, {"virtio_pci", "loaded", ""},
		{"failover", "loaded", ""}, {"net_failover", "loaded", ""}, {"virtio_net", "loaded", ""},
		{"mdio", "not needed", ""}, {"e1000e", "not needed", ""}, {"igb", "not needed", ""},
		{"nbd", "loaded", ""}, {"jbd2", "loaded", ""}, {"ext4", "loaded", ""},
	}
	if diff := cmp.Diff(want, outcomes(res)); diff != "" {
		t.Errorf("LoadAll(MatchHardware) (-want +got):\n%s", diff)
	}
	if got := Summarize(res).String(); got != "9 loaded, 3 not needed" {
		t.Errorf("Summarize() = %q", got)
	}
}

// TestMatchHardwareFallbacks: without an alias list, or without a device
// list, every module loads, as before the lever existed.
func TestMatchHardwareFallbacks(t *testing.T) {
	all := func(t *testing.T, root string, devices func() ([]string, error)) {
		t.Helper()
		l := &loader{t: t, done: map[string]bool{}, deps: depsOf(lab)}
		res, err := LoadAll(context.Background(), nil, Options{
			Root: root, Release: rel, Params: map[string]string{},
			Load: l.load, Present: func(string) bool { return false },
			MatchHardware: true, Modaliases: devices,
		})
		if err != nil {
			t.Fatalf("LoadAll() = %v", err)
		}
		if s := Summarize(res); s[Loaded] != len(lab) {
			t.Errorf("LoadAll() = %s, want all %d loaded", s, len(lab))
		}
	}
	t.Run("no alias list", func(t *testing.T) {
		all(t, image(t, rel, lab), func() ([]string, error) { return nil, nil })
	})
	t.Run("no device list", func(t *testing.T) {
		all(t, aliasImage(t), func() ([]string, error) { return nil, os.ErrPermission })
	})
}

func TestModaliases(t *testing.T) {
	sys := t.TempDir()
	for p, v := range map[string]string{
		"bus/pci/devices/0000:00:03.0/modalias":    "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
		"bus/pci/devices/0000:00:04.0/modalias":    "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
		"bus/virtio/devices/virtio0/modalias":      "virtio:d00000001v00001AF4\n",
		"bus/platform/devices/serial8250/driver_x": "not a modalias",
	} {
		f := filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Modaliases(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "virtio:d00000001v00001AF4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Modaliases() (-want +got):\n%s", diff)
	}
	if _, err := Modaliases(filepath.Join(sys, "nothing")); err == nil {
		t.Errorf("Modaliases(no sysfs) = nil error, want one")
	}
}

// TestOnDemand: modules named in OnDemand stay out of LoadAll, with the
// dependencies only they need, and LoadNamed brings them in later, after
// their dependencies, and never inserts what the kernel already has.
func TestOnDemand(t *testing.T) {
	root := aliasImage(t)
	l := &loader{t: t, done: map[string]bool{}, deps: depsOf(lab)}
	present := func(name string) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.done[name]
	}
	opts := Options{
		Root: root, Release: rel, Params: map[string]string{},
		Load: l.load, Present: present, MatchHardware: true, OnDemand: []string{"ext4"},
		Modaliases: func() ([]string, error) {
			return []string{"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", "virtio:d00000001v00001AF4"}, nil
		},
	}
	res, err := LoadAll(context.Background(), nil, opts)
	if err != nil {
		t.Fatalf("LoadAll() = %v", err)
	}
	if got := Summarize(res).String(); got != "6 loaded, 3 not needed, 3 on demand" {
		t.Errorf("LoadAll(OnDemand ext4) = %q, want ext4, jbd2 and crc32c_generic on demand, the two Intel NICs and mdio not needed", got)
	}
	if l.done["ext4"] || l.done["jbd2"] || l.done["crc32c_generic"] {
		t.Fatalf("LoadAll loaded an on-demand module: %v", l.calls)
	}
	n := len(l.calls)
	res, err = LoadNamed(context.Background(), nil, opts, "ext4")
	if err != nil {
		t.Fatalf("LoadNamed(ext4) = %v", err)
	}
	// crc32c_generic is ext4's dependency here, so it waited with it.
	want := []outcome{{"crc32c_generic", "loaded", ""}, {"jbd2", "loaded", ""}, {"ext4", "loaded", ""}}
	if diff := cmp.Diff(want, outcomes(res)); diff != "" {
		t.Errorf("LoadNamed(ext4) (-want +got):\n%s", diff)
	}
	if got := l.calls[n:]; !slices.Equal(got, []string{"crc32c_generic", "jbd2", "ext4"}) {
		t.Errorf("LoadNamed(ext4) inserted %v, want [crc32c_generic jbd2 ext4]", got)
	}
	// Again: everything is there now, nothing is inserted twice.
	n = len(l.calls)
	if _, err := LoadNamed(context.Background(), nil, opts, "ext4"); err != nil || len(l.calls) != n {
		t.Errorf("LoadNamed(ext4) again = %v, inserted %v", err, l.calls[n:])
	}
	// A module the image lacks is named; the others load all the same.
	res, err = LoadNamed(context.Background(), nil, opts, "xfs", "igb")
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "xfs: not in the image") {
		t.Errorf("LoadNamed(xfs, igb) = %v, want an error naming xfs", err)
	}
	if diff := cmp.Diff([]outcome{{"mdio", "loaded", ""}, {"igb", "loaded", ""}}, outcomes(res)); diff != "" {
		t.Errorf("LoadNamed(xfs, igb) (-want +got):\n%s", diff)
	}
}
