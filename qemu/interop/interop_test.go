package interop_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/lio"
	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/bootcfg"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/sam"
	"github.com/lunboot/lunboot/pkg/scsi"
	"github.com/lunboot/lunboot/qemu/lab"
	"github.com/lunboot/lunboot/qemu/lab/labtest"
)

// env is one lab with both targets; LIO is nil in runs limited to tgtd.
type env struct {
	lab  *lab.Lab
	tgtd *lab.Target
	lio  *lab.LIO
	// names records, per case and target, what the session negotiated
	// (printed at the end: the closing note wants LIO's keys).
	mu    sync.Mutex
	notes []string
}

func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

// initiatorMAC is the MAC whose default initiator name the sessions use,
// as lunboot booting from the lab's first tap would.
var initiatorMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func defaultInitiator() string { return bootcfg.DefaultInitiatorName(initiatorMAC) }

func logger() *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// config is an initiator configuration for exp, dialling from inside the
// lab's namespace.
func (e *env) config(exp *lab.Export) iscsi.Config {
	return iscsi.Config{
		Portal:        exp.Portal.String(),
		TargetName:    exp.IQN,
		InitiatorName: defaultInitiator(),
		Dial:          e.lab.DialContext,
		Logger:        logger(),
		LoginTimeout:  30 * time.Second,
	}
}

func tctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func login(t *testing.T, cfg iscsi.Config) *iscsi.Session {
	t.Helper()
	s, err := iscsi.Login(tctx(t, time.Minute), cfg)
	if err != nil {
		t.Fatalf("Login(%s at %s) = %v", cfg.TargetName, cfg.Portal, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func lunOf(n int) sam.LUN { return sam.LUNFromLinux(uint64(n)) }

// ready consumes unit attentions (tgtd reports POWER ON, LIO may report
// a changed LUN inventory) until TEST UNIT READY passes.
func ready(t *testing.T, s *iscsi.Session, lun int) {
	t.Helper()
	var err error
	for range 4 {
		if err = scsi.TestUnitReady(tctx(t, 30*time.Second), s, lunOf(lun)); err == nil {
			return
		}
	}
	t.Fatalf("LUN %d: TEST UNIT READY = %v", lun, err)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// writeRead writes p at lba and reads it back.
func writeRead(t *testing.T, s *iscsi.Session, lun int, lba uint64, p []byte) {
	t.Helper()
	ctx := tctx(t, 2*time.Minute)
	if err := scsi.Write(ctx, s, lunOf(lun), lba, 512, p, false); err != nil {
		t.Fatalf("LUN %d: WRITE %d bytes at %d: %v", lun, len(p), lba, err)
	}
	got := make([]byte, len(p))
	if err := scsi.Read(ctx, s, lunOf(lun), lba, 512, got); err != nil {
		t.Fatalf("LUN %d: READ %d bytes at %d: %v", lun, len(p), lba, err)
	}
	if !bytes.Equal(got, p) {
		t.Fatalf("LUN %d: %d bytes at LBA %d read back differ from what was written", lun, len(p), lba)
	}
}

// transfer writes and reads back n bytes in chunks from LBA 0, with up to
// 8 commands in flight, calling mid once a quarter of the chunks are
// under way (nil: no interruption).
func transfer(t *testing.T, s *iscsi.Session, lun int, n int, mid func()) {
	t.Helper()
	const chunk = 1 << 20
	want := randBytes(n)
	ctx := tctx(t, 10*time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, n/chunk)
	sem := make(chan struct{}, 8)
	var once sync.Once
	for i := range n / chunk {
		wg.Add(1)
		sem <- struct{}{}
		if mid != nil && i == n/chunk/4 {
			once.Do(mid)
		}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := want[i*chunk : (i+1)*chunk]
			var err error
			for range 3 { // a unit attention after a reinstatement: write again
				if err = scsi.Write(ctx, s, lunOf(lun), uint64(i*chunk/512), 512, p, false); err == nil || !scsi.IsTransient(err) {
					break
				}
			}
			if err != nil {
				errs <- fmt.Errorf("write chunk %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := make([]byte, n)
	for i := range n / chunk {
		var err error
		for range 3 {
			if err = scsi.Read(ctx, s, lunOf(lun), uint64(i*chunk/512), 512, got[i*chunk:(i+1)*chunk]); err == nil || !scsi.IsTransient(err) {
				break
			}
		}
		if err != nil {
			t.Fatalf("read chunk %d: %v", i, err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%d MiB read back differ from what was written", n>>20)
	}
}

// describe summarises what a session negotiated.
func describe(info iscsi.SessionInfo) string {
	p := info.Params
	return fmt.Sprintf("TPGT=%d HeaderDigest=%v DataDigest=%v target MaxRecvDataSegmentLength=%d MaxBurstLength=%d FirstBurstLength=%d ImmediateData=%v InitialR2T=%v CHAP=%v/%v",
		info.TPGT, info.HeaderDigest, info.DataDigest, info.TargetMaxRecvDataSegmentLength,
		p.MaxBurstLength, p.FirstBurstLength, p.ImmediateData, p.InitialR2T, info.CHAP, info.CHAPAlgorithm)
}

// tc is one row of the shared table: the export to make and the check, run
// against each target.
type tc struct {
	name string
	spec lab.ExportSpec
	// lioParams are extra TPG params for LIO only (keys tgtd lacks).
	lioParams map[string]string
	// only limits the row to one target ("lio" or "tgtd").
	only string
	run  func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export)
}

var (
	mib = int64(1 << 20)
)

const (
	chapUser, chapSecret   = "lunboot-user", "initiator-secret-1234"
	chapTUser, chapTSecret = "target-user", "target-secret-98765"
	wrongSecret            = "not-the-right-secret"
)

func basicIO(t *testing.T, e *env, exp *lab.Export, cfg iscsi.Config) *iscsi.Session {
	t.Helper()
	s := login(t, cfg)
	for i := range exp.LUNs {
		lun := exp.LUN(i)
		ready(t, s, lun)
		for _, n := range []int{512, 4096, 300 << 10, 1 << 20} {
			writeRead(t, s, lun, uint64(lun*1000+n/512), randBytes(n))
		}
	}
	return s
}

func logout(t *testing.T, s *iscsi.Session) {
	t.Helper()
	if err := s.Logout(tctx(t, 30*time.Second)); err != nil {
		t.Errorf("Logout = %v", err)
	}
}

var table = []tc{
	{name: "three LUNs", spec: lab.ExportSpec{Sizes: []int64{64 * mib, 64 * mib, 64 * mib}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			cfg := e.config(exp)
			s := basicIO(t, e, exp, cfg)
			info := s.Info()
			if info.TSIH == 0 || info.TPGT != 1 || info.CHAP != iscsi.CHAPNone {
				t.Errorf("Info() = %+v", info)
			}
			e.note("%s defaults: %s", x.Kind(), describe(info))
			// REPORT LUNS lists the disks (and tgtd's controller at 0).
			luns, err := scsi.ReportLUNs(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase))
			if err != nil {
				t.Fatalf("REPORT LUNS = %v", err)
			}
			var got []uint64
			for _, l := range luns {
				got = append(got, l.Linux())
			}
			want := []uint64{0, 1, 2, 3}
			if x.Kind() == "lio" {
				want = []uint64{0, 1, 2}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("REPORT LUNS = %v, want %v", got, want)
			}
			// The export's root-path names the first disk: LUN 0 on
			// LIO, 1 on tgtd.
			rp, err := rootpath.Parse(exp.RootPath())
			if err != nil {
				t.Fatalf("rootpath.Parse(%q) = %v", exp.RootPath(), err)
			}
			if rp.LUN.Linux() != uint64(exp.LUNBase) {
				t.Errorf("root-path %q names LUN %d, want %d", exp.RootPath(), rp.LUN.Linux(), exp.LUNBase)
			}
			// The same disk by iSCSI URL (its LUN in decimal).
			url := fmt.Sprintf("iscsi://%s/%s/%d", exp.Portal, exp.IQN, exp.LUNBase)
			ru, err := rootpath.ParseURL(url)
			if err != nil {
				t.Fatalf("rootpath.ParseURL(%q) = %v", url, err)
			}
			if ru.LUN != rp.LUN || ru.Target != rp.Target {
				t.Errorf("URL %q names %s LUN %d, root-path %q names %s LUN %d", url, ru.Target, ru.LUN.Linux(), exp.RootPath(), rp.Target, rp.LUN.Linux())
			}
			d, err := scsi.OpenDisk(tctx(t, 30*time.Second), s, ru.LUN, scsi.DiskOptions{})
			if err != nil {
				t.Fatalf("OpenDisk(root-path LUN) = %v", err)
			}
			if d.Size() != 64*mib {
				t.Errorf("root-path LUN size %d, want 64 MiB", d.Size())
			}
			logout(t, s)
		}},
	{name: "digests", spec: lab.ExportSpec{Sizes: []int64{64 * mib}, Params: map[string]string{"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			cfg := e.config(exp)
			cfg.HeaderDigest, cfg.DataDigest = iscsi.DigestRequire, iscsi.DigestRequire
			s := basicIO(t, e, exp, cfg)
			if info := s.Info(); !info.HeaderDigest || !info.DataDigest {
				t.Errorf("digests = %v/%v, want CRC32C both", info.HeaderDigest, info.DataDigest)
			}
			logout(t, s)
		}},
	{name: "digests required by the target, lunboot defaults", spec: lab.ExportSpec{Sizes: []int64{64 * mib}, Params: map[string]string{"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			// lunboot's default offers None only (docs/configuration.md
			// lunboot.header_digest=).
			cfg := e.config(exp)
			s, err := iscsi.Login(tctx(t, time.Minute), cfg)
			switch x.Kind() {
			case "tgtd":
				// tgtd does not hold the initiator to its CRC32C
				// setting: the session runs without digests.
				if err != nil {
					t.Fatalf("Login = %v", err)
				}
				info := s.Info()
				e.note("tgtd digests required, lunboot defaults: %s", describe(info))
				if info.HeaderDigest || info.DataDigest {
					t.Errorf("digests on although lunboot offered None only")
				}
				s.Close()
			case "lio":
				// LIO refuses the login with 02/00; the advice says
				// which settings fix it.
				var le *iscsi.LoginError
				if !errors.As(err, &le) || le.Class != 2 || le.Detail != 0 {
					if err == nil {
						s.Close()
					}
					t.Fatalf("Login = %v, want status 02/00 from LIO", err)
				}
				hint := advice.Login(err, cfg, advice.Cmdline)
				e.note("lio digests required, lunboot defaults: %v; advice: %s", err, hint)
				if !strings.Contains(hint, "lunboot.header_digest=prefer") {
					t.Errorf("advice %q does not name lunboot.header_digest=prefer", hint)
				}
			}
			// What the advice says works: offer CRC32C,None.
			cfg.HeaderDigest, cfg.DataDigest = iscsi.DigestPrefer, iscsi.DigestPrefer
			s = basicIO(t, e, exp, cfg)
			if info := s.Info(); !info.HeaderDigest || !info.DataDigest {
				t.Errorf("digests = %v/%v with prefer, want CRC32C both", info.HeaderDigest, info.DataDigest)
			}
			logout(t, s)
		}},
	{name: "ImmediateData=No InitialR2T=Yes", spec: lab.ExportSpec{Sizes: []int64{64 * mib}, Params: map[string]string{"ImmediateData": "No", "InitialR2T": "Yes"}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			s := basicIO(t, e, exp, e.config(exp))
			if info := s.Info(); info.Params.ImmediateData || !info.Params.InitialR2T {
				t.Errorf("ImmediateData/InitialR2T = %v/%v, want No/Yes", info.Params.ImmediateData, info.Params.InitialR2T)
			}
			logout(t, s)
		}},
	{name: "small bursts 64 MiB", spec: lab.ExportSpec{Sizes: []int64{64 * mib}, Params: map[string]string{
		"FirstBurstLength": "4096", "MaxBurstLength": "4096", "MaxRecvDataSegmentLength": "4096", "ImmediateData": "No", "InitialR2T": "Yes"}},
		// LIO declares its MaxXmitDataSegmentLength (default 262144) as
		// the MaxRecvDataSegmentLength it sends, whatever its
		// MaxRecvDataSegmentLength param says (seen in the lab).
		lioParams: map[string]string{"MaxXmitDataSegmentLength": "4096"},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			s := login(t, e.config(exp))
			info := s.Info()
			e.note("%s small bursts: %s", x.Kind(), describe(info))
			if info.Params.MaxBurstLength != 4096 || info.Params.FirstBurstLength != 4096 || info.TargetMaxRecvDataSegmentLength != 4096 ||
				info.Params.ImmediateData || !info.Params.InitialR2T {
				t.Errorf("negotiated %s, want bursts and target MRDSL 4096, ImmediateData=No, InitialR2T=Yes", describe(info))
			}
			ready(t, s, exp.LUNBase)
			transfer(t, s, exp.LUNBase, 64<<20, nil)
			logout(t, s)
		}},
	{name: "3 TiB sparse LUN", spec: lab.ExportSpec{Sizes: []int64{3 << 40}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			s := login(t, e.config(exp))
			ready(t, s, exp.LUNBase)
			c, err := scsi.ReadCapacity(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase), false)
			if err != nil || !c.Long || c.Blocks() != 3<<40/512 {
				t.Fatalf("ReadCapacity = %+v, %v, want READ CAPACITY(16) with %d blocks", c, err, 3<<40/512)
			}
			d, err := scsi.OpenDisk(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase), scsi.DiskOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range []int64{2<<40 - 100, 5 << 39, 3<<40 - 4096} {
				p := randBytes(4096)
				if n, err := d.WriteAt(p, off); n != len(p) || err != nil {
					t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
				}
				got := make([]byte, len(p))
				if n, err := d.ReadAt(got, off); n != len(p) || err != nil || !bytes.Equal(got, p) {
					t.Errorf("ReadAt(%d) = %d, %v, equal %v", off, n, err, bytes.Equal(got, p))
				}
			}
			logout(t, s)
		}},
	{name: "read-only", spec: lab.ExportSpec{Sizes: []int64{16 * mib}, ReadOnly: true},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			s := login(t, e.config(exp))
			ready(t, s, exp.LUNBase)
			d, err := scsi.OpenDisk(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase), scsi.DiskOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !d.ReadOnly() {
				t.Errorf("ReadOnly() = false on a read-only LUN")
			}
			err = scsi.Write(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase), 0, 512, make([]byte, 512), false)
			if !errors.Is(err, scsi.ErrDataProtect) {
				t.Errorf("WRITE to a read-only LUN = %v, want DATA PROTECT", err)
			}
			logout(t, s)
		}},
	{name: "read-only through the ACL", spec: lab.ExportSpec{Sizes: []int64{16 * mib}, ReadOnly: true, Initiators: []string{defaultInitiator()}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			// LIO: the mapped LUN's write_protect (not demo mode's
			// demo_mode_write_protect); tgtd: readonly=1 as before.
			s := login(t, e.config(exp))
			ready(t, s, exp.LUNBase)
			err := scsi.Write(tctx(t, 30*time.Second), s, lunOf(exp.LUNBase), 0, 512, make([]byte, 512), false)
			if !errors.Is(err, scsi.ErrDataProtect) {
				t.Errorf("WRITE to a read-only LUN = %v, want DATA PROTECT", err)
			}
			logout(t, s)
		}},
	{name: "ACL admits the default initiator name", spec: lab.ExportSpec{Sizes: []int64{16 * mib}, Initiators: []string{defaultInitiator()}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			s := basicIO(t, e, exp, e.config(exp))
			logout(t, s)
			// Another name is refused, and the advice names it.
			cfg := e.config(exp)
			cfg.InitiatorName = "iqn.2026-11.org.lunboot:not-in-the-acl"
			s2, err := iscsi.Login(tctx(t, time.Minute), cfg)
			if err == nil {
				s2.Close()
				t.Fatalf("Login with an initiator outside the ACL succeeded")
			}
			hint := advice.Login(err, cfg, advice.Cmdline)
			e.note("%s ACL refusal: %v; advice: %s", x.Kind(), err, hint)
			msg := err.Error() + " " + hint
			switch x.Kind() {
			case "lio":
				// LIO answers 02/02 "initiator not authorized"
				// (iscsi_target_nego.c, the node ACL lookup failing).
				if !errors.Is(err, iscsi.ErrAuthorizationFailed) {
					t.Errorf("Login = %v, want ErrAuthorizationFailed", err)
				}
			case "tgtd":
				// tgtd answers 02/03 "not found" (seen in the lab).
				if !errors.Is(err, iscsi.ErrTargetNotFound) && !errors.Is(err, iscsi.ErrAuthorizationFailed) {
					t.Errorf("Login = %v, want not found or not authorised", err)
				}
			}
			if !strings.Contains(msg, cfg.InitiatorName) {
				t.Errorf("error and advice %q do not name the initiator %s", msg, cfg.InitiatorName)
			}
			if !strings.Contains(hint, "ACL") {
				t.Errorf("advice %q does not point at the target's ACL", hint)
			}
			if x.Kind() == "lio" && !strings.Contains(hint, "lunboot.initiator=") {
				t.Errorf("advice %q does not say how to log in under a name the ACL allows", hint)
			}
		}},
	{name: "mixed-case target name", spec: lab.ExportSpec{IQN: "iqn.2000-01.com.synology:DiskStation.Target-1.4f3e2d1c", Sizes: []int64{16 * mib}},
		run: func(t *testing.T, e *env, x lab.Exporter, exp *lab.Export) {
			// As the admin typed it (and as open-iscsi sends it: it
			// does not fold case), taken from the root-path as a boot
			// takes it.
			rp, err := rootpath.Parse(exp.RootPath())
			if err != nil {
				t.Fatalf("rootpath.Parse(%q) = %v", exp.RootPath(), err)
			}
			if rp.Target != exp.IQN {
				t.Fatalf("the root-path's target name is %q, want %q as written", rp.Target, exp.IQN)
			}
			cfg0 := e.config(exp)
			cfg0.TargetName = rp.Target
			s := basicIO(t, e, exp, cfg0)
			if got := s.Info().TargetName; got != exp.IQN {
				t.Errorf("session target name %q, want %q", got, exp.IQN)
			}
			logout(t, s)
			// Folded to lower case, as RFC 3722's stringprep would: both
			// targets compare the name byte for byte and refuse it, tgtd
			// with 02/03, LIO with 03/01.
			cfg := e.config(exp)
			cfg.TargetName = strings.ToLower(exp.IQN)
			s2, err := iscsi.Login(tctx(t, time.Minute), cfg)
			hint := advice.Login(err, cfg, advice.Cmdline)
			e.note("%s lower-cased target name: %v; advice: %s", x.Kind(), err, hint)
			if err == nil {
				s2.Close()
				t.Fatalf("Login with the lower-cased name succeeded")
			}
			var le *iscsi.LoginError
			want := map[string][2]uint8{"tgtd": {2, 3}, "lio": {3, 1}}[x.Kind()]
			if !errors.As(err, &le) || le.Class != want[0] || le.Detail != want[1] {
				t.Errorf("Login(lower-cased name) = %v, want status %02x/%02x", err, want[0], want[1])
			}
			if !strings.Contains(hint, "lunboot discover") {
				t.Errorf("advice %q does not say how to list the target's names", hint)
			}
		}},
}

// chapTable holds the CHAP rows: the export requires CHAP (mutual when the
// target account is set).
var chapRows = []struct {
	name    string
	mutual  bool
	chap    *iscsi.CHAP
	wantErr error
	// algTgtd, algLIO: what each target picks; 0 means the login fails.
	algTgtd, algLIO iscsi.CHAPAlgorithm
}{
	{"one-way", false, &iscsi.CHAP{Username: chapUser, Secret: chapSecret}, nil, iscsi.CHAPMD5, iscsi.CHAPSHA3256},
	{"mutual", true, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, TargetUsername: chapTUser, TargetSecret: chapTSecret}, nil, iscsi.CHAPMD5, iscsi.CHAPSHA3256},
	{"CHAP_A=5 MD5 only", false, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}, nil, iscsi.CHAPMD5, iscsi.CHAPMD5},
	{"CHAP_A=6 SHA-1 only", false, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPSHA1}}, nil, 0, iscsi.CHAPSHA1},
	// tgtd numbers its SHA-1 7: it answers CHAP_A=7 with SHA-1 and our
	// SHA-256 response fails. With SHA-256 the only algorithm offered,
	// lunboot does not retry with MD5 (a downgrade the user did not allow:
	// pkg/iscsi loginWithFallback), so the login fails on tgtd.
	{"CHAP_A=7 SHA-256 only", false, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPSHA256}}, nil, 0, iscsi.CHAPSHA256},
	{"CHAP_A=8 SHA3-256 only", false, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPSHA3256}}, nil, 0, iscsi.CHAPSHA3256},
	{"wrong secret", false, &iscsi.CHAP{Username: chapUser, Secret: wrongSecret}, iscsi.ErrAuthenticationFailed, 0, 0},
	{"no credentials", false, nil, iscsi.ErrAuthenticationFailed, 0, 0},
	{"mutual with wrong target secret", true, &iscsi.CHAP{Username: chapUser, Secret: chapSecret, TargetUsername: chapTUser, TargetSecret: wrongSecret}, iscsi.ErrAuthenticationFailed, 0, 0},
}

func TestInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("the interop suite boots the LIO target VM: not in -short mode")
	}
	l := labtest.Start(t, lab.Options{Name: "interop"})
	e := &env{lab: l}
	e.tgtd = labtest.Target(t, l)
	e.lio = labtest.LIO(t, l, lab.LIOOptions{})
	t.Cleanup(func() {
		for _, n := range e.notes {
			t.Log("negotiated: " + n)
		}
	})
	targets := []lab.Exporter{e.tgtd, e.lio}
	seq := 0
	export := func(t *testing.T, x lab.Exporter, spec lab.ExportSpec) *lab.Export {
		t.Helper()
		seq++
		if spec.IQN == "" {
			spec.IQN = fmt.Sprintf("iqn.2026-11.org.lunboot.lab:interop-%d", seq)
		}
		if li, ok := x.(*lab.LIO); ok {
			// One export at a time on LIO: the VM's tmpfs holds
			// what the cases write.
			if err := li.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		exp, err := x.Export(spec)
		if err != nil {
			t.Fatalf("%s Export: %v", x.Kind(), err)
		}
		return exp
	}
	for _, row := range table {
		for _, x := range targets {
			if row.only != "" && row.only != x.Kind() {
				continue
			}
			t.Run(x.Kind()+"/"+row.name, func(t *testing.T) {
				start := time.Now()
				spec := row.spec
				if x.Kind() == "lio" && row.lioParams != nil {
					spec.Params = maps.Clone(spec.Params)
					maps.Copy(spec.Params, row.lioParams)
				}
				exp := export(t, x, spec)
				row.run(t, e, x, exp)
				t.Logf("%s in %s", t.Name(), time.Since(start).Round(time.Millisecond))
			})
		}
	}
	for i, row := range chapRows {
		for _, x := range targets {
			t.Run(x.Kind()+"/CHAP "+row.name, func(t *testing.T) {
				// tgtd's accounts are global: one pair of names per row.
				user, tuser := fmt.Sprintf("%s-%d", chapUser, i), fmt.Sprintf("%s-%d", chapTUser, i)
				c := &lab.CHAP{Username: user, Secret: chapSecret}
				if row.mutual {
					c.TargetUsername, c.TargetSecret = tuser, chapTSecret
				}
				exp := export(t, x, lab.ExportSpec{Sizes: []int64{16 * mib}, CHAP: c, Initiators: []string{defaultInitiator()}})
				cfg := e.config(exp)
				if row.chap != nil {
					ch := *row.chap
					ch.Username = user
					if ch.TargetUsername != "" {
						ch.TargetUsername = tuser
					}
					cfg.CHAP = &ch
				}
				want := row.algTgtd
				if x.Kind() == "lio" {
					want = row.algLIO
				}
				s, err := iscsi.Login(tctx(t, time.Minute), cfg)
				if row.wantErr != nil || want == 0 {
					if err == nil {
						s.Close()
						t.Fatalf("Login succeeded (%s), want a failure", describe(s.Info()))
					}
					if row.wantErr != nil && !errors.Is(err, row.wantErr) {
						t.Fatalf("Login = %v, want %v", err, row.wantErr)
					}
					e.note("%s CHAP %s: refused: %v", x.Kind(), row.name, err)
					return
				}
				if err != nil {
					t.Fatalf("Login = %v", err)
				}
				defer s.Close()
				info := s.Info()
				e.note("%s CHAP %s: %v/%v", x.Kind(), row.name, info.CHAP, info.CHAPAlgorithm)
				mode := iscsi.CHAPOneWay
				if row.mutual {
					mode = iscsi.CHAPMutual
				}
				if info.CHAP != mode || info.CHAPAlgorithm != want {
					t.Errorf("CHAP = %v/%v, want %v/%v", info.CHAP, info.CHAPAlgorithm, mode, want)
				}
				ready(t, s, exp.LUNBase)
				writeRead(t, s, exp.LUNBase, 0, randBytes(64<<10))
				logout(t, s)
			})
		}
	}
	// Two TPGs of one target, each with its own portal: the login lands in
	// the TPG of the portal dialled, and SendTargets lists both.
	t.Run("lio/two TPGs and portals", func(t *testing.T) {
		const iqn = "iqn.2026-11.org.lunboot.lab:two-tpgs"
		if err := e.lio.Reset(context.Background()); err != nil {
			t.Fatal(err)
		}
		p1 := e.lio.Portal()
		p2 := netip.AddrPortFrom(p1.Addr(), p1.Port()+1)
		tpg := func(tag int, portal netip.AddrPort) lio.TPG {
			return lio.TPG{Tag: tag, Portals: []string{portal.String()},
				Attrib: map[string]string{"authentication": "0", "generate_node_acls": "1", "cache_dynamic_acls": "1", "demo_mode_write_protect": "0"},
				LUNs:   []lio.LUN{{Number: 0, File: fmt.Sprintf("/tmp/luns/tpg%d.img", tag), Size: 16 * mib}}}
		}
		if err := e.lio.Apply(context.Background(), lio.Target{IQN: iqn, TPGs: []lio.TPG{tpg(1, p1), tpg(2, p2)}}); err != nil {
			t.Fatal(err)
		}
		for i, p := range []netip.AddrPort{p1, p2} {
			exp := &lab.Export{IQN: iqn, Portal: p}
			s := login(t, e.config(exp))
			if got := s.Info().TPGT; got != uint16(i+1) {
				t.Errorf("login at %s: TPGT %d, want %d", p, got, i+1)
			}
			ready(t, s, 0)
			writeRead(t, s, 0, 0, randBytes(64<<10))
			logout(t, s)
		}
		cfg := e.config(&lab.Export{Portal: p1})
		targets, err := iscsi.Discover(tctx(t, time.Minute), cfg)
		if err != nil {
			t.Fatalf("Discover = %v", err)
		}
		var got []string
		for _, tg := range targets {
			for _, a := range tg.Addresses {
				got = append(got, tg.Name+" "+a.String())
			}
		}
		e.note("lio SendTargets with two TPGs: %v", got)
		want := []string{iqn + " " + p1.String() + ",1", iqn + " " + p2.String() + ",2"}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("Discover = %v, want %q among them", got, w)
			}
		}
	})
	// The target vanishing mid-transfer: LIO's TPG disabled, then its
	// guest's link down, each for 5 s in the middle of 256 MiB.
	t.Run("lio/TPG disabled 5s mid-transfer", func(t *testing.T) {
		exp := export(t, e.lio, lab.ExportSpec{Sizes: []int64{256 * mib}})
		cfg := e.config(exp)
		cfg.RecoveryTimeout = 2 * time.Minute
		s := login(t, cfg)
		ready(t, s, 0)
		start := time.Now()
		transfer(t, s, 0, 256<<20, func() {
			if err := e.lio.SetTPG(context.Background(), exp.IQN, 1, false); err != nil {
				t.Error(err)
				return
			}
			time.AfterFunc(5*time.Second, func() {
				if err := e.lio.SetTPG(context.Background(), exp.IQN, 1, true); err != nil {
					t.Error(err)
				}
			})
		})
		info := s.Info()
		e.note("lio TPG disabled 5 s: %d reconnect(s), 256 MiB round trip in %s", info.Reconnects, time.Since(start).Round(time.Millisecond))
		if info.Reconnects < 1 {
			t.Errorf("no reconnect: did the TPG go away?")
		}
		logout(t, s)
	})
	t.Run("lio/link down 5s mid-transfer", func(t *testing.T) {
		exp := export(t, e.lio, lab.ExportSpec{Sizes: []int64{256 * mib}})
		cfg := e.config(exp)
		cfg.RecoveryTimeout = 2 * time.Minute
		s := login(t, cfg)
		ready(t, s, 0)
		start := time.Now()
		transfer(t, s, 0, 256<<20, func() {
			if err := e.lio.LinkDown(context.Background(), 5*time.Second); err != nil {
				t.Error(err)
			}
		})
		info := s.Info()
		e.note("lio link down 5 s: %d reconnect(s), 256 MiB round trip in %s", info.Reconnects, time.Since(start).Round(time.Millisecond))
		// The agent logs both edges on the VM's console: the link
		// really went down, and came back, during the transfer.
		con := e.lio.VM().Console()
		if !strings.Contains(con, `msg="link down"`) || !strings.Contains(con, `msg="link up"`) {
			t.Errorf("the target VM's console does not show its link going down and up")
		}
		logout(t, s)
	})
}
