package netconf

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// These tests drive exchange (the DORA state machine) against a scripted
// in-process server over an in-memory connection, in a synctest bubble, so
// retransmission times are exact and NAKs, silent servers and odd offers
// can be produced on demand. The real-peer tests are in dnsmasq_test.go.

// pipeConn is an in-memory net.PacketConn: what the client writes goes to
// out, what the server puts in in is read by the client.
type pipeConn struct {
	in, out chan []byte
	done    chan struct{}
	once    sync.Once
}

func newPipeConn() *pipeConn {
	return &pipeConn{in: make(chan []byte, 16), out: make(chan []byte), done: make(chan struct{})}
}

func (p *pipeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case m := <-p.in:
		return copy(b, m), &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 67}, nil
	case <-p.done:
		return 0, nil, net.ErrClosed
	}
}

func (p *pipeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case p.out <- slices.Clone(b):
		return len(b), nil
	case <-p.done:
		return 0, net.ErrClosed
	}
}

func (p *pipeConn) Close() error                     { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.UDPAddr{Port: 68} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// sent is a message the client sent, and when (since the exchange began).
type sent struct {
	at  time.Duration
	msg *dhcpv4.DHCPv4
}

// reply is a server answer, sent after delay.
type reply struct {
	delay time.Duration
	msg   *dhcpv4.DHCPv4
}

// script answers the n-th message of its type (counting from 0).
type script func(req *dhcpv4.DHCPv4, n int) []reply

// runExchange runs exchange with o against s and returns its result and
// what the client sent. bound is the overall DHCP bound.
func runExchange(t *testing.T, o Options, bound time.Duration, s script) (cfg *Config, err error, log []sent, elapsed time.Duration) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		conn := newPipeConn()
		start := time.Now()
		var mu sync.Mutex
		counts := map[dhcpv4.MessageType]int{}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				var b []byte
				select {
				case b = <-conn.out:
				case <-conn.done:
					return
				}
				req, err := dhcpv4.FromBytes(b)
				if err != nil {
					t.Errorf("client sent an undecodable message: %v", err)
					continue
				}
				mu.Lock()
				log = append(log, sent{time.Since(start), req})
				n := counts[req.MessageType()]
				counts[req.MessageType()]++
				mu.Unlock()
				for _, r := range s(req, n) {
					wg.Go(func() {
						time.Sleep(r.delay)
						select {
						case conn.in <- r.msg.ToBytes():
						case <-conn.done:
						}
					})
				}
			}
		})
		nc, nerr := nclient4.NewWithConn(conn, clientMAC, nclient4.WithRetry(1), nclient4.WithTimeout(math.MaxInt64))
		if nerr != nil {
			t.Fatal(nerr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg, err = exchange(ctx, nc, Link{Name: "eth0", Index: 2, MAC: clientMAC}, &o, o.Logger)
		elapsed = time.Since(start)
		cancel()
		nc.Close()
		wg.Wait()
	})
	return cfg, err, log, elapsed
}

var clientMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0x50}

