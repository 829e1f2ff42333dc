package main

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestBenchInterop(t *testing.T) {
	l := newLab(t, false, 32<<20)
	out, _, err := runCmd(t, "bench", "--json", "--write", "--duration", "300ms", "--depth", "4", l.rootPath(1))
	if err != nil {
		t.Fatalf("lunboot bench = %v", err)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("lunboot bench --json printed %q: %v", out, err)
	}
	if len(rep.Results) != 4 || rep.Size != 32<<20 {
		t.Fatalf("lunboot bench --json = %+v, want 4 results for a 32 MiB LUN", rep)
	}
	for i, name := range []string{"seq-read", "rand-read", "seq-write", "rand-write"} {
		r := rep.Results[i]
		size := 128 << 10
		if strings.HasPrefix(name, "rand") {
			size = 4 << 10
		}
		if r.Test != name || r.BlockSize != size || r.Depth != 4 || r.Ops <= 0 || r.Bytes != r.Ops*int64(size) || r.LatP99 < r.LatP50 {
			t.Errorf("result %d = %+v, want %s with %d-byte requests, 4 deep, some ops", i, r, name, size)
		}
	}

	out, _, err = runCmd(t, "bench", "--duration", "200ms", "--tests", "rand-read", l.rootPath(1))
	if err != nil || !strings.Contains(out, "rand-read") || strings.Contains(out, "seq-read") {
		t.Errorf("lunboot bench --tests rand-read = %q, %v, want one rand-read row", out, err)
	}

	procs := runtime.GOMAXPROCS(0)
	out, _, err = runCmd(t, "bench", "--json", "--procs", "1", "--duration", "100ms", "--tests", "seq-read", l.rootPath(1))
	rep = benchReport{}
	if err == nil {
		err = json.Unmarshal([]byte(out), &rep)
	}
	if err != nil || rep.Procs != 1 || len(rep.Results) != 1 || rep.Results[0].Ops <= 0 {
		t.Errorf("lunboot bench --json --procs 1 = %q, %v, want procs 1 and one seq-read result", out, err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS after lunboot bench --procs 1 = %d, want %d restored", got, procs)
	}
	if _, _, err := runCmd(t, "bench", "--procs", "-1", l.rootPath(1)); !errors.Is(err, errUsage) {
		t.Errorf("lunboot bench --procs -1 = %v, want a usage error", err)
	}
}
