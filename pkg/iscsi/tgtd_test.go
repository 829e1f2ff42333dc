package iscsi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lunboot/lunboot/internal/tgt"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// Interop tests against tgtd on loopback, configured through tgtadm the way
// an administrator would (internal/tgt). They need root and the tgt
// package; under CI=true a missing prerequisite fails.

const (
	tgtIQN  = "iqn.2026-11.org.lunboot:iscsi-interop"
	initIQN = "iqn.2026-11.org.lunboot:initiator"
)

// tgtdEnv is tgtd with target 1 (tgtIQN) and sparse file LUNs.
type tgtdEnv struct{ *tgt.Test }

// startTgtd starts tgtd with target 1 and LUNs 1..n, each a sparse file.
func startTgtd(t testing.TB, luns int, size int64) *tgtdEnv {
	t.Helper()
	return &tgtdEnv{tgt.StartTest(t, tgtIQN, slices.Repeat([]int64{size}, luns)...)}
}

func (e *tgtdEnv) set(t testing.TB, key, value string) {
	t.Helper()
	if err := e.Srv.SetParam(1, key, value); err != nil {
		t.Fatalf("tgtadm %s=%s: %v", key, value, err)
	}
}

func (e *tgtdEnv) config(t testing.TB) Config {
	return Config{Portal: e.Portal, TargetName: tgtIQN, InitiatorName: initIQN, Logger: testLogger(t.(*testing.T))}
}

// clearUA consumes tgtd's POWER ON unit attention on a LUN.
func clearUA(t testing.TB, s *Session, lun int) {
	t.Helper()
	for range 3 {
		res, err := s.Execute(context.Background(), &scsi.Command{LUN: lunN(lun), CDB: []byte{0, 0, 0, 0, 0, 0}})
		if err != nil {
			t.Fatalf("TEST UNIT READY: %v", err)
		}
		if res.Status == 0 {
			return
		}
	}
	t.Fatalf("LUN %d keeps reporting CHECK CONDITION", lun)
}

func TestTgtdInterop(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string // tgtadm --name/--value
		cfg    func(*Config)
		check  func(t *testing.T, info SessionInfo)
	}{
		{name: "no authentication", check: func(t *testing.T, info SessionInfo) {
			if info.TSIH == 0 || info.TPGT != 1 || info.CHAP != CHAPNone {
				t.Errorf("Info() = %+v", info)
			}
		}},
		{name: "digests", params: map[string]string{"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"},
			cfg: func(c *Config) { c.HeaderDigest, c.DataDigest = DigestRequire, DigestRequire },
			check: func(t *testing.T, info SessionInfo) {
				if !info.HeaderDigest || !info.DataDigest {
					t.Errorf("digests = %v/%v, want CRC32C both", info.HeaderDigest, info.DataDigest)
				}
			}},
		{name: "ImmediateData=No InitialR2T=Yes", params: map[string]string{"ImmediateData": "No", "InitialR2T": "Yes"},
			check: func(t *testing.T, info SessionInfo) {
				if info.Params.ImmediateData || !info.Params.InitialR2T {
					t.Errorf("ImmediateData/InitialR2T = %v/%v, want No/Yes", info.Params.ImmediateData, info.Params.InitialR2T)
				}
			}},
		{name: "target MaxRecvDataSegmentLength=4096", params: map[string]string{"MaxRecvDataSegmentLength": "4096"},
			check: func(t *testing.T, info SessionInfo) {
				if info.TargetMaxRecvDataSegmentLength != 4096 {
					t.Errorf("target MRDSL = %d, want 4096", info.TargetMaxRecvDataSegmentLength)
				}
			}},
		{name: "small bursts", params: map[string]string{"MaxBurstLength": "16384", "FirstBurstLength": "8192", "InitialR2T": "No"},
			check: func(t *testing.T, info SessionInfo) {
				if info.Params.MaxBurstLength != 16384 || info.Params.FirstBurstLength != 8192 {
					t.Errorf("bursts = %d/%d, want 16384/8192", info.Params.MaxBurstLength, info.Params.FirstBurstLength)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startTgtd(t, 3, 64<<20)
			for k, v := range tt.params {
				e.set(t, k, v)
			}
			cfg := e.config(t)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := mustLogin(t, cfg)
			if tt.check != nil {
				tt.check(t, s.Info())
			}
			for lun := 1; lun <= 3; lun++ {
				clearUA(t, s, lun)
			}
			// Large multi-R2T writes and reads on every LUN.
			for lun := 1; lun <= 3; lun++ {
				for _, n := range []int{512, 4096, 300 << 10, 1 << 20} {
					writeRead(t, s, lun, uint32(lun*1000+n/512), randBytes(n))
				}
			}
			// What tgtd stored is what we wrote.
			data := randBytes(1 << 20)
			writeRead(t, s, 2, 4096, data)
			if err := syncCache(t, s, 2); err != nil {
				t.Fatal(err)
			}
			file := make([]byte, len(data))
			f, err := os.Open(e.LUNs[1])
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.ReadAt(file, 4096*512)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(file, data) {
				t.Errorf("LUN 2 backing file differs from the data written")
			}
			if err := s.Logout(tctx(t)); err != nil {
				t.Fatalf("Logout = %v", err)
			}
			waitSessions(t, e, 0)
		})
	}
}