// answer builds a reply of type typ from server to req, offering yiaddr
// 10.0.0.50, with the given options.
func answer(t *testing.T, req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, server net.IP, opts ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.IPv4(10, 0, 0, 50)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
	}
	if server != nil {
		mods = append(mods, dhcpv4.WithServerIP(server), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)))
	}
	if typ == dhcpv4.MessageTypeNak {
		mods = append(mods, dhcpv4.WithYourIP(net.IPv4zero))
	}
	m, err := dhcpv4.NewReplyFromRequest(req, append(mods, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	srvA = net.IPv4(10, 0, 0, 1)
	srvB = net.IPv4(10, 0, 0, 2)
	// withRootPath adds option 17.
	withRootPath = dhcpv4.WithOption(dhcpv4.OptRootPath("iscsi:10.0.0.1::::iqn.2024-01.test:disk"))
)

func types(log []sent) []string {
	var s []string
	for _, m := range log {
		s = append(s, m.msg.MessageType().String())
	}
	return s
}

func TestExchangeRetransmitsDiscover(t *testing.T) {
	// The server answers only the third DISCOVER.
	o := Options{RootPath: RootPathOptional, Retransmit: time.Second, MaxRetransmit: 64 * time.Second}
	cfg, err, log, _ := runExchange(t, o, 30*time.Second, func(req *dhcpv4.DHCPv4, n int) []reply {
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			if n == 2 {
				return []reply{{0, answer(t, req, dhcpv4.MessageTypeOffer, srvA)}}
			}
		case dhcpv4.MessageTypeRequest:
			return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA)}}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("exchange() = %v", err)
	}
	if cfg.Address.String() != "10.0.0.50/24" {
		t.Errorf("exchange().Address = %v, want 10.0.0.50/24", cfg.Address)
	}
	if got, want := types(log), []string{"DISCOVER", "DISCOVER", "DISCOVER", "REQUEST"}; !slices.Equal(got, want) {
		t.Fatalf("client sent %v, want %v", got, want)
	}
	// RFC 2131 §4.1: delays double (1 s, 2 s here), each ± base/4.
	for i, want := range []time.Duration{0, time.Second, 3 * time.Second} {
		if d := log[i].at - want; d < -500*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("DISCOVER %d sent at %v, want %v ± 0.5s", i, log[i].at, want)
		}
	}
	// Retransmissions keep the xid (so a late OFFER still matches) and
	// count seconds since the start (the 'secs' field, RFC 2131 §2).
	for i := range 3 {
		if log[i].msg.TransactionID != log[0].msg.TransactionID {
			t.Errorf("DISCOVER %d xid %v, want %v", i, log[i].msg.TransactionID, log[0].msg.TransactionID)
		}
		if want := uint16(log[i].at / time.Second); log[i].msg.NumSeconds != want {
			t.Errorf("DISCOVER %d secs = %d, want %d", i, log[i].msg.NumSeconds, want)
		}
	}
	req := log[3].msg
	if req.TransactionID != log[0].msg.TransactionID || !req.RequestedIPAddress().Equal(net.IPv4(10, 0, 0, 50)) || !req.ServerIdentifier().Equal(srvA) {
		t.Errorf("REQUEST = %s, want the offer's xid, requested IP 10.0.0.50, server id 10.0.0.1", req)
	}
	if !req.IsOptionRequested(dhcpv4.OptionRootPath) || !req.IsOptionRequested(dhcpv4.GenericOptionCode(optInitiatorIQN)) || req.ClassIdentifier() != "lunboot" {
		t.Errorf("REQUEST PRL %v, vendor class %q, want 17 and 203 requested and class lunboot", req.ParameterRequestList(), req.ClassIdentifier())
	}
}

func TestExchangeNakThenAck(t *testing.T) {
	o := Options{RootPath: RootPathOptional, Retransmit: time.Second}
	cfg, err, log, _ := runExchange(t, o, 30*time.Second, func(req *dhcpv4.DHCPv4, n int) []reply {
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			return []reply{{0, answer(t, req, dhcpv4.MessageTypeOffer, srvA)}}
		case dhcpv4.MessageTypeRequest:
			if n == 0 {
				return []reply{{0, answer(t, req, dhcpv4.MessageTypeNak, srvA, dhcpv4.WithOption(dhcpv4.OptMessage("address in use")))}}
			}
			return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA)}}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("exchange() = %v", err)
	}
	if cfg.Address.String() != "10.0.0.50/24" {
		t.Errorf("exchange().Address = %v, want 10.0.0.50/24", cfg.Address)
	}
	// RFC 2131 §4.4.1: after a NAK the client starts over with DISCOVER
	// (a new transaction), after a pause rather than at once.
	if got, want := types(log), []string{"DISCOVER", "REQUEST", "DISCOVER", "REQUEST"}; !slices.Equal(got, want) {
		t.Fatalf("client sent %v, want %v", got, want)
	}
	if log[2].msg.TransactionID == log[0].msg.TransactionID {
		t.Errorf("DISCOVER after NAK reused xid %v, want a new one", log[0].msg.TransactionID)
	}
	if gap := log[2].at - log[1].at; gap < 750*time.Millisecond {
		t.Errorf("DISCOVER %v after the NAK, want a pause of about 1s", gap)
	}
}

