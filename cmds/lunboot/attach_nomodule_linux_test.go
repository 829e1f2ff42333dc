package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/pkg/iscsi/iscsitest"
)

// TestAttachWithoutModule checks that attach says the driver is missing
// before it logs in (a login would cost the target a session for nothing).
func TestAttachWithoutModule(t *testing.T) {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("this host has the nbd module loaded")
	}
	tgt := iscsitest.NewTarget(iscsitest.Options{LUNs: []iscsitest.LUNOptions{{ID: 0, Size: 1 << 20}}})
	addr, err := tgt.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	target := "iscsi://" + addr + "/" + iscsitest.DefaultName + "/0"
	// The URL form with CHAP credentials: the message names the target
	// without its secret.
	const secret = "attach-secret-0123"
	withCHAP := "iscsi://alice%" + secret + "@" + addr + "/" + iscsitest.DefaultName + "/0"
	for _, args := range [][]string{{"attach", target}, {"attach", "--nbd", "2", target}, {"attach", withCHAP}} {
		stdout, stderr, err := runCmd(t, args...)
		if err == nil || !strings.Contains(err.Error(), "modprobe nbd") || errors.Is(err, errUsage) {
			t.Errorf("lunboot %s without the driver = %v, want an error naming modprobe nbd", strings.Join(args, " "), err)
		}
		if err != nil && strings.Contains(err.Error()+stdout+stderr, secret) {
			t.Errorf("lunboot attach without the driver showed the CHAP secret: %v (stdout %q, stderr %q)", err, stdout, stderr)
		}
	}
	if n := tgt.Stats().Logins; n != 0 {
		t.Errorf("lunboot attach without the driver logged in %d times, want 0", n)
	}
}
