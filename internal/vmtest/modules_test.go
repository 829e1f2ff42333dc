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
	"github.com/lunboot/lunboot/pkg/kmod/depmod"
)

// TestResolveModules checks the guest's module order on a tree of fake
// modules: dependencies first, '-' folded, built-in modules left out,
// cycles and missing dependencies named.
func TestResolveModules(t *testing.T) {
	graph := map[string]string{
		"ext4":         "jbd2,mbcache,crc16",
		"jbd2":         "",
		"mbcache":      "",
		"crc16":        "",
		"virtio_net":   "virtio_ring,virtio,net_failover",
		"virtio":       "virtio_ring",
		"virtio_ring":  "",
		"net_failover": "failover",
		"failover":     "",
		"loop_a":       "loop_b",
		"loop_b":       "loop_a",
		"needs_gone":   "gone",
		"uses_bi":      "builtin_one",
	}
	dir := t.TempDir()
	for name, deps := range graph {
		p := filepath.Join(dir, "kernel", name+".ko")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, fakeModule("depends="+deps+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/lib/builtin_one.ko\n"), 0o644); err != nil {
		t.Fatal(err)
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
		{[]string{"nothing"}, nil, `"nothing"`},
	}
	for _, tt := range tests {
		ms, err := resolveModules(dir, tt.names)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolveModules(%v) = %v, want error containing %q", tt.names, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("resolveModules(%v) = %v", tt.names, err)
			continue
		}
		if diff := cmp.Diff(tt.want, moduleNames(ms)); diff != "" {
			t.Errorf("resolveModules(%v) order (-want +got):\n%s", tt.names, diff)
		}
	}
	if _, err := resolveModules(dir, []string{"nothing"}); !errors.Is(err, depmod.ErrUnknownModule) {
		t.Errorf("resolveModules([nothing]) = %v, want depmod.ErrUnknownModule", err)
	}
}

// fakeModule builds a minimal ELF64 relocatable object holding a .modinfo
// section, the part of a .ko that depmod reads.
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

// TestResolveModulesTree lays modules out in directories as a kernel
// package does. crc16 is built in, so, as in a real tree, modules.builtin
// lists it and it has no .ko file.
func TestResolveModulesTree(t *testing.T) {
	dir := t.TempDir()
	mods := map[string]string{
		"kernel/fs/ext4/ext4.ko":         "depends=jbd2,crc16\x00",
		"kernel/fs/jbd2/jbd2.ko":         "depends=\x00",
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
	ms, err := resolveModules(dir, []string{"virtio_x"})
	if err != nil {
		t.Fatalf("resolveModules = %v", err)
	}
	if diff := cmp.Diff([]string{"jbd2", "ext4", "virtio_x"}, moduleNames(ms)); diff != "" {
		t.Errorf("resolveModules order (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(ms[2].Path, "virtio-x.ko") {
		t.Errorf("virtio_x path = %s", ms[2].Path)
	}
	if _, err := resolveModules(dir, []string{"missing"}); err == nil {
		t.Errorf("resolveModules(missing) = nil error")
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
		ms, err := resolveModules(modDir, []string{tt.name})
		if err != nil {
			t.Errorf("resolveModules(%s) = %v", tt.name, err)
			continue
		}
		pos := map[string]int{}
		for i, m := range ms {
			pos[m.Name] = i
			img, err := os.ReadFile(m.Path)
			if err != nil || !bytes.HasPrefix(img, []byte("\x7fELF")) {
				t.Errorf("module file %s = %d bytes, %v, want an ELF image", m.Path, len(img), err)
			}
		}
		if ms[len(ms)-1].Name != tt.name {
			t.Errorf("resolveModules(%s) ends with %s, want the module itself last", tt.name, ms[len(ms)-1].Name)
		}
		for m, dep := range tt.after {
			if pos[dep] >= pos[m] {
				t.Errorf("resolveModules(%s): %s at %d not before %s at %d", tt.name, dep, pos[dep], m, pos[m])
			}
		}
	}
}
