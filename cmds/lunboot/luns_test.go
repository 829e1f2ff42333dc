package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLUNsInterop(t *testing.T) {
	l := newLab(t, false, 8<<20, 3<<40, 1<<30) // LUNs 1-3; LUN 2 is a sparse 3 TiB file
	host, port, _ := strings.Cut(l.Portal, ":")

	out, _, err := runCmd(t, "luns", "iscsi://"+host+":"+port+"/"+labIQN)
	if err != nil {
		t.Fatalf("lunboot luns = %v", err)
	}
	if fields := strings.Fields(strings.SplitN(out, "\n", 2)[0]); len(fields) < 2 || fields[0] != "LUN" || fields[1] != "LINUX" {
		t.Errorf("lunboot luns header %q, want the LUN (root-path form) then its Linux number, as messages write them", fields)
	}
	for _, want := range []string{"controller", "8.0 MiB", "3.0 TiB", "1.0 GiB", "VIRTUAL-DISK"} {
		if !strings.Contains(out, want) {
			t.Errorf("lunboot luns printed\n%s\nwant it to contain %q", out, want)
		}
	}

	out, _, err = runCmd(t, "luns", "--json", l.rootPath(0))
	if err != nil {
		t.Fatalf("lunboot luns --json = %v", err)
	}
	var got []lunInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("lunboot luns --json printed %q: %v", out, err)
	}
	want := []struct {
		lun  uint64
		typ  string
		size int64
	}{{0, "controller", 0}, {1, "disk", 8 << 20}, {2, "disk", 3 << 40}, {3, "disk", 1 << 30}}
	if len(got) != len(want) {
		t.Fatalf("lunboot luns --json = %+v, want %d LUNs", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.LUN != w.lun || g.Type != w.typ || g.Size != w.size || g.Error != "" {
			t.Errorf("LUN entry %d = %+v, want LUN %d, %s, %d bytes", i, g, w.lun, w.typ, w.size)
		}
	}
}
