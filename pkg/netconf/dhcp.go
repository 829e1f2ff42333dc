package netconf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"
)

// Errors a link's DHCP attempt wraps, for callers that branch on the cause.
var (
	// ErrNoOffer: no acceptable DHCPOFFER arrived within the bound.
	ErrNoOffer = errors.New("no DHCPOFFER")
	// ErrNoAck: offers arrived, but no DHCPACK for the DHCPREQUEST.
	ErrNoAck = errors.New("no DHCPACK")
	// ErrNak: the server refused the DHCPREQUEST (and kept refusing).
	ErrNak = errors.New("DHCPNAK")
	// ErrNoRootPath: the lease carried no usable root-path (option 17 or
	// 43.201) and the caller required one.
	ErrNoRootPath = errors.New("no usable root-path in the lease")
	// ErrSuperseded: the link stopped because another link won.
	ErrSuperseded = errors.New("stopped")
)

// requestedOptions is the Parameter Request List (RFC 2132 §9.8). dnsmasq
// and ISC dhcpd send an option only if the client asks for it (unless the
// server forces it), so everything the boot reads must be here: u-root's
// dhclient leaves out 17 and never sees a root-path from such servers.
var requestedOptions = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask,                   // 1
	dhcpv4.OptionRouter,                       // 3
	dhcpv4.OptionDomainNameServer,             // 6
	dhcpv4.OptionHostName,                     // 12
	dhcpv4.OptionDomainName,                   // 15
	dhcpv4.OptionRootPath,                     // 17
	dhcpv4.OptionInterfaceMTU,                 // 26
	dhcpv4.OptionVendorSpecificInformation,    // 43
	dhcpv4.OptionClasslessStaticRoute,         // 121
	dhcpv4.GenericOptionCode(optInitiatorIQN), // 203
}

// maxMessageSize is sent as option 57 (RFC 2132 §9.10): the largest DHCP
// message we accept, counted as the IP datagram (RFC 2131 §2's 576-octet
// minimum is one). A larger reply would be fragmented, and the raw socket
// does not reassemble fragments.
const maxMessageSize = 1500

// maxRequests is how many times a DHCPREQUEST is sent before the client
// goes back to INIT and DISCOVERs again (RFC 2131 §4.4.1 leaves the count
// to the client).
const maxRequests = 4

// linkResult is the outcome of one link's carrier wait and DHCP.
type linkResult struct {
	i       int
	report  LinkReport
	cfg     *Config
	wasDown bool
}