func TestExchangeFailures(t *testing.T) {
	offer := func(t *testing.T, req *dhcpv4.DHCPv4) []reply {
		return []reply{{0, answer(t, req, dhcpv4.MessageTypeOffer, srvA)}}
	}
	for _, tt := range []struct {
		name   string
		script func(t *testing.T) script
		is     error
		want   []string
	}{
		{
			name:   "silence",
			script: func(t *testing.T) script { return func(*dhcpv4.DHCPv4, int) []reply { return nil } },
			is:     ErrNoOffer,
			want:   []string{"eth0: no DHCPOFFER within 10s", "DHCPDISCOVER(s) sent", "is a DHCP server on this link?"},
		},
		{
			name: "always NAK",
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, _ int) []reply {
					if req.MessageType() == dhcpv4.MessageTypeDiscover {
						return offer(t, req)
					}
					return []reply{{0, answer(t, req, dhcpv4.MessageTypeNak, srvA, dhcpv4.WithOption(dhcpv4.OptMessage("no such lease")))}}
				}
			},
			is:   ErrNak,
			want: []string{`eth0: DHCPNAK from 10.0.0.1 for 10.0.0.50: "no such lease"`, "gave up after 10s", "offer(s) requested"},
		},
		{
			name: "offer but no ACK",
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, _ int) []reply {
					if req.MessageType() == dhcpv4.MessageTypeDiscover {
						return offer(t, req)
					}
					return nil
				}
			},
			is:   ErrNoAck,
			want: []string{"eth0: no DHCPACK from 10.0.0.1 for 10.0.0.50", "gave up after 10s"},
		},
		{
			name: "offer without server identifier",
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, _ int) []reply {
					return []reply{{0, answer(t, req, dhcpv4.MessageTypeOffer, nil)}}
				}
			},
			is:   ErrNoOffer,
			want: []string{"ignored: offer from <nil>: no server identifier (option 54)"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{RootPath: RootPathOptional, Retransmit: time.Second}
			const bound = 10 * time.Second
			_, err, _, elapsed := runExchange(t, o, bound, tt.script(t))
			if !errors.Is(err, tt.is) {
				t.Fatalf("exchange() = %v, want it to wrap %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("exchange() error %q lacks %q", err, w)
				}
			}
			if elapsed != bound {
				t.Errorf("exchange() returned after %v, want exactly the %v bound", elapsed, bound)
			}
		})
	}
}

func TestExchangeHoldsOfferWithoutRootPath(t *testing.T) {
	// Server A answers at once without a root-path; boot server B answers
	// 300 ms later with one. With RootPathRequired, B wins.
	both := func(t *testing.T) script {
		return func(req *dhcpv4.DHCPv4, _ int) []reply {
			switch req.MessageType() {
			case dhcpv4.MessageTypeDiscover:
				return []reply{
					{0, answer(t, req, dhcpv4.MessageTypeOffer, srvA)},
					{300 * time.Millisecond, answer(t, req, dhcpv4.MessageTypeOffer, srvB, withRootPath)},
				}
			case dhcpv4.MessageTypeRequest:
				sid := req.ServerIdentifier()
				if sid.Equal(srvB) {
					return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvB, withRootPath)}}
				}
				return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, sid)}}
			}
			return nil
		}
	}
	cfg, err, log, _ := runExchange(t, Options{Retransmit: time.Second}, 30*time.Second, both(t))
	if err != nil {
		t.Fatalf("exchange() = %v", err)
	}
	if cfg.RootPath.Source != SourceOption17 || cfg.Server.String() != "10.0.0.2" {
		t.Errorf("exchange() = server %v root-path %v, want server 10.0.0.2 with a root-path", cfg.Server, cfg.RootPath)
	}
	if req := log[len(log)-1].msg; req.MessageType() != dhcpv4.MessageTypeRequest || !req.ServerIdentifier().Equal(srvB) {
		t.Errorf("last message %s, want a REQUEST to 10.0.0.2", req)
	}

	// Only A: its offer is taken when the first retransmission interval
	// ends, instead of waiting out the whole bound.
	onlyA := func(t *testing.T) script {
		return func(req *dhcpv4.DHCPv4, _ int) []reply {
			typ := dhcpv4.MessageTypeOffer
			if req.MessageType() == dhcpv4.MessageTypeRequest {
				typ = dhcpv4.MessageTypeAck
			}
			return []reply{{0, answer(t, req, typ, srvA)}}
		}
	}
	cfg, err, log, _ = runExchange(t, Options{Retransmit: time.Second}, 30*time.Second, onlyA(t))
	if err != nil {
		t.Fatalf("exchange(only A) = %v", err)
	}
	if cfg.RootPath.Source != SourceNone || cfg.Server.String() != "10.0.0.1" {
		t.Errorf("exchange(only A) = server %v root-path %v, want 10.0.0.1 without root-path", cfg.Server, cfg.RootPath)
	}
	if got, want := types(log), []string{"DISCOVER", "REQUEST"}; !slices.Equal(got, want) {
		t.Fatalf("client sent %v, want %v", got, want)
	}
	if at := log[1].at; at < 750*time.Millisecond || at > 1250*time.Millisecond {
		t.Errorf("REQUEST sent at %v, want at the end of the first interval (1s ± 0.25s)", at)
	}
}

