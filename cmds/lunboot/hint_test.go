package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// execFunc adapts a function to scsi.Executor.
type execFunc func(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error)

func (f execFunc) Execute(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
	return f(ctx, cmd)
}

func TestLUNHint(t *testing.T) {
	absent := fmt.Errorf("open lun 0003: %w", scsi.ErrLUNNotSupported)
	reportLUNs := execFunc(func(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
		if cmd.CDB[0] != 0xa0 {
			return nil, fmt.Errorf("unexpected command 0x%02x", cmd.CDB[0])
		}
		// REPORT LUNS (SPC-4 §6.33): list length, reserved, LUN 0 and 1.
		b := make([]byte, 24)
		binary.BigEndian.PutUint32(b, 16)
		b[8+8+1] = 1
		n := copy(cmd.DataIn, b)
		return &scsi.Result{N: n, Residual: int64(len(cmd.DataIn) - n)}, nil
	})
	other := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		in   error
		ex   scsi.Executor
		want []string
	}{
		{"lists the LUNs", absent, reportLUNs, []string{"the target has LUNs 0 (Linux 0), 1 (Linux 1), not LUN 3 (Linux 3)", "hint: a root-path writes the LUN in hex"}},
		{"other errors untouched", other, reportLUNs, []string{"connection reset"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := lunHint(t.Context(), tc.ex, scsi.LUN{0, 3}, tc.in, time.Minute)
			if !errors.Is(err, tc.in) {
				t.Errorf("lunHint(%v) = %v, want it to wrap the original error", tc.in, err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("lunHint(%v) = %v, want it to contain %q", tc.in, err, w)
				}
			}
		})
	}
}

// TestLUNHintBounded: a target that never answers REPORT LUNS must not
// turn the LUN error into a hang, even under a context without deadline:
// the hint gives up after the timeout it is given (the command's --timeout).
func TestLUNHintBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		silent := execFunc(func(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		in := fmt.Errorf("open lun 0003: %w", scsi.ErrLUNNotSupported)
		const timeout = 7 * time.Second
		start := time.Now()
		err := lunHint(context.Background(), silent, scsi.LUN{0, 3}, in, timeout)
		if err != in {
			t.Errorf("lunHint(silent target) = %v, want the original error %v", err, in)
		}
		if waited := time.Since(start); waited != timeout {
			t.Errorf("lunHint(silent target) returned after %v, want the timeout it was given, %v", waited, timeout)
		}
	})
}

// TestInquireWarnsOnOptionalPages: a VPD page the target lists but then
// refuses is reported as a warning, not silently left out of the report.
func TestInquireWarnsOnOptionalPages(t *testing.T) {
	illegal := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0} // INVALID FIELD IN CDB
	ex := execFunc(func(ctx context.Context, cmd *scsi.Command) (*scsi.Result, error) {
		var b []byte
		switch c := cmd.CDB; {
		case c[0] == 0x12 && c[1]&1 == 0: // standard INQUIRY: SPC-4 disk
			b = make([]byte, 36)
			b[2], b[3], b[4] = 6, 2, 31
			copy(b[8:], "VENDOR  PRODUCT         0001")
		case c[0] == 0x12 && c[2] == 0x00: // supported VPD pages
			b = []byte{0, 0, 0, 2, 0x00, scsi.VPDBlockLimits}
		case c[0] == 0x12: // block limits: refused
			return &scsi.Result{Status: 0x02, Sense: illegal}, nil
		case c[0] == 0x9e: // READ CAPACITY(16): 2048 blocks of 512 bytes
			b = (&scsi.Capacity{LastLBA: 2047, BlockSize: 512, Long: true}).Marshal()
		default:
			return &scsi.Result{Status: 0x02, Sense: illegal}, nil
		}
		n := copy(cmd.DataIn, b)
		return &scsi.Result{N: n, Residual: int64(len(cmd.DataIn) - n)}, nil
	})
	rep, err := inquire(t.Context(), ex, scsi.LUN{})
	if err != nil {
		t.Fatalf("inquire = %v, want a report", err)
	}
	if rep.Capacity == nil || rep.Capacity.Size != 2048*512 {
		t.Errorf("inquire capacity = %+v, want %d bytes", rep.Capacity, 2048*512)
	}
	if rep.blockLimits != nil || len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], "block limits: ") {
		t.Errorf("inquire warnings = %q, block limits %+v; want one warning about the block limits page", rep.Warnings, rep.blockLimits)
	}
}

func TestLoginHint(t *testing.T) {
	cfg := iscsi.Config{Portal: "127.0.0.1:3260", InitiatorName: "iqn.2026-11.org.lunboot:host", LoginTimeout: 3 * time.Second}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", fmt.Errorf("iscsi: connect to 127.0.0.1:3260: %w", syscall.ECONNREFUSED), "nothing listens on 127.0.0.1:3260"},
		{"context deadline", fmt.Errorf("iscsi: login to 127.0.0.1:3260: %w", context.DeadlineExceeded), "did not answer within --timeout 3s"},
		{"socket deadline", fmt.Errorf("iscsi: login to 127.0.0.1:3260: %w", os.ErrDeadlineExceeded), "did not answer within --timeout 3s"},
		{"cancelled", fmt.Errorf("iscsi: login to 127.0.0.1:3260: %w", context.Canceled), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loginHint(tc.err, cfg)
			if !errors.Is(got, tc.err) {
				t.Errorf("loginHint(%v) = %v, want it to wrap the original error", tc.err, got)
			}
			if tc.want == "" && got.Error() != tc.err.Error() {
				t.Errorf("loginHint(%v) = %q, want no hint", tc.err, got)
			}
			if tc.want != "" && !strings.Contains(got.Error(), tc.want) {
				t.Errorf("loginHint(%v) = %q, want it to contain %q", tc.err, got, tc.want)
			}
		})
	}
}
