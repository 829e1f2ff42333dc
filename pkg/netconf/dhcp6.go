package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/insomniacslk/dhcp/iana"
)

// requestedOptions6 is the Option Request Option (RFC 8415 §21.7) of every
// message: DNS servers (RFC 3646), the domain search list, and the boot
// file URL (RFC 5970 §3.1), which carries the iSCSI root-path over DHCPv6
// as EDK2's IScsiDxe reads it (IScsiDhcp6.c: an "iscsi:" URI in option 59,
// an IPv6 server in brackets). dnsmasq, like ISC dhcpd, sends option 59
// only to clients that ask for it.
var requestedOptions6 = []dhcpv6.OptionCode{
	dhcpv6.OptionDNSRecursiveNameServer,
	dhcpv6.OptionDomainSearchList,
	dhcpv6.OptionBootfileURL,
}

// allServers6 is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), scoped
// to the link.
func allServers6(link string) *net.UDPAddr {
	return &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers, Port: dhcpv6.DefaultServerPort, Zone: link}
}

// client6 is one link's DHCPv6 exchange.
type client6 struct {
	link    Link
	o       *Options
	log     *slog.Logger
	c       *nclient6.Client
	dest    *net.UDPAddr
	duid    dhcpv6.DUID
	start   time.Time
	sent    int      // Solicits or Information-requests sent
	ignored []string // why replies were passed over (first few)
	lastErr error
}

// dora6 configures l over IPv6 (o.IPv6): link-local address, then stateful
// DHCPv6 (IPv6DHCP) or SLAAC plus an Information-request (IPv6Auto).
func dora6(ctx context.Context, l Link, o *Options, log *slog.Logger) (*Config, error) {
	if err := enableIPv6(l.Name, o.IPv6); err != nil {
		return nil, err
	}
	// DHCPv6 is sent from the link-local address (RFC 8415 §13.1), which
	// cannot be bound while duplicate address detection runs (about 1 s
	// after link-up).
	ll, err := waitAddr6(ctx, l, "link-local address", isLinkLocal)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: no usable IPv6 link-local address: %w", l.Name, context.Cause(ctx))
		}
		return nil, err
	}
	var slaac netip.Prefix
	if o.IPv6 == IPv6Auto {
		slaac, err = waitAddr6(ctx, l, "autoconfigured address", isAutoconf)
		if err != nil {
			if ctx.Err() != nil {
				if errors.Is(context.Cause(ctx), ErrSuperseded) {
					return nil, fmt.Errorf("%s: %w", l.Name, context.Cause(ctx))
				}
				return nil, fmt.Errorf("%s: %w (is a router advertising an autonomous prefix on this link? ip=dhcp6 uses DHCPv6 instead)", l.Name, ErrNoRouterAdvert)
			}
			return nil, err
		}
		log.Debug("dhcp6: autoconfigured address", "link", l.Name, "address", slaac.String())
	}
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: ll.Addr().AsSlice(), Port: dhcpv6.DefaultClientPort, Zone: l.Name})
	if err != nil {
		return nil, fmt.Errorf("%s: open DHCPv6 socket on %s: %w", l.Name, ll.Addr(), err)
	}
	nc, err := nclient6.NewWithConn(conn, l.MAC,
		// Retransmission is ours, as for DHCPv4.
		nclient6.WithRetry(1), nclient6.WithTimeout(math.MaxInt64))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: DHCPv6 client: %w", l.Name, err)
	}
	defer nc.Close()
	c, err := exchange6(ctx, nc, allServers6(l.Name), l, o, log, slaac)
	if err != nil {
		return nil, err
	}
	// Routes come from router advertisements only (DHCPv6 has no router
	// option): give a late one a moment, since without its on-link prefix
	// a DHCPv6 address (a /128) reaches no portal.
	// The wait is up to 10 s for the prefix (routers advertise
	// unsolicited only every few minutes, and a loaded machine answers
	// the solicitation late), 3 s once a default router is known, through
	// which a portal is reachable anyway.
	wait := 3 * time.Second
	if c.Origin == OriginDHCPv6 {
		start := time.Now()
		for onLinkBits(l, c.Address.Addr()) == 128 && ctx.Err() == nil {
			waited := time.Since(start)
			if waited > 10*time.Second || waited > wait && defaultRouter6(l).IsValid() {
				break
			}
			time.Sleep(addrPoll)
		}
		c.Address = netip.PrefixFrom(c.Address.Addr(), onLinkBits(l, c.Address.Addr()))
		if c.Address.Bits() == 128 {
			c.Warnings = append(c.Warnings, "no router advertisement gave an on-link prefix for the DHCPv6 address: portals are reachable only through a default router")
		}
		wait = 0
	}
	c.Gateway = waitDefaultRouter(ctx, l, wait)
	return c, nil
}

