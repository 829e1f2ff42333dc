package handoff

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseOverlay(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Overlay
		bad  bool
	}{
		{"", Overlay{}, false},
		{"none", Overlay{}, false},
		{"ram", Overlay{Kind: OverlayRAM}, false},
		{"lun:2", Overlay{Kind: OverlayLUN, LUN: 2}, false},
		{"lun:1f", Overlay{Kind: OverlayLUN, LUN: 0x1f}, false},
		{"lun:0x10", Overlay{Kind: OverlayLUN, LUN: 0x10}, false},
		{"lun:", Overlay{}, true},
		{"lun:zz", Overlay{}, true},
		{"disk", Overlay{}, true},
		{"RAM", Overlay{}, true},
	} {
		got, err := ParseOverlay(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseOverlay(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.bad)
		}
		if err == nil && tc.want.Kind != OverlayNone {
			if back, _ := ParseOverlay(got.String()); back != got {
				t.Errorf("ParseOverlay(%q).String() = %q does not parse back", tc.in, got.String())
			}
		}
	}
}

func TestOverlayBytes(t *testing.T) {
	const mem = 2 << 30
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", mem / 100 * 25, false},
		{"25%", mem / 100 * 25, false},
		{"512M", 512 << 20, false},
		{"2G", 2 << 30, false},
		{"1048576", 1 << 20, false},
		{"64KiB", 0, true}, // below 1M
		{"0%", 0, true},
		{"95%", 0, true},
		{"-1G", 0, true},
		{"lots", 0, true},
		{"9999999999T", 0, true},
	} {
		got, err := OverlayBytes(tc.in, mem)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("OverlayBytes(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMaskUnits(t *testing.T) {
	run := t.TempDir()
	// A unit already there (a generator's, or an earlier mask) is replaced.
	os.MkdirAll(filepath.Join(run, "systemd/system"), 0o755)
	os.WriteFile(filepath.Join(run, "systemd/system/iscsid.service"), []byte("[Unit]\n"), 0o644)
	if err := MaskUnits(run, OSInitiatorUnits); err != nil {
		t.Fatal(err)
	}
	for _, d := range MaskDirs {
		for _, u := range []string{"iscsid.service", "iscsid.socket", "open-iscsi.service", "iscsi.service"} {
			if l, err := os.Readlink(filepath.Join(run, d, u)); err != nil || l != "/dev/null" {
				t.Errorf("%s/%s -> %q, %v; want /dev/null", d, u, l, err)
			}
		}
	}
}

func TestGoldenWarnings(t *testing.T) {
	prepared := fstest.MapFS{"etc/machine-id": {Data: []byte("")}, "etc/hostname": {Data: []byte("\n")}, "etc/ssh/sshd_config": {}}
	if w := GoldenWarnings(toFS(fstest.MapFS{"boot/vmlinuz": {}}, prepared)); len(w) != 0 {
		t.Errorf("a prepared golden image: warnings %q", w)
	}
	used := fstest.MapFS{
		"etc/machine-id":               {Data: []byte("0123456789abcdef0123456789abcdef\n")},
		"etc/hostname":                 {Data: []byte("lunboot-debian\n")},
		"etc/ssh/ssh_host_ed25519_key": {},
		"etc/ssh/ssh_host_rsa_key":     {},
		"etc/ssh/ssh_host_rsa_key.pub": {},
	}
	w := strings.Join(GoldenWarnings(toFS(used)), "\n")
	for _, want := range []string{"/etc/machine-id is set (01234567…)", "2 SSH host keys", `/etc/hostname is "lunboot-debian"`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
}

func toFS(ms ...fstest.MapFS) []fs.FS {
	var out []fs.FS
	for _, m := range ms {
		out = append(out, m)
	}
	return out
}
