package bootflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func TestFirmwareSource(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	tbl := &ibft.Table{
		Initiator: ibft.Initiator{Name: "iqn.2026-11.org.lunboot:fw"},
		NICs: []ibft.NIC{{
			Flags: ibft.FlagValid | ibft.FlagBoot, IP: netip.MustParsePrefix("10.9.0.5/24"),
			Origin: ibft.OriginManual, Gateway: netip.MustParseAddr("10.9.0.1"),
			DNS: [2]netip.Addr{netip.MustParseAddr("10.9.0.2"), {}}, MAC: mac,
		}},
		Targets: []ibft.Target{
			{Flags: ibft.FlagValid, Name: "iqn.2026-11.org.lunboot:not-boot", Addr: netip.MustParseAddrPort("10.9.0.9:3260")},
			{Flags: ibft.FlagValid | ibft.FlagBoot, Name: "iqn.2026-11.org.lunboot:disk", Addr: netip.MustParseAddrPort("10.9.0.1:3261"),
				LUN: scsi.LUN{0, 1}, CHAPType: ibft.CHAPMutual, CHAPName: "u", CHAPSecret: "s", ReverseCHAPName: "ru", ReverseCHAPSecret: "rs"},
		},
	}
	fw, ok := firmwareSource(tbl)
	if !ok {
		t.Fatal("firmwareSource found no boot target")
	}
	if fw.TargetName != "iqn.2026-11.org.lunboot:disk" || fw.TargetPort != 3261 || fw.LUN != (scsi.LUN{0, 1}) {
		t.Errorf("firmwareSource target = %s:%d LUN %s, want the boot-flagged one", fw.TargetName, fw.TargetPort, fw.LUN)
	}
	if fw.CHAP.Username != "u" || fw.CHAP.TargetSecret != "rs" {
		t.Errorf("firmwareSource CHAP not taken from the boot target")
	}
	if fw.DHCP || fw.Address.String() != "10.9.0.5/24" || len(fw.DNS) != 1 || fw.MAC.String() != mac.String() {
		t.Errorf("firmwareSource NIC = dhcp %v %s dns %v mac %s, want static 10.9.0.5/24, one DNS, %s", fw.DHCP, fw.Address, fw.DNS, fw.MAC, mac)
	}
	tbl.Targets = tbl.Targets[:1]
	if _, ok := firmwareSource(tbl); ok {
		t.Errorf("firmwareSource with no boot-flagged target = ok, want none")
	}
}

func TestLoginFailedClassifies(t *testing.T) {
	ic := iscsi.Config{Portal: "10.0.0.1:3260", TargetName: "iqn.2026-11.org.lunboot:t", InitiatorName: "iqn.2026-11.org.lunboot:i",
		CHAP: &iscsi.CHAP{Username: "u", Secret: "s", TargetUsername: "t", TargetSecret: "ts"}}
	for _, tt := range []struct {
		err       error
		permanent bool
		check     string
	}{
		{&iscsi.LoginError{Class: 2, Detail: 1}, true, "rd.iscsi.username and rd.iscsi.password"},
		{&iscsi.AuthError{Side: iscsi.CHAPTargetSide, Reason: "x"}, true, "rd.iscsi.in.password"},
		{&iscsi.LoginError{Class: 2, Detail: 2}, true, "lunboot.initiator="},
		{&iscsi.LoginError{Class: 2, Detail: 3}, true, "lunboot discover 10.0.0.1:3260"},
		{&iscsi.DigestError{Key: "DataDigest", Answer: "Reject"}, true, "lunboot.data_digest=prefer"},
		{&iscsi.LoginError{Class: 3, Detail: 1}, false, "status 03/01"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false, "nothing listens on 10.0.0.1:3260"},
		{fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), false, "unreachable"},
		{fmt.Errorf("login: %w", context.DeadlineExceeded), false, "unreachable"},
	} {
		err := loginFailed(tt.err, ic)
		var pe *permanentError
		if got := errors.As(err, &pe); got != tt.permanent {
			t.Errorf("loginFailed(%v) permanent = %v, want %v", tt.err, got, tt.permanent)
		}
		if se := stageError("login", err); !strings.Contains(se.Check, tt.check) {
			t.Errorf("loginFailed(%v) check = %q, want it to mention %q", tt.err, se.Check, tt.check)
		}
		// Advice must name only options that exist (docs/configuration.md).
		if se := stageError("login", err); strings.Contains(se.Check, "lunboot.chap") || strings.Contains(se.Check, "--") {
			t.Errorf("loginFailed(%v) check = %q names lunboot.chap.* or a host-tool flag, which are no boot options", tt.err, se.Check)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("loginFailed(%v) lost the cause", tt.err)
		}
	}
}

func TestNewISIDIsRandomType(t *testing.T) {
	a, b := newISID(), newISID()
	if a == b {
		t.Errorf("two ISIDs are equal: %v", a)
	}
	for _, id := range []iscsi.ISID{a, b} {
		if id[0]>>6 != 2 {
			t.Errorf("ISID %v: T field = %d, want 2 (random, RFC 7143 §11.12.5)", id, id[0]>>6)
		}
	}
}

func TestOverallTimeoutNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &boot{cfg: bootcfg.Config{Timeout: time.Minute}}
		parent, cancelParent := context.WithCancel(context.Background())
		defer cancelParent()
		ctx, cancel := context.WithTimeout(parent, b.cfg.Timeout)
		defer cancel()

		stageErr := func() error {
			return &StageError{Stage: "login", Err: context.DeadlineExceeded, Check: "portal unreachable"}
		}
		// Before the deadline the stage's own advice stands.
		var se *StageError
		if err := b.overallTimeout(stageErr(), ctx, parent); !errors.As(err, &se) || se.Check != "portal unreachable" {
			t.Errorf("overallTimeout before the deadline = %v (check %q), want the stage's own check", err, se.Check)
		}
		time.Sleep(time.Minute + time.Second)
		err := b.overallTimeout(stageErr(), ctx, parent)
		if !errors.As(err, &se) || !strings.Contains(se.Err.Error(), "(lunboot.timeout=1m0s reached)") ||
			!strings.Contains(se.Check, "lunboot.timeout=1m0s") || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("overallTimeout after the deadline = %v (check %q), want lunboot.timeout=1m0s named in both and the cause kept", err, se.Check)
		}
		// The parent ending (the command interrupted) is not the timeout.
		cancelParent()
		if err := b.overallTimeout(stageErr(), ctx, parent); !errors.As(err, &se) || se.Check != "portal unreachable" {
			t.Errorf("overallTimeout with the parent cancelled = %v (check %q), want it unchanged", err, se.Check)
		}
	})
}
