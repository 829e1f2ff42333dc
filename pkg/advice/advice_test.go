package advice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/overlay"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func TestLogin(t *testing.T) {
	base := iscsi.Config{Portal: "192.0.2.1:3260", TargetName: "iqn.2026-11.org.lunboot:t", InitiatorName: "iqn.2026-11.org.lunboot:i",
		LoginTimeout: 3 * time.Second}
	oneWay := base
	oneWay.CHAP = &iscsi.CHAP{Username: "node", Secret: "node-secret-123"}
	mutual := base
	mutual.CHAP = &iscsi.CHAP{Username: "node", Secret: "node-secret-123", TargetUsername: "san", TargetSecret: "san-secret-456"}
	status := func(class, detail uint8) error { return &iscsi.LoginError{Class: class, Detail: detail} }
	targetSide := &iscsi.AuthError{Side: iscsi.CHAPTargetSide, Reason: "mutual CHAP: wrong response"}
	for _, tt := range []struct {
		name  string
		err   error
		cfg   iscsi.Config
		p     Phrasing
		want  []string // all in the advice
		avoid []string // none in it
	}{
		{"wrong secret, cmdline", status(2, 1), oneWay, Cmdline,
			[]string{"rd.iscsi.username and rd.iscsi.password", `user "node"`}, []string{"rd.iscsi.in.", "--"}},
		{"wrong secret, flags", status(2, 1), oneWay, Flags,
			[]string{"--chap-user", `user "node"`}, []string{"rd.iscsi", "--target-user"}},
		{"wrong secret, mutual configured", status(2, 1), mutual, Cmdline,
			[]string{"rd.iscsi.username", "no outgoing account", "rd.iscsi.in.username"}, nil},
		{"target's secret, cmdline", targetSide, mutual, Cmdline,
			[]string{"failed to prove itself", "rd.iscsi.in.username and rd.iscsi.in.password", `user "san"`}, []string{"rd.iscsi.username"}},
		{"target's secret, flags", targetSide, mutual, Flags,
			[]string{"failed to prove itself", "--target-user and --target-secret-file"}, []string{"--chap-user", "rd.iscsi"}},
		{"CHAP required, none configured, cmdline", status(2, 1), base, Cmdline,
			[]string{"requires CHAP", "rd.iscsi.username="}, nil},
		{"CHAP required, none configured, flags", &iscsi.AuthError{Side: iscsi.CHAPInitiatorSide, Reason: "the target refused AuthMethod=None"}, base, Flags,
			[]string{"requires CHAP", "add --chap-user and --chap-secret-file"}, nil},
		{"no common algorithm", &iscsi.AuthError{Reason: "no algorithm"}, oneWay, Cmdline,
			[]string{"SHA3-256, SHA-256, SHA-1, MD5"}, nil},
		{"ACL, cmdline", status(2, 2), base, Cmdline,
			[]string{"initiator name", "ACL", "lunboot.initiator="}, []string{"--initiator"}},
		{"ACL, flags", status(2, 2), base, Flags,
			[]string{"initiator name", "ACL", "--initiator"}, []string{"lunboot."}},
		{"unknown target", status(2, 3), base, Flags,
			[]string{"check the target name", "lunboot discover 192.0.2.1:3260"}, nil},
		{"other status", status(3, 2), base, Cmdline, []string{"status 03/02", "its log"}, nil},
		{"LIO: unknown name or its case", status(3, 1), base, Cmdline, []string{"status 03/01", "with its case", "lunboot discover 192.0.2.1:3260"}, nil},
		{"LIO: digests required, cmdline", status(2, 0), base, Cmdline, []string{"02/00", "lunboot.header_digest=prefer and lunboot.data_digest=prefer"}, nil},
		{"LIO: digests required, flags", status(2, 0), base, Flags, []string{"02/00", "enable CRC32C digests in lunboot"}, []string{"lunboot."}},
		{"digest, cmdline", &iscsi.DigestError{Key: "HeaderDigest", Answer: "Reject"}, base, Cmdline,
			[]string{"lunboot.header_digest=prefer"}, nil},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), base, Flags, []string{"nothing listens on 192.0.2.1:3260"}, nil},
		{"no route", fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), base, Cmdline, []string{"192.0.2.1:3260 is unreachable", "gateway"}, nil},
		{"timeout, cmdline", fmt.Errorf("login: %w", context.DeadlineExceeded), base, Cmdline, []string{"unreachable"}, []string{"--timeout"}},
		{"timeout, flags", fmt.Errorf("login: %w", context.DeadlineExceeded), base, Flags, []string{"within --timeout 3s"}, nil},
		{"DNS", &net.DNSError{Err: "no such host", Name: "san.example", IsNotFound: true}, base, Flags, []string{"does not resolve"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Login(tt.err, tt.cfg, tt.p)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Login(%v) = %q, want it to mention %q", tt.err, got, w)
				}
			}
			for _, w := range tt.avoid {
				if strings.Contains(got, w) {
					t.Errorf("Login(%v) = %q, want no %q", tt.err, got, w)
				}
			}
			for _, secret := range []string{"node-secret-123", "san-secret-456"} {
				if strings.Contains(got, secret) {
					t.Errorf("Login(%v) = %q shows a secret", tt.err, got)
				}
			}
		})
	}
	// Nothing to add: the caller shows the error alone.
	for _, err := range []error{nil, context.Canceled, fmt.Errorf("%w: bad PDU", iscsi.ErrProtocol), errors.New("other")} {
		if got := Login(err, base, Cmdline); got != "" {
			t.Errorf("Login(%v) = %q, want no advice", err, got)
		}
	}
}

