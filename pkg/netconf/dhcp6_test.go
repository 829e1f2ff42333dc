package netconf

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/lunboot/lunboot/pkg/rootpath"
)

// These tests drive exchange6 against insomniacslk's in-process DHCPv6
// server (server6) over an in-memory connection, in a synctest bubble; the
// real-peer test (dnsmasq) is TestDnsmasqDHCPv6 in dnsmasq_test.go.

const rootPath6 = "iscsi:[fd00:77::1]::3260:1:iqn.2024-01.test.lunboot:disk0"

// serverPipe mirrors a pipeConn: the server reads what the client writes
// and writes what the client reads.
func serverPipe(c *pipeConn) *pipeConn {
	return &pipeConn{in: c.out, out: c.in, done: make(chan struct{})}
}

// handler6 answers one message; it returns the replies to send.
type handler6 func(req *dhcpv6.Message, n int) []*dhcpv6.Message

// runExchange6 runs exchange6 against a server6 driven by h. slaac, when
// valid, makes it the stateless (Information-request) exchange.
func runExchange6(t *testing.T, o Options, bound time.Duration, slaac netip.Prefix, h handler6) (cfg *Config, err error, log []*dhcpv6.Message) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		cc := newPipeConn()
		sc := serverPipe(cc)
		var mu sync.Mutex
		counts := map[dhcpv6.MessageType]int{}
		srv, serr := server6.NewServer("", nil, func(conn net.PacketConn, peer net.Addr, m dhcpv6.DHCPv6) {
			msg, ok := m.(*dhcpv6.Message)
			if !ok {
				t.Errorf("client sent a relay message")
				return
			}
			mu.Lock()
			log = append(log, msg)
			n := counts[msg.MessageType]
			counts[msg.MessageType]++
			mu.Unlock()
			for _, r := range h(msg, n) {
				conn.WriteTo(r.ToBytes(), peer)
			}
		}, server6.WithConn(sc))
		if serr != nil {
			t.Fatal(serr)
		}
		served := make(chan struct{})
		go func() { srv.Serve(); close(served) }()
		nc, nerr := nclient6.NewWithConn(cc, clientMAC, nclient6.WithRetry(1), nclient6.WithTimeout(math.MaxInt64))
		if nerr != nil {
			t.Fatal(nerr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg, err = exchange6(ctx, nc, allServers6("eth0"), Link{Name: "eth0", Index: 2, MAC: clientMAC}, &o, o.Logger, slaac)
		cancel()
		nc.Close()
		srv.Close()
		<-served
		synctest.Wait()
	})
	return cfg, err, log
}

var (
	duidA = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	duidB = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
)

// answer6 builds an Advertise (for a Solicit) or a Reply from server to
// req, with an IA_NA holding addr when addr is set.
func answer6(t *testing.T, req *dhcpv6.Message, server dhcpv6.DUID, addr string, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	var m *dhcpv6.Message
	var err error
	if req.MessageType == dhcpv6.MessageTypeSolicit {
		m, err = dhcpv6.NewAdvertiseFromSolicit(req)
	} else {
		m, err = dhcpv6.NewReplyFromMessage(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	m.AddOption(dhcpv6.OptServerID(server))
	if addr != "" {
		ia := &dhcpv6.OptIANA{IaId: req.Options.OneIANA().IaId}
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr), PreferredLifetime: time.Hour, ValidLifetime: 2 * time.Hour})
		m.AddOption(ia)
	}
	for _, mod := range mods {
		mod(m)
	}
	return m
}

func withBootFileURL(s string) dhcpv6.Modifier {
	return func(d dhcpv6.DHCPv6) { d.AddOption(dhcpv6.OptBootFileURL(s)) }
}