// Acquire gets a DHCPv4 lease on every link in parallel: each link is set
// up, waits for carrier (o.CarrierTimeout), then DISCOVERs with RFC 2131
// §4.1 retransmission, all within o.DHCPTimeout and ctx.
//
// With RootPathRequired the first lease carrying a root-path that
// o.AcceptRootPath accepts wins; with RootPathOptional the first lease
// wins. The other links are stopped at once. Their leases, if any, are
// dropped rather than released: nothing was configured from them, the
// server keeps the binding until it expires, and the OS, which DHCPs again
// after kexec, gets the same address back for the same MAC (RFC 2131
// §4.3.1), so a DHCPRELEASE would only churn the server's pool. Links
// Acquire set up and that did not win are set down again.
//
// The winning Config is not yet applied: call Apply. On failure the error
// is an *Error that names every link and what happened to it; with
// RootPathRequired and only address-only leases, it wraps ErrNoRootPath and
// carries those leases in Error.Leases (their links stay up).
func Acquire(ctx context.Context, links []Link, o Options) (*Config, error) {
	if len(links) == 0 {
		return nil, fmt.Errorf("dhcp: %w", ErrNoLinks)
	}
	log := o.logger()
	ctx, cancel := context.WithTimeout(ctx, o.dhcpTimeout())
	defer cancel()
	race, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	results := make(chan linkResult)
	for i, l := range links {
		go func() {
			r := runLink(race, l, &o, log)
			r.i = i
			results <- r
		}()
	}

	reports := make([]LinkReport, len(links))
	var winner *Config
	var fallback []*Config
	keepUp := make([]bool, len(links))
	wasDown := make([]bool, len(links))
	for range links {
		r := <-results
		wasDown[r.i] = r.wasDown
		switch {
		case r.cfg == nil:
		case winner != nil:
			r.report.Err = fmt.Errorf("%s: lease %s dropped: %w (%s won)", r.report.Link.Name, r.cfg.Address, ErrSuperseded, winner.Link.Name)
		case o.RootPath == RootPathOptional || r.cfg.RootPath.Source != SourceNone:
			winner = r.cfg
			keepUp[r.i] = true
			r.cfg.Timings.Carrier = r.report.Carrier
			r.cfg.Timings.DHCP = r.report.DHCP
			stop(fmt.Errorf("%w: %s won", ErrSuperseded, r.report.Link.Name))
			log.Debug("dhcp: link won", "link", r.report.Link.Name, "address", r.cfg.Address.String(), "root_path", r.cfg.RootPath.String())
		default:
			why := "no option 17 or 43.201"
			if o.IPv6 != IPv4Only {
				why = "no DHCPv6 option 59"
			}
			if len(r.cfg.Warnings) > 0 {
				why = strings.Join(r.cfg.Warnings, "; ")
			}
			from := r.cfg.Server.String()
			if r.cfg.ServerID != "" {
				from = r.cfg.ServerID
			}
			r.report.Err = fmt.Errorf("%s: lease %s from %s: %w (%s)", r.report.Link.Name, r.cfg.Address, from, ErrNoRootPath, why)
			r.cfg.Timings.Carrier = r.report.Carrier
			r.cfg.Timings.DHCP = r.report.DHCP
			fallback = append(fallback, r.cfg)
			keepUp[r.i] = true
		}
		reports[r.i] = r.report
	}
	if winner != nil {
		for i := range keepUp {
			keepUp[i] = links[i].Index == winner.Link.Index
		}
	}
	for i, l := range links {
		if wasDown[i] && !keepUp[i] {
			if err := setDown(l); err != nil {
				log.Warn("dhcp: could not set losing link down", "link", l.Name, "err", err)
			}
		}
	}
	for _, c := range append([]*Config{winner}, fallback...) {
		if c == nil {
			continue
		}
		c.Links = reports
		for i, l := range links {
			if l.Index == c.Link.Index {
				c.raised = wasDown[i]
			}
		}
	}
	if winner != nil {
		return winner, nil
	}
	return nil, &Error{Op: "dhcp", Links: reports, Leases: fallback}
}

// Error is the failure of stage 3 on every candidate link. Its message
// names each link and what happened there; errors.Is sees the per-link
// causes (ErrNoCarrier, ErrNoOffer, ErrNak, ErrNoRootPath…).
type Error struct {
	Op    string // "dhcp" or "static"
	Links []LinkReport
	// Leases are leases without a usable root-path obtained while
	// RootPathRequired was in force, first obtained first; not applied.
	Leases []*Config
}

// Error lists the links: "dhcp: no usable lease on 2 links: eth0: …; eth1: …"
// or "static: no carrier on 2 links: …".
func (e *Error) Error() string {
	var sb strings.Builder
	sb.WriteString(e.Op)
	what := "no usable lease"
	if e.Op == "static" {
		what = "no carrier"
	}
	fmt.Fprintf(&sb, ": %s on %d link", what, len(e.Links))
	if len(e.Links) != 1 {
		sb.WriteByte('s')
	}
	for i, r := range e.Links {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		sb.WriteString(r.String())
	}
	return sb.String()
}