// TestExchangeSendsHostname checks that Options.Hostname goes out as
// option 12 in DISCOVER and REQUEST (RFC 2132 §3.14), and nothing when
// unset.
func TestExchangeSendsHostname(t *testing.T) {
	for _, host := range []string{"node7", ""} {
		o := Options{RootPath: RootPathOptional, Hostname: host}
		_, err, log, _ := runExchange(t, o, 30*time.Second, func(req *dhcpv4.DHCPv4, n int) []reply {
			switch req.MessageType() {
			case dhcpv4.MessageTypeDiscover:
				return []reply{{0, answer(t, req, dhcpv4.MessageTypeOffer, srvA)}}
			case dhcpv4.MessageTypeRequest:
				return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA)}}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("exchange(Hostname %q) = %v", host, err)
		}
		if got, want := types(log), []string{"DISCOVER", "REQUEST"}; !slices.Equal(got, want) {
			t.Fatalf("client sent %v, want %v", got, want)
		}
		for _, m := range log {
			got, has := m.msg.HostName(), m.msg.Options.Has(dhcpv4.OptionHostName)
			if got != host || has != (host != "") {
				t.Errorf("Hostname %q: %s carries option 12 = %v %q", host, m.msg.MessageType(), has, got)
			}
		}
	}
}

// TestExchangeRapidCommit: RFC 4039. The DISCOVER asks for rapid commit, a
// server that grants it answers with a DHCPACK carrying option 80 and the
// client takes it without a REQUEST; an ACK without the option does not
// answer a DISCOVER; a rapid-commit ACK without the required root-path is
// ignored like such an offer.
func TestExchangeRapidCommit(t *testing.T) {
	rapid := dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	for _, tt := range []struct {
		name     string
		rootPath RootPathPolicy
		script   func(t *testing.T) script
		want     []string
		server   net.IP
	}{
		{
			name:     "granted",
			rootPath: RootPathOptional,
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, n int) []reply {
					if req.MessageType() == dhcpv4.MessageTypeDiscover {
						if !req.Options.Has(dhcpv4.OptionRapidCommit) {
							t.Errorf("DISCOVER without rapid commit (option 80): %s", req)
						}
						return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA, rapid)}}
					}
					return nil
				}
			},
			want:   []string{"DISCOVER"},
			server: srvA,
		},
		{
			name:     "ack without option 80",
			rootPath: RootPathOptional,
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, n int) []reply {
					switch req.MessageType() {
					case dhcpv4.MessageTypeDiscover:
						return []reply{
							{0, answer(t, req, dhcpv4.MessageTypeAck, srvB)},
							{10 * time.Millisecond, answer(t, req, dhcpv4.MessageTypeOffer, srvA)},
						}
					case dhcpv4.MessageTypeRequest:
						if req.Options.Has(dhcpv4.OptionRapidCommit) {
							t.Errorf("REQUEST carries rapid commit: %s", req)
						}
						return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA)}}
					}
					return nil
				}
			},
			want:   []string{"DISCOVER", "REQUEST"},
			server: srvA,
		},
		{
			name:     "rapid ack without the required root-path",
			rootPath: RootPathRequired,
			script: func(t *testing.T) script {
				return func(req *dhcpv4.DHCPv4, n int) []reply {
					switch req.MessageType() {
					case dhcpv4.MessageTypeDiscover:
						return []reply{
							{0, answer(t, req, dhcpv4.MessageTypeAck, srvB, rapid)},
							{10 * time.Millisecond, answer(t, req, dhcpv4.MessageTypeOffer, srvA, withRootPath)},
						}
					case dhcpv4.MessageTypeRequest:
						return []reply{{0, answer(t, req, dhcpv4.MessageTypeAck, srvA, withRootPath)}}
					}
					return nil
				}
			},
			want:   []string{"DISCOVER", "REQUEST"},
			server: srvA,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{RootPath: tt.rootPath, Retransmit: time.Second}
			cfg, err, log, _ := runExchange(t, o, 30*time.Second, tt.script(t))
			if err != nil {
				t.Fatalf("exchange() = %v", err)
			}
			if got := types(log); !slices.Equal(got, tt.want) {
				t.Errorf("client sent %v, want %v", got, tt.want)
			}
			if cfg.Address.String() != "10.0.0.50/24" || cfg.Server.String() != tt.server.String() {
				t.Errorf("exchange() = address %v server %v, want 10.0.0.50/24 from %v", cfg.Address, cfg.Server, tt.server)
			}
		})
	}
}
