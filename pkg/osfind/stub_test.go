package osfind

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// debianStub is what grub-install --uefi-secure-boot leaves in
// EFI/debian/grub.cfg on Debian 12 (grub-install.c, load.cfg).
const debianStub = "search.fs_uuid 0d1c2b3a-1111-4222-8333-444455556666 root hd0,gpt2 \n" +
	"set prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"

func TestParseStub(t *testing.T) {
	for _, tt := range []struct {
		name, cfg  string
		uuid, conf string
		err        error // errNotStub, or nil for "any error" when uuid is ""
	}{
		{name: "Debian", cfg: debianStub, uuid: "0d1c2b3a-1111-4222-8333-444455556666", conf: "/boot/grub/grub.cfg"},
		{name: "search --set= and a separate /boot", cfg: "search --no-floppy --fs-uuid --set=dev 1234-ABCD\nset prefix=($dev)/grub\nconfigfile ${prefix}/grub.cfg\n",
			uuid: "1234-ABCD", conf: "/grub/grub.cfg"},
		{name: "configfile with the device spelt out", cfg: "search --fs-uuid --set root 77\nconfigfile ($root)/boot/grub/grub.cfg\n", uuid: "77", conf: "/boot/grub/grub.cfg"},
		{name: "a full grub.cfg", cfg: "set default=0\nmenuentry 'Debian' {\n linux /vmlinuz\n}\n", err: errNotStub},
		{name: "no configfile", cfg: "search.fs_uuid 77 root\n", err: errNotStub},
		{name: "configfile on an unsearched device", cfg: "configfile ($other)/boot/grub/grub.cfg\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"grub.cfg": tt.cfg})
			s, err := parseStub(filepath.Join(dir, "grub.cfg"))
			if tt.uuid == "" {
				if err == nil || (tt.err != nil && !errors.Is(err, tt.err)) {
					t.Fatalf("parseStub = %+v, %v; want error %v", s, err, tt.err)
				}
				return
			}
			if err != nil || s.UUID != tt.uuid || s.Config != tt.conf {
				t.Errorf("parseStub = %+v, %v; want UUID %s config %s", s, err, tt.uuid, tt.conf)
			}
		})
	}
}

// TestFollowStub scans an ESP holding Debian's stub: its entries come from
// the grub.cfg on the file system the stub names, which a full scan then
// does not list a second time.
func TestFollowStub(t *testing.T) {
	esp := writeTree(t, map[string]string{
		"EFI/debian/grub.cfg":    debianStub,
		"EFI/debian/grubx64.efi": "not really",
	})
	root := writeTree(t, map[string]string{
		"boot/vmlinuz-6.1": "k", "boot/initrd.img-6.1": "i",
		"boot/grub/grub.cfg": "set default=0\nmenuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-0d1c' {\n" +
			"  linux /boot/vmlinuz-6.1 root=UUID=0d1c2b3a-1111-4222-8333-444455556666 ro quiet\n  initrd /boot/initrd.img-6.1\n}\n",
	})
	resolve := func(uuid string) (string, string, error) {
		if uuid != "0d1c2b3a-1111-4222-8333-444455556666" {
			return "", "", errors.New("no such file system")
		}
		return "/dev/nbd0p2", root, nil
	}
	entries, p := scanDir(context.Background(), nil, esp, "/dev/nbd0p1", nil, nil, resolve)
	defer closeEntries(entries)
	if len(entries) != 1 {
		t.Fatalf("scanDir(ESP) = %q, want the one GRUB entry behind the stub; partition %+v", labels(entries), p)
	}
	e := entries[0]
	if e.Label != "Debian GNU/Linux" || e.Device != "/dev/nbd0p2" || e.Root != root || e.ID != "gnulinux-simple-0d1c" ||
		e.Via != "EFI/debian/grub.cfg on /dev/nbd0p1" || !strings.Contains(e.Cmdline, "root=UUID=0d1c") || e.Initrd == nil {
		t.Errorf("entry = %+v, want Debian GNU/Linux on /dev/nbd0p2 via the stub, with its id, cmdline and initrd", e)
	}
	if len(p.Followed) != 1 || p.Followed[0] != "/dev/nbd0p2" || p.Found[GRUB] != 1 {
		t.Errorf("partition = %+v, want the stub followed to /dev/nbd0p2 and 1 GRUB entry", p)
	}
	if !strings.Contains(e.String(), "via EFI/debian/grub.cfg on /dev/nbd0p1") {
		t.Errorf("entry String() = %s, want it to name the stub", e)
	}

	// The root partition scanned on its own gives the same menu again.
	own, rp := scanDir(context.Background(), nil, root, "/dev/nbd0p2", nil, nil, resolve)
	defer closeEntries(own)
	f := &Found{Entries: append(entries, own...), Partitions: []Partition{p, rp}}
	dedupeFollowed(f)
	if len(f.Entries) != 1 || f.Entries[0].Via == "" {
		t.Errorf("after dedupe: %q, want only the entry read through the stub", labels(f.Entries))
	}
	if !strings.Contains(f.Summary(), "GRUB stub followed to /dev/nbd0p2") {
		t.Errorf("Summary() = %q, want it to say where the stub led", f.Summary())
	}

	// A stub whose file system is not on the disk says so.
	entries, p = scanDir(context.Background(), nil, esp, "/dev/nbd0p1", nil, nil, func(string) (string, string, error) {
		return "", "", errors.New("0 file systems with that UUID")
	})
	if len(entries) != 0 || len(p.Skipped) != 1 || !strings.Contains(p.Skipped[0], "0d1c2b3a-1111-4222-8333-444455556666") {
		t.Errorf("stub to nowhere: entries %q, skipped %q; want none, and the UUID named", labels(entries), p.Skipped)
	}
}