// exchange6 runs the DHCPv6 exchange for l over nc to dest (tests pass a
// client on an in-memory connection). With a valid slaac address it only
// asks for configuration (Information-request); otherwise it runs
// Solicit–Advertise–Request–Reply for an address.
func exchange6(ctx context.Context, nc *nclient6.Client, dest *net.UDPAddr, l Link, o *Options, log *slog.Logger, slaac netip.Prefix) (*Config, error) {
	c := &client6{
		link: l, o: o, log: log, c: nc, dest: dest, start: time.Now(),
		// DUID-LL (RFC 8415 §11.4): the same on every boot of the same
		// NIC, so the server's binding and its log name the machine; the
		// DUID-LLT that dhcpv6.NewSolicit uses changes with the clock.
		duid: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: l.MAC},
	}
	if slaac.IsValid() {
		return c.stateless(ctx, slaac)
	}
	for {
		adv, err := c.solicit(ctx)
		if err != nil {
			return nil, err
		}
		reply, err := c.request(ctx, adv)
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.ctxErr(ctx, err)
			}
			c.lastErr = err
			log.Debug("dhcp6: back to Solicit", "link", l.Name, "err", err)
			if werr := sleepCtx(ctx, retransmitDelay(0, c.base(), c.base(), nil)); werr != nil {
				return nil, c.ctxErr(ctx, err)
			}
			continue
		}
		cfg, err := configFromReply(l, reply, o.accept())
		if err != nil {
			c.lastErr = fmt.Errorf("%s: DHCPv6 Reply from %s: %w", l.Name, reply.Options.ServerID(), err)
			continue
		}
		log.Debug("dhcp6: lease", "link", l.Name, "config", cfg)
		return cfg, nil
	}
}

// stateless asks for configuration only (RFC 8415 §18.2.6) for an address
// the kernel autoconfigured. With RootPathOptional an unanswered request
// costs at most a few retransmissions: the address works without it.
func (c *client6) stateless(ctx context.Context, slaac netip.Prefix) (*Config, error) {
	bare := &Config{Link: c.link, Origin: OriginSLAAC, Address: slaac}
	if c.o.RootPath == RootPathOptional {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 4*c.base())
		defer cancel()
	}
	m := c.newMessage(dhcpv6.MessageTypeInformationRequest)
	reply, err := c.sendUntil(ctx, m, func(p *dhcpv6.Message) bool { return p.MessageType == dhcpv6.MessageTypeReply })
	if err != nil {
		if c.o.RootPath == RootPathOptional && errors.Is(err, context.DeadlineExceeded) {
			bare.Warnings = append(bare.Warnings, "no DHCPv6 server answered the Information-request: no DNS servers or boot file URL")
			return bare, nil
		}
		if ctx.Err() != nil {
			return nil, c.ctxErr(ctx, ErrNoOffer)
		}
		return nil, err
	}
	cfg, err := configFromReply(c.link, reply, c.o.accept())
	if err != nil {
		return nil, fmt.Errorf("%s: DHCPv6 Reply: %w", c.link.Name, err)
	}
	cfg.Address, cfg.Origin, cfg.LeaseTime = slaac, OriginSLAAC, 0
	return cfg, nil
}

func (c *client6) base() time.Duration     { return cmpOr(c.o.Retransmit, DefaultRetransmit) }
func (c *client6) maxDelay() time.Duration { return cmpOr(c.o.MaxRetransmit, DefaultMaxRetransmit) }

// newMessage builds a client message with a transaction ID from math/rand
// (see msg.go: dhcpv6.NewMessage draws it from crypto/rand, which can
// block a firmware-stage boot), the Client Identifier, the Option Request
// Option and an Elapsed Time of zero.
func (c *client6) newMessage(t dhcpv6.MessageType) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: t}
	x := rand.Uint32()
	m.TransactionID = dhcpv6.TransactionID{byte(x >> 16), byte(x >> 8), byte(x)}
	m.AddOption(dhcpv6.OptClientID(c.duid))
	m.AddOption(dhcpv6.OptRequestedOption(requestedOptions6...))
	m.AddOption(dhcpv6.OptElapsedTime(0))
	return m
}

// elapsed updates the Elapsed Time option (RFC 8415 §21.9: hundredths of a
// second since the exchange began, saturating at 0xffff).
func (c *client6) elapsed(m *dhcpv6.Message) {
	d := min(time.Since(c.start), 0xffff*10*time.Millisecond)
	m.UpdateOption(dhcpv6.OptElapsedTime(d))
}

