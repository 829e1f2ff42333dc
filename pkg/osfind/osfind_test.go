package osfind

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree creates files (path → content) under a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func labels(es []*Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, string(e.Format)+":"+e.Label)
	}
	return out
}

func TestScanDir(t *testing.T) {
	for _, tt := range []struct {
		name        string
		files       map[string]string
		want        []string
		wantCmdline string // of the first entry
		wantInitrd  bool
	}{
		{
			name: "BLS default from loader.conf",
			files: map[string]string{
				"vmlinuz-a": "kernel a", "vmlinuz-b": "kernel b", "initrd-a": "initrd a",
				"loader/loader.conf":         "timeout 3\ndefault a.conf\n",
				"loader/entries/a.conf":      "title Alpha\nlinux /vmlinuz-a\ninitrd /initrd-a\noptions root=UUID=1 rw\n",
				"loader/entries/b.conf":      "title Beta\nlinux /vmlinuz-b\noptions quiet\n",
				"loader/entries/broken.conf": "title Broken\noptions x\n",
			},
			want:        []string{"BLS:Alpha", "BLS:Beta"},
			wantCmdline: "root=UUID=1 rw",
			wantInitrd:  true,
		},
		{
			name: "BLS without loader.conf: reverse file-name order",
			files: map[string]string{
				"vmlinuz":                   "k",
				"loader/entries/1-old.conf": "title Old\nlinux /vmlinuz\n",
				"loader/entries/2-new.conf": "title New\nlinux /vmlinuz\n",
			},
			want: []string{"BLS:New", "BLS:Old"},
		},
		{
			name: "syslinux default first",
			files: map[string]string{
				"vmlinuz": "k", "initrd.img": "i",
				"syslinux.cfg": "DEFAULT probe\nLABEL rescue\n  KERNEL /vmlinuz\nLABEL probe\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND console=ttyS0 lunboot.fixture=mbr\n",
			},
			want:        []string{"syslinux:probe", "syslinux:rescue"},
			wantCmdline: "console=ttyS0 lunboot.fixture=mbr",
			wantInitrd:  true,
		},
		{
			name: "GRUB menuentry",
			files: map[string]string{
				"boot/vmlinuz": "k", "boot/initrd.img": "i",
				"boot/grub/grub.cfg": "set default=0\nmenuentry 'Debian' {\n  linux /boot/vmlinuz root=UUID=2 ro\n  initrd /boot/initrd.img\n}\n",
			},
			want:        []string{"GRUB:Debian"},
			wantCmdline: "root=UUID=2 ro",
			wantInitrd:  true,
		},
		{
			name:  "nothing bootable",
			files: map[string]string{"etc/fstab": "x"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			entries, p := ScanDir(context.Background(), nil, dir, "/dev/test1", nil, nil)
			defer closeEntries(entries)
			if got := labels(entries); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("ScanDir entries = %q, want %q", got, tt.want)
			}
			if len(entries) == 0 {
				if len(p.Found) != 0 {
					t.Errorf("Partition.Found = %v, want empty", p.Found)
				}
				return
			}
			e := entries[0]
			if tt.wantCmdline != "" && !strings.Contains(e.Cmdline, tt.wantCmdline) {
				t.Errorf("first entry cmdline = %q, want it to contain %q", e.Cmdline, tt.wantCmdline)
			}
			if (e.Initrd != nil) != tt.wantInitrd {
				t.Errorf("first entry initrd present = %v, want %v", e.Initrd != nil, tt.wantInitrd)
			}
			buf := make([]byte, 1)
			if _, err := e.Kernel.ReadAt(buf, 0); err != nil {
				t.Errorf("reading kernel of %s: %v", e, err)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	f := &Found{Entries: []*Entry{
		{Label: "Debian GNU/Linux, with Linux 6.1.0-56-amd64", Format: GRUB, Device: "/dev/nbd0p1"},
		{Label: "Debian GNU/Linux, with Linux 6.1.0-56-amd64 (recovery mode)", Format: GRUB, Device: "/dev/nbd0p1"},
		{Label: "probe", Format: Syslinux, Device: "/dev/nbd0p1"},
	}}
	for _, tt := range []struct {
		sel     string
		want    string
		wantErr string
	}{
		{"", "Debian GNU/Linux, with Linux 6.1.0-56-amd64", ""},
		{"1", "Debian GNU/Linux, with Linux 6.1.0-56-amd64 (recovery mode)", ""},
		{"0", "Debian GNU/Linux, with Linux 6.1.0-56-amd64", ""},
		{"probe", "probe", ""},
		{"RECOVERY", "Debian GNU/Linux, with Linux 6.1.0-56-amd64 (recovery mode)", ""},
		{"debian", "", "ambiguous"},
		{"3", "", "does not exist"},
		{"-1", "", "does not exist"},
		{"windows", "", "no boot entry matches"},
	} {
		e, err := f.Choose(tt.sel)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "probe") {
				t.Errorf("Choose(%q) = %v, %v; want error containing %q and the entry list", tt.sel, e, err, tt.wantErr)
			}
			continue
		}
		if err != nil || e.Label != tt.want {
			t.Errorf("Choose(%q) = %v, %v; want %q", tt.sel, e, err, tt.want)
		}
	}
	empty := &Found{Partitions: []Partition{{Device: "/dev/nbd0p1", Found: map[Format]int{}}}}
	if _, err := empty.Choose(""); err == nil || !strings.Contains(err.Error(), "/dev/nbd0p1: no BLS entry, unified kernel image, GRUB or syslinux") {
		t.Errorf("Choose on an empty disk = %v, want ErrNoEntries with the partition summary", err)
	}
}

// TestEntryIDs checks that scanned entries carry the boot loaders' ids:
// a BLS file name without .conf, a GRUB menuentry's --id however
// grub-mkconfig spells it.
func TestEntryIDs(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"vmlinuz-a": "k", "vmlinuz-b": "k", "boot/vmlinuz": "k",
		"loader/entries/debian-6.1.0-28-amd64.conf": "title Debian\nversion 6.1.0-28\nlinux /vmlinuz-a\n",
		"loader/entries/b.conf":                     "title Beta\nlinux /vmlinuz-b\n",
		"boot/grub/grub.cfg": "menuentry_id_option=\"--id\"\n" +
			"menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-0b9c' {\n  linux /boot/vmlinuz root=UUID=2 ro\n}\n" +
			"submenu 'Advanced' $menuentry_id_option 'gnulinux-advanced-0b9c' {\n" +
			"\tmenuentry \"Debian, \\\"rescue\\\"\" --id=gnulinux-rescue {\n\t\tlinux /boot/vmlinuz single\n\t}\n}\n" +
			"menuentry 'No id' {\n  linux /boot/vmlinuz\n}\n",
	})
	entries, _ := ScanDir(context.Background(), nil, dir, "/dev/nbd0p1", nil, nil)
	got := map[string]string{}
	for _, e := range entries {
		got[string(e.Format)+":"+e.Label] = e.ID
	}
	for label, want := range map[string]string{
		"BLS:Debian 6.1.0-28":   "debian-6.1.0-28-amd64",
		"BLS:Beta":              "b",
		"GRUB:Debian GNU/Linux": "gnulinux-simple-0b9c",
		`GRUB:Debian, "rescue"`: "gnulinux-rescue",
		"GRUB:No id":            "",
	} {
		if id, ok := got[label]; !ok || id != want {
			t.Errorf("entry %s: id %q (found %v), want %q; entries %v", label, id, ok, want, got)
		}
	}
	f := &Found{Entries: entries}
	for sel, want := range map[string]string{"debian-6.1.0-28-amd64": "Debian 6.1.0-28", "gnulinux-rescue": `Debian, "rescue"`, "b": "Beta"} {
		if e, err := f.Choose(sel); err != nil || e.Label != want {
			t.Errorf("Choose(%q) = %v, %v; want %q", sel, e, err, want)
		}
	}
	if _, err := f.Choose("gnulinux-nothing"); err == nil || !strings.Contains(err.Error(), "id gnulinux-simple-0b9c") {
		t.Errorf("Choose(unknown id) = %v; want the list with each entry's id", err)
	}
}

