package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestInquiryInterop(t *testing.T) {
	l := newLab(t, false, 8<<20, 1<<20)

	out, _, err := runCmd(t, "inquiry", "--json", l.rootPath(2))
	if err != nil {
		t.Fatalf("lunboot inquiry --json = %v", err)
	}
	var rep inquiryReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("lunboot inquiry --json printed %q: %v", out, err)
	}
	if rep.LUN != 2 || rep.Type != "disk" || rep.Standard == nil || rep.Standard.Vendor != "IET" ||
		rep.Capacity == nil || rep.Capacity.Size != 1<<20 || rep.Serial == "" || len(rep.Designators) == 0 {
		t.Errorf("lunboot inquiry --json = %s, want LUN 2, an IET disk of 1 MiB with a serial and designators", out)
	}
	var naa bool
	for _, d := range rep.Designators {
		naa = naa || (d.Type == "naa" && strings.HasPrefix(d.Value, "naa."))
	}
	if !naa {
		t.Errorf("designators %+v, want an NAA identifier", rep.Designators)
	}

	// A LUN the target does not have: the error lists the ones it has.
	_, _, err = runCmd(t, "inquiry", l.rootPath(0x1a))
	if err == nil || !strings.Contains(err.Error(), "the target has LUNs 0 (Linux 0), 1 (Linux 1), 2 (Linux 2), not LUN 1a (Linux 26)") {
		t.Errorf("lunboot inquiry of LUN 26 = %v, want a hint listing LUNs 0-2", err)
	}
	// A wrong target name: the hint points at discover.
	_, _, err = runCmd(t, "inquiry", strings.Replace(l.rootPath(1), labIQN, "iqn.2026-11.org.lunboot:nope", 1))
	if err == nil || !strings.Contains(err.Error(), "lunboot discover "+l.Portal) {
		t.Errorf("lunboot inquiry of an unknown target = %v, want a hint to run discover", err)
	}
}