// Unwrap returns the per-link errors.
func (e *Error) Unwrap() []error {
	var errs []error
	for _, r := range e.Links {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errs
}

// runLink sets the link up, waits for carrier and runs DHCP on it.
func runLink(ctx context.Context, l Link, o *Options, log *slog.Logger) linkResult {
	r := linkResult{report: LinkReport{Link: l}}
	wasDown, err := setUp(l)
	r.wasDown = wasDown
	if err != nil {
		r.report.Err = err
		return r
	}
	r.report.Carrier, err = waitCarrier(ctx, l, o.carrierTimeout())
	if err != nil {
		r.report.Err = err
		log.Debug("dhcp: link without carrier", "link", l.Name, "err", err)
		return r
	}
	log.Debug("dhcp: carrier", "link", l.Name, "after", r.report.Carrier)
	start := time.Now()
	do := dora
	if o.IPv6 != IPv4Only {
		do = dora6
	}
	cfg, err := do(ctx, l, o, log)
	r.report.DHCP = time.Since(start)
	if err != nil {
		r.report.Err = err
		return r
	}
	r.cfg = cfg
	return r
}

// client is one link's DHCP exchange.
type client struct {
	link      Link
	o         *Options
	log       *slog.Logger
	c         *nclient4.Client
	mods      []dhcpv4.Modifier
	start     time.Time
	discovers int
	offers    int      // offers that led to a DHCPREQUEST
	ignored   []string // why offers were passed over (first few)
	lastErr   error    // last NAK or missing ACK, for the final message
}

// dora runs DISCOVER–OFFER–REQUEST–ACK (RFC 2131 §3.1) on l until it gets
// an ACK or ctx ends, going back to DISCOVER after a NAK or unanswered
// REQUESTs as §4.4.1 says.
func dora(ctx context.Context, l Link, o *Options, log *slog.Logger) (*Config, error) {
	nc, err := nclient4.New(l.Name,
		nclient4.WithHWAddr(l.MAC),
		// Retransmission is ours (below), so the client gets one try
		// per call and a timeout the per-try context always beats.
		nclient4.WithRetry(1),
		nclient4.WithTimeout(math.MaxInt64),
		nclient4.WithLogger(nclientLogger{log: log, link: l.Name}))
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("%s: open DHCP socket: %w (the kernel lacks CONFIG_PACKET)", l.Name, err)
		}
		return nil, fmt.Errorf("%s: open DHCP socket: %w", l.Name, err)
	}
	defer nc.Close()
	return exchange(ctx, nc, l, o, log)
}

// exchange runs the DHCP exchange for l over nc (tests pass a client on an
// in-memory connection).
func exchange(ctx context.Context, nc *nclient4.Client, l Link, o *Options, log *slog.Logger) (*Config, error) {
	c := &client{
		link: l, o: o, log: log, c: nc, start: time.Now(),
		mods: []dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier(o.vendorClass())),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(maxMessageSize)),
			dhcpv4.WithRequestedOptions(requestedOptions...),
		},
	}
	if o.Hostname != "" {
		// RFC 2132 §3.14; RFC 2131 §4.4.1 allows it in DISCOVER and
		// REQUEST alike, and a server that registers names in DNS may
		// read either.
		c.mods = append(c.mods, dhcpv4.WithOption(dhcpv4.OptHostName(o.Hostname)))
	}
	for {
		offer, err := c.discover(ctx)
		if err != nil {
			return nil, err
		}
		c.offers++
		ack := offer
		if offer.MessageType() != dhcpv4.MessageTypeAck {
			ack, err = c.request(ctx, offer)
		} else {
			log.Debug("dhcp: rapid commit (RFC 4039): DHCPACK answered the DISCOVER", "link", l.Name, "server", offer.ServerIdentifier())
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, c.ctxErr(ctx, err)
			}
			c.lastErr = err
			log.Debug("dhcp: back to DISCOVER", "link", l.Name, "err", err)
			if errors.Is(err, ErrNak) {
				// Don't storm a server that offers and then refuses.
				if werr := sleepCtx(ctx, retransmitDelay(0, c.base(), c.base(), nil)); werr != nil {
					return nil, c.ctxErr(ctx, err)
				}
			}
			continue
		}
		cfg, err := configFromACK(l, ack, o.accept())
		if err != nil {
			c.lastErr = fmt.Errorf("%s: DHCPACK from %v: %w", l.Name, ack.ServerIdentifier(), err)
			continue
		}
		log.Debug("dhcp: lease", "link", l.Name, "config", cfg)
		return cfg, nil
	}
}

func (c *client) base() time.Duration { return cmpOr(c.o.Retransmit, DefaultRetransmit) }

func (c *client) maxDelay() time.Duration { return cmpOr(c.o.MaxRetransmit, DefaultMaxRetransmit) }

func (c *client) secs() uint16 {
	return uint16(min(time.Since(c.start)/time.Second, math.MaxUint16))
}