// TestExchange6Stateful: Solicit, Advertise, Request, Reply; the address,
// DNS, search domain and the option-59 root-path land in the Config, and
// the client's messages carry what RFC 8415 and dnsmasq need.
func TestExchange6Stateful(t *testing.T) {
	cfg, err, log := runExchange6(t, Options{}, time.Minute, netip.Prefix{}, func(req *dhcpv6.Message, n int) []*dhcpv6.Message {
		mods := []dhcpv6.Modifier{withBootFileURL(rootPath6), dhcpv6.WithDNS(net.ParseIP("fd00:77::53")), dhcpv6.WithDomainSearchList("lab.test")}
		return []*dhcpv6.Message{answer6(t, req, duidA, "fd00:77::50", mods...)}
	})
	if err != nil {
		t.Fatalf("exchange6() = %v", err)
	}
	if cfg.Origin != OriginDHCPv6 || cfg.Address != netip.MustParsePrefix("fd00:77::50/128") {
		t.Errorf("Origin, Address = %v, %v; want dhcp6, fd00:77::50/128", cfg.Origin, cfg.Address)
	}
	if cfg.RootPath != (Sourced{rootPath6, SourceOption59}) {
		t.Errorf("RootPath = %v, want %q from option 59", cfg.RootPath, rootPath6)
	}
	if !slices.Equal(cfg.DNS, []netip.Addr{netip.MustParseAddr("fd00:77::53")}) || cfg.Domain != "lab.test" {
		t.Errorf("DNS, Domain = %v, %q; want [fd00:77::53], lab.test", cfg.DNS, cfg.Domain)
	}
	if cfg.LeaseTime != 2*time.Hour || !strings.Contains(cfg.ServerID, "02:00:00:00:00:01") {
		t.Errorf("LeaseTime, ServerID = %v, %q; want 2h, server A's DUID", cfg.LeaseTime, cfg.ServerID)
	}
	var typs []dhcpv6.MessageType
	for _, m := range log {
		typs = append(typs, m.MessageType)
	}
	if !slices.Equal(typs, []dhcpv6.MessageType{dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest}) {
		t.Fatalf("client sent %v, want Solicit, Request", typs)
	}
	sol, req := log[0], log[1]
	if !sol.IsOptionRequested(dhcpv6.OptionBootfileURL) || !sol.IsOptionRequested(dhcpv6.OptionDNSRecursiveNameServer) {
		t.Errorf("Solicit ORO = %v, want 59 and 23 in it", sol.Options.RequestedOptions())
	}
	if d, ok := sol.Options.ClientID().(*dhcpv6.DUIDLL); !ok || d.LinkLayerAddr.String() != clientMAC.String() {
		t.Errorf("Solicit client ID = %v, want DUID-LL of %s (stable across boots)", sol.Options.ClientID(), clientMAC)
	}
	if sol.Options.OneIANA() == nil || req.Options.OneIANA() == nil {
		t.Errorf("Solicit/Request without IA_NA")
	}
	if req.Options.ServerID() == nil || !req.Options.ServerID().Equal(duidA) {
		t.Errorf("Request server ID = %v, want %v", req.Options.ServerID(), duidA)
	}
	if sol.TransactionID == req.TransactionID {
		t.Errorf("Request reuses the Solicit's transaction ID")
	}
}

// TestExchange6HoldsAdvertiseWithoutBootFileURL: an address-only server
// answers first, the boot server a little later; the boot server wins.
func TestExchange6HoldsAdvertiseWithoutBootFileURL(t *testing.T) {
	cfg, err, log := runExchange6(t, Options{}, time.Minute, netip.Prefix{}, func(req *dhcpv6.Message, n int) []*dhcpv6.Message {
		switch req.MessageType {
		case dhcpv6.MessageTypeSolicit:
			return []*dhcpv6.Message{
				answer6(t, req, duidA, "fd00:77::60"),
				answer6(t, req, duidB, "fd00:77::50", withBootFileURL(rootPath6)),
			}
		case dhcpv6.MessageTypeRequest:
			if req.Options.ServerID().Equal(duidB) {
				return []*dhcpv6.Message{answer6(t, req, duidB, "fd00:77::50", withBootFileURL(rootPath6))}
			}
			return []*dhcpv6.Message{answer6(t, req, duidA, "fd00:77::60")}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("exchange6() = %v", err)
	}
	if cfg.Address.Addr() != netip.MustParseAddr("fd00:77::50") || cfg.RootPath.Source != SourceOption59 {
		t.Errorf("Address, RootPath = %v, %v; want the boot server's fd00:77::50 and option 59", cfg.Address, cfg.RootPath)
	}
	if len(log) != 2 {
		t.Errorf("client sent %d messages, want Solicit and one Request", len(log))
	}
}

// TestExchange6NoAddrsAvail: a server without addresses is ignored and the
// error says so when the bound ends.
func TestExchange6NoAddrsAvail(t *testing.T) {
	_, err, log := runExchange6(t, Options{}, 10*time.Second, netip.Prefix{}, func(req *dhcpv6.Message, n int) []*dhcpv6.Message {
		m := answer6(t, req, duidA, "")
		m.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: "pool empty"})
		return []*dhcpv6.Message{m}
	})
	if err == nil || !strings.Contains(err.Error(), "NoAddrsAvail") || !strings.Contains(err.Error(), "DHCPv6") {
		t.Errorf("exchange6() = %v, want an error naming NoAddrsAvail", err)
	}
	if len(log) < 3 {
		t.Errorf("client sent %d Solicits in 10 s, want it to retransmit", len(log))
	}
}