func TestMissingLUN(t *testing.T) {
	if got := MissingLUN(Cmdline); !strings.Contains(got, "hexadecimal (RFC 4173)") || !strings.Contains(got, "root-path") {
		t.Errorf("MissingLUN(Cmdline) = %q, want the root-path's hex rule", got)
	}
	if got := MissingLUN(Flags); !strings.Contains(got, "iscsi:// URL in decimal") {
		t.Errorf("MissingLUN(Flags) = %q, want the URL's decimal rule", got)
	}
}

func TestOpenDisk(t *testing.T) {
	for _, tt := range []struct {
		err  error
		p    Phrasing
		want string
	}{
		{fmt.Errorf("open lun 7: %w", scsi.ErrLUNNotSupported), Cmdline, "hexadecimal"},
		{fmt.Errorf("open lun 0: %w", scsi.ErrNotBlockDevice), Cmdline, "fix the root-path's LUN field"},
		{fmt.Errorf("open lun 0: %w", scsi.ErrNotBlockDevice), Flags, "lunboot luns"},
		{fmt.Errorf("open lun 1: %w", scsi.ErrNotReady), Cmdline, "that is ready"},
		{fmt.Errorf("open lun 1: %w", scsi.ErrNotReady), Flags, ""},
	} {
		got := OpenDisk(tt.err, tt.p)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("OpenDisk(%v, %d) = %q, want %q", tt.err, tt.p, got, tt.want)
		}
	}
}

func TestOverlay(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("open: %w", scsi.ErrLUNNotSupported), "create the overlay LUN 2"},
		{fmt.Errorf("x: %w", overlay.ErrTooSmall), "at least 1073745920 bytes (1025 MiB)"},
		{fmt.Errorf("x: %w", overlay.ErrGoldenChanged), "blanking the overlay LUN's first 4 KiB"},
		{fmt.Errorf("x: %w", overlay.ErrOtherClient), "its own overlay LUN"},
		{fmt.Errorf("x: %w", overlay.ErrNotOverlay), "formats only a blank overlay LUN"},
	} {
		if got := Overlay(tc.err, "2", 1<<30+4096); !strings.Contains(got, tc.want) {
			t.Errorf("Overlay(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}