func TestMenuentryID(t *testing.T) {
	for _, tt := range []struct{ line, title, id string }{
		{"menuentry 'Debian GNU/Linux' --class debian --class os $menuentry_id_option 'gnulinux-simple-x' {", "Debian GNU/Linux", "gnulinux-simple-x"},
		{`  menuentry "A b" --id abc {`, "A b", "abc"},
		{"menuentry X --id=y {", "X", "y"},
		{"menuentry 'T' ${menuentry_id_option} 'z' {", "T", "z"},
		{"menuentry 'Only title' {", "Only title", ""},
		{"submenu 'S' --id s {", "", ""},
		{"menuentry", "", ""},
		{`menuentry 'it'\''s' --id q {`, "it's", "q"},
	} {
		title, id := menuentryID(tt.line)
		if title != tt.title || id != tt.id {
			t.Errorf("menuentryID(%q) = %q, %q; want %q, %q", tt.line, title, id, tt.title, tt.id)
		}
	}
}

// FuzzMenuentryID feeds arbitrary grub.cfg lines to the menuentry reader:
// no panic, an id only with a title, and a title only from a line that
// can spell "menuentry" (quotes may split the word, but its last letter
// is always there).
func FuzzMenuentryID(f *testing.F) {
	for _, s := range []string{
		"menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-x' {",
		`menuentry "A \"b\"" --id=abc {`,
		`menuentry 'it'\''s' ${menuentry_id_option} q`,
		"menuentry 'unterminated --id x",
		`menuentry "unterminated \`,
		"submenu 'S' --id s {",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		title, id := menuentryID(line)
		if id != "" && title == "" {
			t.Fatalf("menuentryID(%q) = id %q without a title", line, id)
		}
		if title != "" && !strings.Contains(line, "y") {
			t.Fatalf("menuentryID(%q) = title %q from a line without a menuentry command", line, title)
		}
	})
}