// discover sends DHCPDISCOVERs until an acceptable offer arrives. With
// RootPathRequired an offer without a usable root-path is held back until
// the current retransmission interval ends, so that a boot server that
// answers a little after the site's address-only server still wins
// (RFC 2131 §4.4.1 lets the client wait for several offers).
func (c *client) discover(ctx context.Context) (*dhcpv4.DHCPv4, error) {
	// RFC 4039 §4: a DISCOVER carrying Rapid Commit (option 80, empty)
	// lets a server that allows it answer with a committed DHCPACK at once,
	// saving the REQUEST round trip; a server that does not ignores the
	// option and OFFERs as usual. Only the DISCOVER carries it.
	disc := newDiscover(c.link.MAC, append(slices.Clone(c.mods), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil)))...)
	var held []*dhcpv4.DHCPv4
	match := func(p *dhcpv4.DHCPv4) bool {
		switch p.MessageType() {
		case dhcpv4.MessageTypeOffer:
		case dhcpv4.MessageTypeAck:
			// RFC 4039 §4: only an ACK that carries Rapid Commit
			// answers a DISCOVER. One without a usable root-path
			// while one is required is ignored like such an offer
			// would be, without holding it (the server has
			// committed the lease; it expires unused).
			if !p.Options.Has(dhcpv4.OptionRapidCommit) {
				return false
			}
			if why := c.unusableOffer(p); why != "" {
				c.ignore(fmt.Sprintf("rapid-commit ack from %v: %s", p.ServerIdentifier(), why))
				return false
			}
			if c.o.RootPath == RootPathRequired && !offerHasRootPath(p, c.o.accept()) {
				c.ignore(fmt.Sprintf("rapid-commit ack from %v: no usable root-path", p.ServerIdentifier()))
				return false
			}
			return true
		default:
			return false
		}
		if why := c.unusableOffer(p); why != "" {
			c.ignore(fmt.Sprintf("offer from %v: %s", p.ServerIdentifier(), why))
			return false
		}
		if c.o.RootPath == RootPathRequired && !offerHasRootPath(p, c.o.accept()) {
			if len(held) < 4 {
				held = append(held, p)
			}
			c.log.Debug("dhcp: holding offer without root-path", "link", c.link.Name, "server", p.ServerIdentifier(), "yiaddr", p.YourIPAddr)
			return false
		}
		return true
	}
	for n := 0; ; n++ {
		disc.NumSeconds = c.secs()
		wait := retransmitDelay(n, c.base(), c.maxDelay(), nil)
		actx, cancel := context.WithTimeout(ctx, wait)
		c.discovers++
		p, err := c.c.SendAndRead(actx, nclient4.DefaultServers, disc, match)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			// Not a timeout (e.g. ENETDOWN while the link flaps): wait
			// out this interval and try again.
			c.lastErr = fmt.Errorf("%s: send DHCPDISCOVER: %w", c.link.Name, err)
			<-actx.Done()
		}
		cancel()
		switch {
		case err == nil:
			return p, nil
		case ctx.Err() != nil:
			if len(held) > 0 && context.Cause(ctx) == ctx.Err() {
				// The overall bound ends now; an address-only lease is
				// still better than none, but there is no time left to
				// REQUEST it. Report what was held.
				c.ignore(fmt.Sprintf("%d offer(s) without root-path", len(held)))
			}
			return nil, c.ctxErr(ctx, ErrNoOffer)
		case len(held) > 0:
			c.log.Debug("dhcp: taking offer without root-path", "link", c.link.Name, "server", held[0].ServerIdentifier())
			return held[0], nil
		}
	}
}

// unusableOffer says why an offer cannot be requested, or "".
func (c *client) unusableOffer(p *dhcpv4.DHCPv4) string {
	yi, ok := netip.AddrFromSlice(p.YourIPAddr.To4())
	if !ok || yi.IsUnspecified() || yi.IsMulticast() {
		return fmt.Sprintf("no usable yiaddr (%v)", p.YourIPAddr)
	}
	// RFC 2131 table 3: an offer MUST carry the server identifier, and the
	// REQUEST names the chosen server by it.
	if p.ServerIdentifier() == nil {
		return "no server identifier (option 54)"
	}
	return ""
}

