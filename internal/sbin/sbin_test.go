package sbin

import (
	"errors"
	"os/exec"
	"testing"
)

func TestLook(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing on PATH
	if _, err := Look("lunboot-no-such-program"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Look(missing) = %v, want exec.ErrNotFound", err)
	}
	// Every Debian system has /sbin/ldconfig (libc-bin, essential).
	p, err := Look("ldconfig")
	if err != nil || (p != "/usr/sbin/ldconfig" && p != "/sbin/ldconfig") {
		t.Errorf("Look(ldconfig) with an empty PATH = %q, %v; want it from an sbin folder", p, err)
	}
}