// sendUntil sends m with RFC 8415 §15 retransmission (doubling from
// Options.Retransmit, randomised) until match accepts a reply or ctx ends.
func (c *client6) sendUntil(ctx context.Context, m *dhcpv6.Message, match func(*dhcpv6.Message) bool) (*dhcpv6.Message, error) {
	for n := 0; ; n++ {
		c.elapsed(m)
		actx, cancel := context.WithTimeout(ctx, retransmitDelay(n, c.base(), c.maxDelay(), nil))
		c.sent++
		p, err := c.c.SendAndRead(actx, c.dest, m, match)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			c.lastErr = fmt.Errorf("%s: send DHCPv6 %s: %w", c.link.Name, m.MessageType, err)
			<-actx.Done()
		}
		cancel()
		switch {
		case err == nil:
			return p, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
	}
}

// solicit sends Solicits until a usable Advertise arrives (RFC 8415
// §18.2.1). As for DHCPv4, with RootPathRequired an Advertise without a
// usable boot file URL is held back for one retransmission interval, so
// that a boot server answering after an address-only server still wins.
func (c *client6) solicit(ctx context.Context) (*dhcpv6.Message, error) {
	m := c.newMessage(dhcpv6.MessageTypeSolicit)
	iaid := [4]byte{}
	copy(iaid[:], c.link.MAC[max(0, len(c.link.MAC)-4):])
	m.AddOption(&dhcpv6.OptIANA{IaId: iaid})
	var held []*dhcpv6.Message
	match := func(p *dhcpv6.Message) bool {
		if p.MessageType != dhcpv6.MessageTypeAdvertise {
			return false
		}
		if why := unusableAdvertise(p); why != "" {
			c.ignore(fmt.Sprintf("Advertise from %s: %s", p.Options.ServerID(), why))
			return false
		}
		if c.o.RootPath == RootPathRequired && !hasBootFileURL(p, c.o.accept()) {
			if len(held) < 4 {
				held = append(held, p)
			}
			return false
		}
		return true
	}
	for n := 0; ; n++ {
		c.elapsed(m)
		actx, cancel := context.WithTimeout(ctx, retransmitDelay(n, c.base(), c.maxDelay(), nil))
		c.sent++
		p, err := c.c.SendAndRead(actx, c.dest, m, match)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			c.lastErr = fmt.Errorf("%s: send DHCPv6 Solicit: %w", c.link.Name, err)
			<-actx.Done()
		}
		cancel()
		switch {
		case err == nil:
			return p, nil
		case ctx.Err() != nil:
			if len(held) > 0 {
				c.ignore(fmt.Sprintf("%d Advertise(s) without a boot file URL (option 59)", len(held)))
			}
			return nil, c.ctxErr(ctx, ErrNoOffer)
		case len(held) > 0:
			return held[0], nil
		}
	}
}

// request sends Requests for the Advertise's address (RFC 8415 §18.2.2)
// until the server replies, at most maxRequests times.
func (c *client6) request(ctx context.Context, adv *dhcpv6.Message) (*dhcpv6.Message, error) {
	m := c.newMessage(dhcpv6.MessageTypeRequest)
	sid := adv.GetOneOption(dhcpv6.OptionServerID)
	m.AddOption(sid)
	m.AddOption(adv.Options.OneIANA())
	match := func(p *dhcpv6.Message) bool {
		if p.MessageType != dhcpv6.MessageTypeReply {
			return false
		}
		got := p.GetOneOption(dhcpv6.OptionServerID)
		return got != nil && string(got.ToBytes()) == string(sid.ToBytes())
	}
	for n := range maxRequests {
		c.elapsed(m)
		actx, cancel := context.WithTimeout(ctx, retransmitDelay(n, c.base(), c.maxDelay(), nil))
		p, err := c.c.SendAndRead(actx, c.dest, m, match)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w from DHCPv6 server %s", c.link.Name, ErrNoAck, adv.Options.ServerID())
		}
		if err != nil {
			continue
		}
		if why := unusableAdvertise(p); why != "" {
			return nil, fmt.Errorf("%s: %w from DHCPv6 server %s: %s", c.link.Name, ErrNak, adv.Options.ServerID(), why)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s: %w from DHCPv6 server %s after %d Requests", c.link.Name, ErrNoAck, adv.Options.ServerID(), maxRequests)
}

func (c *client6) ignore(why string) {
	c.log.Debug("dhcp6: ignored", "link", c.link.Name, "why", why)
	if len(c.ignored) < 4 {
		c.ignored = append(c.ignored, why)
	}
}

// ctxErr turns the end of ctx into the link's error, as client.ctxErr does
// for DHCPv4.
func (c *client6) ctxErr(ctx context.Context, what error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrSuperseded) {
		return fmt.Errorf("%s: %w", c.link.Name, cause)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: dhcp6: %w", c.link.Name, context.Cause(ctx))
	}
	elapsed := time.Since(c.start).Round(100 * time.Millisecond)
	if errors.Is(what, ErrNoOffer) && c.lastErr != nil {
		what = c.lastErr
	}
	detail := []string{fmt.Sprintf("%d DHCPv6 message(s) sent", c.sent)}
	if len(c.ignored) > 0 {
		detail = append(detail, "ignored: "+strings.Join(c.ignored, ", "))
	}
	if errors.Is(what, ErrNoOffer) {
		return fmt.Errorf("%s: %w (no DHCPv6 Advertise or Reply) within %v (%s; is a DHCPv6 server on this link?)", c.link.Name, what, elapsed, strings.Join(detail, "; "))
	}
	return fmt.Errorf("%w; gave up after %v (%s)", what, elapsed, strings.Join(detail, "; "))
}

