package vmtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/lunboot/lunboot/internal/testenv"
)

func TestResolve(t *testing.T) {
	graph := map[string][]string{
		"ext4":         {"jbd2", "mbcache", "crc16"},
		"jbd2":         {},
		"mbcache":      {},
		"crc16":        {},
		"virtio_net":   {"virtio_ring", "virtio", "net_failover"},
		"virtio":       {"virtio_ring"},
		"virtio_ring":  {},
		"net_failover": {"failover"},
		"failover":     {},
		"loop_a":       {"loop_b"},
		"loop_b":       {"loop_a"},
		"needs_gone":   {"gone"},
		"uses_bi":      {"builtin_one"},
	}
	builtin := map[string]bool{"builtin_one": true}
	lookup := func(name string) (Module, bool, error) {
		if builtin[name] {
			return Module{}, true, nil
		}
		deps, ok := graph[name]
		if !ok {
			return Module{}, false, errors.New("module " + name + " not found")
		}
		return Module{Name: name, Depends: deps}, false, nil
	}
	tests := []struct {
		names   []string
		want    []string
		wantErr string
	}{
		{[]string{"ext4"}, []string{"jbd2", "mbcache", "crc16", "ext4"}, ""},
		{[]string{"virtio-net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}, ""},
		{[]string{"virtio", "virtio_net"}, []string{"virtio_ring", "virtio", "failover", "net_failover", "virtio_net"}, ""},
		{[]string{"uses_bi"}, []string{"uses_bi"}, ""},
		{[]string{"builtin_one"}, []string{}, ""},
		{[]string{"loop_a"}, nil, "cycle: loop_a -> loop_b -> loop_a"},
		{[]string{"needs_gone"}, nil, "needed by needs_gone"},
		{[]string{"nothing"}, nil, "nothing not found"},
	}
	for _, tt := range tests {
		ms, err := resolve(tt.names, lookup)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolve(%v) = %v, want error containing %q", tt.names, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("resolve(%v) = %v", tt.names, err)
			continue
		}
		if diff := cmp.Diff(tt.want, moduleNames(ms)); diff != "" {
			t.Errorf("resolve(%v) order (-want +got):\n%s", tt.names, diff)
		}
	}
}

// fakeModule builds a minimal ELF64 relocatable object holding a .modinfo
// section, the part of a .ko that ResolveModules reads.
func fakeModule(modinfo string) []byte {
	le := binary.LittleEndian
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	dataOff := 64
	strOff := dataOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	b := make([]byte, shOff+3*64)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 1)  // ET_REL
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], 64) // e_ehsize
	le.PutUint16(b[58:], 64) // e_shentsize
	le.PutUint16(b[60:], 3)  // e_shnum
	le.PutUint16(b[62:], 2)  // e_shstrndx
	copy(b[dataOff:], modinfo)
	copy(b[strOff:], shstr)
	sh := func(i int, name, typ uint32, off, size int) {
		h := b[shOff+i*64:]
		le.PutUint32(h[0:], name)
		le.PutUint32(h[4:], typ)
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint64(h[48:], 1)
	}
	sh(1, 1, 1, dataOff, len(modinfo)) // .modinfo, SHT_PROGBITS
	sh(2, 10, 3, strOff, len(shstr))   // .shstrtab, SHT_STRTAB
	return b
}

func TestModinfo(t *testing.T) {
	img := fakeModule("license=GPL\x00depends=virtio_ring,virtio,net-failover\x00alias=a\x00alias=b\x00name=virtio_net\x00")
	info, err := modinfo(img)
	if err != nil {
		t.Fatalf("modinfo = %v", err)
	}
	if info["name"] != "virtio_net" || info["alias"] != "a" {
		t.Errorf("modinfo = %v", info)
	}
	if diff := cmp.Diff([]string{"virtio_ring", "virtio", "net_failover"}, splitDepends(info["depends"])); diff != "" {
		t.Errorf("depends (-want +got):\n%s", diff)
	}
	if got := splitDepends(""); got != nil {
		t.Errorf(`splitDepends("") = %v, want none`, got)
	}
	if _, err := modinfo([]byte("not an elf")); err == nil {
		t.Errorf("modinfo(garbage) = nil error")
	}
}

func TestResolveModulesTree(t *testing.T) {
	dir := t.TempDir()
	mods := map[string]string{
		"kernel/fs/ext4/ext4.ko":         "depends=jbd2,crc16\x00",
		"kernel/fs/jbd2/jbd2.ko":         "depends=\x00",
		"kernel/lib/crc16.ko":            "depends=\x00",
		"kernel/drivers/net/virtio-x.ko": "depends=ext4\x00",
	}
	for p, info := range mods {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, fakeModule(info), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/lib/crc16.ko\n"), 0o644)
	ms, err := ResolveModules(dir, []string{"virtio_x"})
	if err != nil {
		t.Fatalf("ResolveModules = %v", err)
	}
	if diff := cmp.Diff([]string{"jbd2", "ext4", "virtio_x"}, moduleNames(ms)); diff != "" {
		t.Errorf("ResolveModules order (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(ms[2].Path, "virtio-x.ko") {
		t.Errorf("virtio_x path = %s", ms[2].Path)
	}
	if _, err := ResolveModules(dir, []string{"missing"}); err == nil {
		t.Errorf("ResolveModules(missing) = nil error")
	}
}

// TestResolveModulesDebian checks the resolver against the real kernel
// tree `make deps` unpacks.
func TestResolveModulesDebian(t *testing.T) {
	_, modDir, err := findKernel(testenv.KernelDir())
	if err != nil {
		testenv.Missing(t, err.Error()+" (unpacked by `make deps`)")
	}
	tests := []struct {
		name  string
		after map[string]string // module → one dependency that must precede it
	}{
		{"nbd", nil},
		{"ext4", map[string]string{"ext4": "jbd2"}},
		{"virtio_net", map[string]string{"virtio_net": "net_failover", "net_failover": "failover"}},
	}
	for _, tt := range tests {
		ms, err := ResolveModules(modDir, []string{tt.name})
		if err != nil {
			t.Errorf("ResolveModules(%s) = %v", tt.name, err)
			continue
		}
		pos := map[string]int{}
		for i, m := range ms {
			pos[m.Name] = i
			img, err := ReadModule(m.Path)
			if err != nil || !bytes.HasPrefix(img, []byte("\x7fELF")) {
				t.Errorf("ReadModule(%s) = %d bytes, %v, want an ELF image", m.Path, len(img), err)
			}
		}
		if ms[len(ms)-1].Name != tt.name {
			t.Errorf("ResolveModules(%s) ends with %s, want the module itself last", tt.name, ms[len(ms)-1].Name)
		}
		for m, dep := range tt.after {
			if pos[dep] >= pos[m] {
				t.Errorf("ResolveModules(%s): %s at %d not before %s at %d", tt.name, dep, pos[dep], m, pos[m])
			}
		}
	}
}