func (c *client) ignore(why string) {
	c.log.Debug("dhcp: ignored", "link", c.link.Name, "why", why)
	if len(c.ignored) < 4 {
		c.ignored = append(c.ignored, why)
	}
}

// offerHasRootPath reports whether an offer carries a root-path that
// accept takes, in either place configFromACK looks.
func offerHasRootPath(p *dhcpv4.DHCPv4, accept func(string) error) bool {
	ok := func(b []byte) bool {
		s, err := decodeText(b)
		return err == nil && (accept == nil || accept(s) == nil)
	}
	if v := p.Options.Get(dhcpv4.OptionRootPath); v != nil && ok(v) {
		return true
	}
	if v := p.Options.Get(dhcpv4.OptionVendorSpecificInformation); v != nil {
		if vo, err := decodeVendorOptions(v); err == nil {
			if rp, found := vo.get(subRootPath); found && ok(rp) {
				return true
			}
		}
	}
	return false
}

// request sends DHCPREQUESTs for offer (SELECTING state, RFC 2131 §4.3.2)
// until the offering server ACKs or NAKs, at most maxRequests times.
func (c *client) request(ctx context.Context, offer *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	req := newRequest(offer, c.mods...)
	sid := offer.ServerIdentifier()
	match := nclient4.IsAll(nclient4.IsCorrectServer(sid),
		nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
	for n := range maxRequests {
		req.NumSeconds = c.secs()
		actx, cancel := context.WithTimeout(ctx, retransmitDelay(n, c.base(), c.maxDelay(), nil))
		p, err := c.c.SendAndRead(actx, nclient4.DefaultServers, req, match)
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			c.lastErr = fmt.Errorf("%s: send DHCPREQUEST: %w", c.link.Name, err)
			<-actx.Done()
		}
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w from %v for %v", c.link.Name, ErrNoAck, sid, offer.YourIPAddr)
		}
		if err != nil {
			continue
		}
		if p.MessageType() == dhcpv4.MessageTypeNak {
			msg := p.Message()
			if msg == "" {
				msg = "no reason given"
			}
			return nil, fmt.Errorf("%s: %w from %v for %v: %q", c.link.Name, ErrNak, sid, offer.YourIPAddr, msg)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s: %w from %v for %v after %d DHCPREQUESTs", c.link.Name, ErrNoAck, sid, offer.YourIPAddr, maxRequests)
}

// ctxErr turns the end of ctx into the link's error: the reason another
// link won, or a timeout that says what was (not) received.
func (c *client) ctxErr(ctx context.Context, what error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrSuperseded) {
		return fmt.Errorf("%s: %w", c.link.Name, cause)
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s: dhcp: %w", c.link.Name, context.Cause(ctx))
	}
	elapsed := time.Since(c.start).Round(100 * time.Millisecond)
	var detail []string
	if errors.Is(what, ErrNoOffer) && c.lastErr != nil {
		// Offers came and led nowhere: the last NAK/no-ACK is the story.
		what = c.lastErr
	}
	detail = append(detail, fmt.Sprintf("%d DHCPDISCOVER(s) sent", c.discovers))
	if c.offers > 0 {
		detail = append(detail, fmt.Sprintf("%d offer(s) requested", c.offers))
	}
	if len(c.ignored) > 0 {
		detail = append(detail, "ignored: "+strings.Join(c.ignored, ", "))
	}
	if errors.Is(what, ErrNoOffer) {
		return fmt.Errorf("%s: %w within %v (%s; is a DHCP server on this link?)", c.link.Name, what, elapsed, strings.Join(detail, "; "))
	}
	return fmt.Errorf("%w; gave up after %v (%s)", what, elapsed, strings.Join(detail, "; "))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nclientLogger sends nclient4's message traces to slog at debug level.
type nclientLogger struct {
	log  *slog.Logger
	link string
}

func (n nclientLogger) PrintMessage(prefix string, m *dhcpv4.DHCPv4) {
	if !n.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	n.log.Debug("dhcp: "+prefix, "link", n.link, "type", m.MessageType().String(), "xid", m.TransactionID.String(), "msg", m.String())
}

func (n nclientLogger) Printf(format string, v ...any) {
	n.log.Debug("dhcp: "+fmt.Sprintf(format, v...), "link", n.link)
}