// unusableAdvertise says why an Advertise or Reply gives no address, or "":
// a status code other than Success at the top or in the IA_NA (RFC 8415
// §18.2.9, §18.2.10.1: NoAddrsAvail), or an IA_NA without an address.
func unusableAdvertise(p *dhcpv6.Message) string {
	if s := p.Options.Status(); s != nil && s.StatusCode != iana.StatusSuccess {
		return fmt.Sprintf("status %s %q", s.StatusCode, s.StatusMessage)
	}
	ia := p.Options.OneIANA()
	if ia == nil {
		return "no IA_NA"
	}
	if s := ia.Options.Status(); s != nil && s.StatusCode != iana.StatusSuccess {
		return fmt.Sprintf("IA_NA status %s %q", s.StatusCode, s.StatusMessage)
	}
	a := ia.Options.OneAddress()
	if a == nil {
		return "IA_NA without an address"
	}
	if ip, ok := netip.AddrFromSlice(a.IPv6Addr); !ok || !ip.Is6() || ip.Is4In6() || !ip.IsGlobalUnicast() {
		return fmt.Sprintf("address %v is not a global IPv6 unicast address", a.IPv6Addr)
	}
	return ""
}

// hasBootFileURL reports whether p carries an option 59 that accept takes.
func hasBootFileURL(p *dhcpv6.Message, accept func(string) error) bool {
	o := p.GetOneOption(dhcpv6.OptionBootfileURL)
	if o == nil {
		return false
	}
	s, err := decodeText(o.ToBytes())
	return err == nil && (accept == nil || accept(s) == nil)
}

// configFromReply decodes a DHCPv6 Reply into a Config for link: the IA_NA
// address (a /128 until the router advertisement's prefix is known: RFC
// 8415 §21.6 gives addresses no prefix length), DNS servers (option 23),
// the first search domain (option 24) and the root-path from option 59.
// A Reply to an Information-request has no IA_NA: the caller supplies the
// address. Options that do not decode become Warnings.
func configFromReply(link Link, reply *dhcpv6.Message, accept func(string) error) (*Config, error) {
	c := &Config{Link: link, Origin: OriginDHCPv6}
	if sid := reply.Options.ServerID(); sid != nil {
		c.ServerID = sid.String()
	}
	if reply.Options.OneIANA() != nil {
		if why := unusableAdvertise(reply); why != "" {
			return nil, errors.New(why)
		}
		a := reply.Options.OneIANA().Options.OneAddress()
		ip, _ := netip.AddrFromSlice(a.IPv6Addr)
		c.Address = netip.PrefixFrom(ip, 128)
		c.LeaseTime = a.ValidLifetime
		if a.ValidLifetime == 0xffffffff*time.Second {
			c.LeaseTime = Infinite
		}
	}
	for _, d := range reply.Options.DNS() {
		if a, ok := netip.AddrFromSlice(d); ok {
			c.DNS = append(c.DNS, a)
		}
	}
	if l := reply.Options.DomainSearchList(); l != nil && len(l.Labels) > 0 {
		c.Domain = strings.TrimSuffix(l.Labels[0], ".")
	}
	if o := reply.GetOneOption(dhcpv6.OptionBootfileURL); o != nil {
		s, err := decodeText(o.ToBytes())
		if err == nil && accept != nil {
			if err = accept(s); err != nil {
				err = fmt.Errorf("%q: %w", s, err)
			}
		}
		if err != nil {
			c.Warnings = append(c.Warnings, fmt.Sprintf("root-path from %s not usable: %v", SourceOption59, err))
		} else {
			c.RootPath = Sourced{Value: s, Source: SourceOption59}
		}
	}
	return c, nil
}