// TestExchange6Stateless: with an autoconfigured address only an
// Information-request goes out, and its Reply's option 59 is the root-path.
func TestExchange6Stateless(t *testing.T) {
	slaac := netip.MustParsePrefix("fd00:77::5054:ff:fe00:50/64")
	cfg, err, log := runExchange6(t, Options{IPv6: IPv6Auto}, time.Minute, slaac, func(req *dhcpv6.Message, n int) []*dhcpv6.Message {
		if req.MessageType != dhcpv6.MessageTypeInformationRequest {
			t.Errorf("client sent %v, want only Information-request", req.MessageType)
			return nil
		}
		if n == 0 {
			return nil // lost: the client must retransmit
		}
		return []*dhcpv6.Message{answer6(t, req, duidA, "", withBootFileURL(rootPath6+"\x00"))}
	})
	if err != nil {
		t.Fatalf("exchange6() = %v", err)
	}
	if cfg.Origin != OriginSLAAC || cfg.Address != slaac || cfg.RootPath.Value != rootPath6 {
		t.Errorf("Config = %v %v %v; want slaac %v with %q (the NUL dropped)", cfg.Origin, cfg.Address, cfg.RootPath, slaac, rootPath6)
	}
	if len(log) != 2 || log[0].Options.OneIANA() != nil {
		t.Errorf("client sent %d messages (IA_NA in the first: %v), want two Information-requests without IA_NA", len(log), log[0].Options.OneIANA() != nil)
	}
}

// TestConfigFromReplyOption59 decodes option 59 as the root-path with the
// boot's strict parser, as bootflow passes it.
func TestConfigFromReplyOption59(t *testing.T) {
	accept := func(s string) error { _, err := rootpath.Parse(s); return err }
	for _, tc := range []struct {
		name, url string
		want      string // the root-path, or "" for none
		warn      string // a warning it must give
	}{
		{"bracketed", rootPath6, rootPath6, ""},
		{"nul terminated", rootPath6 + "\x00", rootPath6, ""},
		{"ipv4 server", "iscsi:192.0.2.1::::iqn.2024-01.test:d", "iscsi:192.0.2.1::::iqn.2024-01.test:d", ""},
		{"unbracketed ipv6", "iscsi:fd00:77::1::3260:1:iqn.2024-01.test:d", "", "brackets"},
		{"tftp file", "tftp://[fd00:77::1]/pxelinux.0", "", "option 59"},
		{"empty", "", "", "option 59"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest}
			req.AddOption(dhcpv6.OptClientID(duidB))
			req.AddOption(&dhcpv6.OptIANA{})
			m := answer6(t, req, duidA, "fd00:77::50", withBootFileURL(tc.url))
			c, err := configFromReply(Link{Name: "eth0"}, m, accept)
			if err != nil {
				t.Fatalf("configFromReply() = %v", err)
			}
			if c.RootPath.Value != tc.want {
				t.Errorf("RootPath = %v, want %q", c.RootPath, tc.want)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(c.Warnings, "; "), tc.warn) {
				t.Errorf("Warnings = %q, want one mentioning %q", c.Warnings, tc.warn)
			}
		})
	}
}

// FuzzConfigFromReply decodes arbitrary DHCPv6 messages as Replies: no
// panic; a Config has an IPv6 /128 address or none, and a root-path only
// when the check accepts it.
func FuzzConfigFromReply(f *testing.F) {
	req := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeRequest}
	req.AddOption(dhcpv6.OptClientID(duidB))
	req.AddOption(&dhcpv6.OptIANA{})
	for _, mods := range [][]dhcpv6.Modifier{
		{withBootFileURL(rootPath6)},
		{withBootFileURL(rootPath6 + "\x00\xff"), dhcpv6.WithDNS(net.ParseIP("fd00::53"))},
		{dhcpv6.WithDomainSearchList("lab.test", "example.org")},
	} {
		m, err := dhcpv6.NewReplyFromMessage(req, mods...)
		if err != nil {
			f.Fatal(err)
		}
		ia := &dhcpv6.OptIANA{}
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP("fd00:77::50"), ValidLifetime: time.Hour})
		m.AddOption(ia)
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv6.MessageFromBytes(b)
		if err != nil {
			return
		}
		c, err := configFromReply(Link{Name: "eth0"}, m, AcceptISCSI)
		if err != nil {
			return
		}
		if c.Address.IsValid() && (!c.Address.Addr().Is6() || c.Address.Bits() != 128) {
			t.Errorf("Address = %v, want an IPv6 /128", c.Address)
		}
		if c.RootPath.Source != SourceNone && AcceptISCSI(c.RootPath.Value) != nil {
			t.Errorf("RootPath %q passed without the check", c.RootPath.Value)
		}
	})
}
