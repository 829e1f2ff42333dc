package derive

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// newc builds an uncompressed newc archive of regular files.
func newc(files ...[2]string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add := func(i int, name, data string) {
		fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x", i, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		pad()
		b.WriteString(data)
		pad()
	}
	for i, f := range files {
		add(i+1, f[0], f[1])
	}
	add(0, "TRAILER!!!", "")
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// names lists a newc archive's names and file data.
func names(t *testing.T, gzipped []byte) map[string]string {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(gzipped))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for pos := 0; ; {
		h := raw[pos : pos+110]
		var size, nl int
		fmt.Sscanf(string(h[54:62]), "%08x", &size)
		fmt.Sscanf(string(h[94:102]), "%08x", &nl)
		name := string(raw[pos+110 : pos+110+nl-1])
		pos = (pos + 110 + nl + 3) &^ 3
		if name == "TRAILER!!!" {
			return m
		}
		m[name] = string(raw[pos : pos+size])
		pos = (pos + size + 3) &^ 3
	}
}

func TestStripISCSI(t *testing.T) {
	in := gz(t, newc(
		[2]string{"usr/lib/dracut/modules.txt", "systemd\nnetwork-legacy\niscsi\nrootfs-block\n"},
		[2]string{"usr/sbin/iscsiadm", "elf"},
		[2]string{"usr/lib/dracut/hooks/cmdline/90-parse-iscsiroot.sh", "#!/bin/sh\n"},
		[2]string{"usr/lib/modules/6.1.0-50-amd64/kernel/drivers/scsi/iscsi_tcp.ko", "ko"},
		[2]string{"usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/virtio_net.ko", "ko1"},
		[2]string{"init", "systemd"},
	))
	out, removed, err := stripISCSI(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 {
		t.Errorf("removed %v, want the 3 iSCSI files", removed)
	}
	got := names(t, out)
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"init", "usr/lib/dracut/modules.txt", "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/virtio_net.ko"}
	if !slices.Equal(keys, want) {
		t.Errorf("kept %v, want %v", keys, want)
	}
	if mt := got["usr/lib/dracut/modules.txt"]; strings.Contains(mt, "iscsi") || !strings.Contains(mt, "network-legacy\nrootfs-block") {
		t.Errorf("modules.txt = %q, want iscsi struck, the rest kept", mt)
	}
	if got["usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/virtio_net.ko"] != "ko1" || got["init"] != "systemd" {
		t.Errorf("kept files changed: %q", got)
	}
	// Not gzip, no dracut, nothing to remove, a second archive: errors.
	for name, bad := range map[string][]byte{
		"not gzip":       []byte("070701"),
		"no modules.txt": gz(t, newc([2]string{"usr/sbin/iscsiadm", "x"})),
		"no iscsi":       gz(t, newc([2]string{"usr/lib/dracut/modules.txt", "base\n"})),
		"two archives":   gz(t, append(newc([2]string{"usr/lib/dracut/modules.txt", "iscsi\n"}, [2]string{"iscsid", ""}), newc([2]string{"x", "y"})...)),
	} {
		if _, _, err := stripISCSI(bad); err == nil {
			t.Errorf("stripISCSI(%s) = nil error", name)
		}
	}
}