// syncCache sends SYNCHRONIZE CACHE(10) to a LUN.
func syncCache(t *testing.T, s *Session, lun int) error {
	res, err := s.Execute(tctx(t), &scsi.Command{LUN: lunN(lun), CDB: []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}})
	if err == nil && res.Status != 0 {
		err = fmt.Errorf("SYNCHRONIZE CACHE status %#x", res.Status)
	}
	return err
}

func waitSessions(t *testing.T, e *tgtdEnv, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n, err := e.Srv.Sessions(1)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tgtd sessions = %d, %v; want %d", n, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTgtdCHAP(t *testing.T) {
	const (
		user, secret   = "lunboot-user", "initiator-secret-1234"
		tuser, tsecret = "tgtd-target", "target-secret-98765"
		wrong          = "not-the-right-secret"
	)
	tests := []struct {
		name     string
		outgoing bool
		chap     *CHAP
		want     error
		mode     CHAPMode
	}{
		{"one-way", false, &CHAP{Username: user, Secret: secret}, nil, CHAPOneWay},
		{"mutual", true, &CHAP{Username: user, Secret: secret, TargetUsername: tuser, TargetSecret: tsecret}, nil, CHAPMutual},
		{"one-way MD5 only", false, &CHAP{Username: user, Secret: secret, Algorithms: []CHAPAlgorithm{CHAPMD5}}, nil, CHAPOneWay},
		{"wrong secret", false, &CHAP{Username: user, Secret: wrong}, ErrAuthenticationFailed, 0},
		{"no credentials", false, nil, ErrAuthenticationFailed, 0},
		{"mutual with wrong target secret", true, &CHAP{Username: user, Secret: secret, TargetUsername: tuser, TargetSecret: wrong}, ErrAuthenticationFailed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startTgtd(t, 1, 16<<20)
			if err := e.Srv.AddCHAP(1, user, secret, false); err != nil {
				t.Fatal(err)
			}
			if tt.outgoing {
				if err := e.Srv.AddCHAP(1, tuser, tsecret, true); err != nil {
					t.Fatal(err)
				}
			}
			cfg := e.config(t)
			cfg.CHAP = tt.chap
			s, err := Login(tctx(t), cfg)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Login = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login = %v", err)
			}
			defer s.Close()
			info := s.Info()
			// tgtd numbers SHA-1 as 7, so against it only MD5 works.
			if info.CHAP != tt.mode || info.CHAPAlgorithm != CHAPMD5 {
				t.Errorf("Info() CHAP = %v/%v, want %v/MD5", info.CHAP, info.CHAPAlgorithm, tt.mode)
			}
			clearUA(t, s, 1)
			writeRead(t, s, 1, 0, randBytes(64<<10))
			if err := s.Logout(tctx(t)); err != nil {
				t.Errorf("Logout = %v", err)
			}
			waitSessions(t, e, 0)
		})
	}
}

