package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDiscoverInterop(t *testing.T) {
	l := newLab(t, false, 8<<20)
	if err := l.Srv.AddTarget(2, labIQN+"-second"); err != nil {
		t.Fatal(err)
	}

	out, _, err := runCmd(t, "discover", "--initiator", labInitiator, l.Portal)
	if err != nil {
		t.Fatalf("lunboot discover %s = %v", l.Portal, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TARGET") {
		t.Fatalf("lunboot discover printed %q, want a header and two targets", out)
	}
	for _, want := range []string{labIQN + " ", labIQN + "-second"} {
		if !strings.Contains(out, want) || !strings.Contains(out, l.Portal) {
			t.Errorf("lunboot discover printed %q, want target %q at %s", out, want, l.Portal)
		}
	}

	out, _, err = runCmd(t, "discover", "--json", l.rootPath(1))
	if err != nil {
		t.Fatalf("lunboot discover --json = %v", err)
	}
	var got []discoveredTarget
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("lunboot discover --json printed %q: %v", out, err)
	}
	if len(got) != 2 || len(got[0].Portals) == 0 || got[0].Portals[0].Portal != l.Portal || got[0].Portals[0].TPGT != 1 {
		t.Errorf("lunboot discover --json = %+v, want two targets at %s, TPGT 1", got, l.Portal)
	}

	// The other commands' URL form, with or without a target, names the
	// same portal (libiscsi's iscsi-ls takes iscsi://host:port).
	for _, portal := range []string{"iscsi://" + l.Portal, "iscsi://" + l.Portal + "/", "iscsi://" + l.Portal + "/" + labIQN + "/1"} {
		out, _, err := runCmd(t, "discover", portal)
		if err != nil || !strings.Contains(out, labIQN+"-second") {
			t.Errorf("lunboot discover %s = %q, %v; want both targets", portal, out, err)
		}
	}

	// Nothing listening: the error says to check the portal.
	_, _, err = runCmd(t, "discover", "--timeout", "5s", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "nothing listens on 127.0.0.1:1") {
		t.Errorf("lunboot discover on a closed port = %v, want a hint about the portal", err)
	}
}