// TestTgtdRequiredDigest: tgtd with digests off (its default) refuses a
// CRC32C-only offer; DigestRequire then fails the login during negotiation
// with a *DigestError, and no session is left behind on the target, while
// DigestPrefer logs in without digests.
func TestTgtdRequiredDigest(t *testing.T) {
	e := startTgtd(t, 1, 16<<20)
	cfg := e.config(t)
	cfg.HeaderDigest = DigestRequire
	s, err := Login(tctx(t), cfg)
	var de *DigestError
	if !errors.As(err, &de) || de.Key != "HeaderDigest" {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Login(HeaderDigest required, tgtd without digests) = %v, want a *DigestError for HeaderDigest", err)
	}
	waitSessions(t, e, 0)
	cfg.HeaderDigest = DigestPrefer
	s, err = Login(tctx(t), cfg)
	if err != nil {
		t.Fatalf("Login(HeaderDigest preferred) = %v", err)
	}
	defer s.Close()
	if s.Info().HeaderDigest {
		t.Errorf("HeaderDigest on against tgtd without digests")
	}
}

func TestTgtdDiscovery(t *testing.T) {
	e := startTgtd(t, 1, 16<<20)
	if err := e.Srv.AddTarget(2, tgtIQN+"-second"); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t)
	cfg.TargetName = ""
	targets, err := Discover(tctx(t), cfg)
	if err != nil {
		t.Fatalf("Discover = %v", err)
	}
	found := map[string]bool{}
	for _, tg := range targets {
		for _, a := range tg.Addresses {
			if a.Portal() == e.Portal {
				found[tg.Name] = true
			}
		}
	}
	if !found[tgtIQN] || !found[tgtIQN+"-second"] {
		t.Errorf("Discover = %+v, want both targets at %s", targets, e.Portal)
	}
}

// TestTgtdRestart kills tgtd in the middle of a multi-megabyte concurrent
// transfer and starts a new one on the same portal with the same backing
// file: ERL 0 recovery must re-issue what was in flight and the data must
// come back intact.
func TestTgtdRestart(t *testing.T) {
	const size = 64 << 20
	e := startTgtd(t, 1, size)
	cfg := e.config(t)
	log, logs := newLog(t)
	cfg.Logger = log
	s := mustLogin(t, cfg)
	clearUA(t, s, 1)

	const chunk = 256 << 10
	const chunks = 48 // 12 MiB
	want := randBytes(chunks * chunk)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, chunks)
	started := make(chan struct{}, chunks)
	sem := make(chan struct{}, 8)
	for i := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			started <- struct{}{}
			lba := uint32(i * chunk / 512)
			res, err := s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: write10(lba, chunk/512), DataOut: want[i*chunk : (i+1)*chunk]})
			if err != nil {
				errs <- fmt.Errorf("write %d: %v", i, err)
			} else if res.Status != 0 {
				// The new tgtd reports POWER ON again; write once more.
				res, err = s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: write10(lba, chunk/512), DataOut: want[i*chunk : (i+1)*chunk]})
				if err != nil || res.Status != 0 {
					errs <- fmt.Errorf("write %d: %+v, %v", i, res, err)
				}
			}
		}()
	}
	// Let a quarter of the writes start, then pull the plug.
	for range chunks / 4 {
		<-started
	}
	e.Srv.Kill()
	e.Restart(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s.Info().Reconnects < 1 {
		t.Fatalf("no reconnect happened (was tgtd killed too late?)")
	}
	got := make([]byte, len(want))
	for i := range chunks {
		for {
			res, err := s.Execute(ctx, &scsi.Command{LUN: lunN(1), CDB: read10(uint32(i*chunk/512), chunk/512), DataIn: got[i*chunk : (i+1)*chunk]})
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if res.Status == 0 {
				break
			}
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("data read back after the restart differs from what was written")
	}
	t.Logf("transfer of %d MiB survived a tgtd restart; %d reconnect(s)", len(want)>>20, s.Info().Reconnects)
	if !bytes.Contains([]byte(logs.String()), []byte("session reinstated")) {
		t.Errorf("logs do not report the reinstatement")
	}
	if err := s.Logout(tctx(t)); err != nil {
		t.Errorf("Logout = %v", err)
	}
	waitSessions(t, e, 0)
}
