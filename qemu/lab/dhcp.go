package lab

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DHCPConfig says what the lab's DHCP server (dnsmasq) hands out.
type DHCPConfig struct {
	// RootPath is DHCP option 17 (RFC 2132 §3.19), the RFC 4173 iSCSI
	// root-path ("iscsi:10.1.2.1::3260:1:iqn…"); empty sends no option 17.
	// dnsmasq knows option 17 as a string and sends the text as given, so
	// malformed root-paths can be handed out too (not ones with a comma,
	// which dnsmasq treats as a separator).
	RootPath string
	// InitiatorName is option 203, the initiator IQN iPXE and lunboot take
	// from DHCP; empty sends none. Sent byte for byte (as hex: dnsmasq has
	// no type for 203).
	InitiatorName string
	// VendorOptions, when set, are encoded as option 43 sub-options
	// (code, length, data each; RFC 2132 §8.4).
	VendorOptions []SubOption
	// Options are extra dnsmasq --dhcp-option values, as dnsmasq spells
	// them ("12,guest", "option:router,10.1.2.254").
	Options []string
	// Force sends the options above even to clients that did not ask for
	// them in their parameter request list (--dhcp-option-force). Off by
	// default, as ISC dhcpd and dnsmasq behave: a client that wants the
	// root-path must request option 17.
	Force bool
	// Hosts pins addresses to MACs.
	Hosts []DHCPHost
	// LeaseTime defaults to one hour.
	LeaseTime time.Duration
	// NoRouterAdvert turns off IPv6 router advertisements. They are on by
	// default because iPXE waits about 20 seconds for IPv6 configuration on
	// a link without them, which would distort boot-time comparisons.
	NoRouterAdvert bool
	// PingCheck keeps dnsmasq's default check that a new address is
	// unused: it pings the address and holds the offer until the ping
	// times out, 3 s (PING_WAIT in dnsmasq's config.h), for every client
	// it has no lease for. Off by default (--no-ping): measured in the lab,
	// a first lease took 3.03–3.07 s with the check and 6–51 ms without,
	// rapid commit or not, and every guest boot paid it. Boot-time tables
	// name the setting (both iPXE and lunboot face the same server).
	PingCheck bool
	// NoRapidCommit turns off DHCP rapid commit (RFC 4039,
	// --dhcp-rapid-commit), on by default: a client that asks for it
	// (lunboot does; iPXE and the OS initrds' clients do not) gets its
	// DHCPACK in answer to the DISCOVER.
	NoRapidCommit bool
	// DNS, when not empty, turns dnsmasq's DNS server on (it is off
	// otherwise) on the bridge's address, answering these names with
	// their addresses (A or AAAA records, --host-record); the leases then
	// carry the bridge's address as their DNS server (option 6). Any other
	// name under DNSDomain gets NXDOMAIN; nothing is forwarded anywhere.
	DNS map[string]netip.Addr
	// DHCPv6 makes dnsmasq a stateful DHCPv6 server (RFC 8415) on the
	// lab's ULA prefix, addresses ::100 to ::1ff, with router
	// advertisements carrying the prefix for on-link use and the managed
	// flag. SLAAC also sets the prefix's autonomous flag (dnsmasq's
	// "slaac"); SLAAC without DHCPv6 is autoconfiguration plus stateless
	// DHCPv6 ("ra-stateless": Information-requests are answered).
	// NoRouterAdvert does not apply to either.
	DHCPv6, SLAAC bool
	// BootFileURL is DHCPv6 option 59 (RFC 5970 §3.1), where EDK2 and
	// lunboot read an iSCSI root-path over DHCPv6; empty sends none.
	// dnsmasq sends it only to clients that request it.
	BootFileURL string
	// Args are extra raw dnsmasq arguments.
	Args []string
	// ConfFile, when set, is a dnsmasq configuration file read in place
	// of the lab's own network settings: dnsmasq then takes the
	// interface, port, address range and everything else from the file
	// (which must name the lab's Bridge and an address range in its
	// Prefix), so a documented configuration can be run as written. The
	// lab still adds its log, lease and pid files and, unless
	// NoRouterAdvert, IPv6 router advertisements; the options above are
	// added as flags.
	ConfFile string
}

// DNSDomain is the lab's DNS domain (RFC 2606 reserves .test for such
// uses): names for DHCPConfig.DNS are best chosen under it.
const DNSDomain = "lunboot.test"

// SubOption is one encapsulated DHCP sub-option (inside option 43).
type SubOption struct {
	Code byte
	Data []byte
}

// DHCPHost is a fixed address for a MAC.
type DHCPHost struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

// Lease is one line of dnsmasq's lease file.
type Lease struct {
	Expires  time.Time
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

// DHCP is the lab's running dnsmasq.
type DHCP struct {
	lab       *Lab
	cfg       DHCPConfig
	proc      *process
	logFile   string
	logOffset int64
	leaseFile string
}

// encodeSubOptions encodes option 43 sub-options (RFC 2132 §8.4): each is a
// code byte, a length byte and the data.
func encodeSubOptions(opts []SubOption) ([]byte, error) {
	var b []byte
	for _, o := range opts {
		if len(o.Data) > 255 {
			return nil, fmt.Errorf("sub-option %d: %d bytes, at most 255", o.Code, len(o.Data))
		}
		b = append(b, o.Code, byte(len(o.Data)))
		b = append(b, o.Data...)
	}
	return b, nil
}

// hexOption spells an option value as dnsmasq's colon-separated hex, which
// it copies byte for byte for options it has no type for (a plain string
// could be read as an address or a number). Options dnsmasq knows as text
// (17, 12…) take the text itself.
func hexOption(code int, data []byte) (string, error) {
	if len(data) < 2 {
		return "", fmt.Errorf("option %d: values shorter than 2 bytes are ambiguous for dnsmasq; use DHCPConfig.Options", code)
	}
	h := hex.EncodeToString(data)
	parts := make([]string, 0, len(data))
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return fmt.Sprintf("%d,%s", code, strings.Join(parts, ":")), nil
}

// StartDHCP starts dnsmasq on the bridge, inside the namespace, and waits
// until it has bound its DHCP socket. A lab runs one DHCP server at a time:
// Stop the running one first (or use Restart).
func (l *Lab) StartDHCP(ctx context.Context, cfg DHCPConfig) (*DHCP, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errClosed
	}
	if l.dhcp != nil && !l.dhcp.proc.Exited() {
		l.mu.Unlock()
		return nil, errors.New("lab: dnsmasq is already running; Stop it first")
	}
	l.mu.Unlock()

	lease := cfg.LeaseTime
	if lease <= 0 {
		lease = time.Hour
	}
	p4 := l.prefix.Addr().As4()
	lo, hi := p4, p4
	lo[3], hi[3] = 100, 199
	d := &DHCP{
		lab:       l,
		cfg:       cfg,
		logFile:   l.LogPath("dnsmasq.log"),
		leaseFile: l.LogPath("dnsmasq.leases"),
	}
	args := []string{"ip", "netns", "exec", l.ns, "dnsmasq", "--keep-in-foreground"}
	if cfg.ConfFile != "" {
		abs, err := filepath.Abs(cfg.ConfFile)
		if err != nil {
			return nil, fmt.Errorf("lab: dhcp: configuration file: %w", err)
		}
		// dnsmasq changes to / before it reads the file.
		args = append(args, "--conf-file="+abs, "--no-resolv", "--no-hosts")
		l.cmds.printf("# dnsmasq configuration from %s", abs)
	} else {
		port := "--port=0" // DHCP only, no DNS
		if len(cfg.DNS) > 0 {
			port = "--port=53"
		}
		args = append(args,
			"--conf-file=/dev/null", // nothing from the host's configuration
			"--no-resolv", "--no-hosts",
			port,
			"--interface="+l.bridge, "--bind-interfaces",
			"--dhcp-authoritative",
		)
		if !l.opts.IPv6Only {
			args = append(args, fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,%ds", netip.AddrFrom4(lo), netip.AddrFrom4(hi), int(lease.Seconds())))
		}
	}
	args = append(args,
		"--dhcp-leasefile="+d.leaseFile,
		"--log-facility="+d.logFile,
		"--log-dhcp",
		"--pid-file="+l.LogPath("dnsmasq.pid"),
		"--user=root", "--group=root", // it writes into the log folder
	)
	if !cfg.PingCheck {
		args = append(args, "--no-ping")
	}
	if !cfg.NoRapidCommit {
		args = append(args, "--dhcp-rapid-commit")
	}
	switch {
	case cfg.DHCPv6:
		p6 := l.prefix6.Addr().As16()
		lo6, hi6 := p6, p6
		lo6[14], lo6[15] = 1, 0x00
		hi6[14], hi6[15] = 1, 0xff
		mode := ""
		if cfg.SLAAC {
			mode = "slaac,"
		}
		args = append(args, "--enable-ra", fmt.Sprintf("--dhcp-range=%s,%s,%s64,%ds", netip.AddrFrom16(lo6), netip.AddrFrom16(hi6), mode, int(lease.Seconds())))
	case cfg.SLAAC:
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:"+l.bridge+",ra-stateless")
	case !cfg.NoRouterAdvert:
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:"+l.bridge+",ra-only")
	}
	if cfg.BootFileURL != "" {
		if strings.Contains(cfg.BootFileURL, ",") {
			return nil, fmt.Errorf("lab: dhcp: boot file URL %q contains a comma, which dnsmasq would split", cfg.BootFileURL)
		}
		args = append(args, "--dhcp-option=option6:bootfile-url,"+cfg.BootFileURL)
	}
	optFlag := "--dhcp-option="
	if cfg.Force {
		optFlag = "--dhcp-option-force="
	}
	addHex := func(code int, data []byte) error {
		v, err := hexOption(code, data)
		if err != nil {
			return err
		}
		args = append(args, optFlag+v)
		return nil
	}
	if cfg.RootPath != "" {
		if strings.Contains(cfg.RootPath, ",") {
			return nil, fmt.Errorf("lab: dhcp: root-path %q contains a comma, which dnsmasq would split", cfg.RootPath)
		}
		args = append(args, optFlag+"17,"+cfg.RootPath)
	}
	if cfg.InitiatorName != "" {
		if err := addHex(203, []byte(cfg.InitiatorName)); err != nil {
			return nil, fmt.Errorf("lab: dhcp: %w", err)
		}
		l.cmds.printf("# dhcp option 203 (initiator) = %q", cfg.InitiatorName)
	}
	if len(cfg.VendorOptions) > 0 {
		b, err := encodeSubOptions(cfg.VendorOptions)
		if err == nil {
			err = addHex(43, b)
		}
		if err != nil {
			return nil, fmt.Errorf("lab: dhcp option 43: %w", err)
		}
	}
	for _, o := range cfg.Options {
		args = append(args, optFlag+o)
	}
	if len(cfg.DNS) > 0 {
		// Answered from here, never forwarded (there is no upstream), and
		// an unknown name in the lab's domain is NXDOMAIN, not REFUSED.
		args = append(args, "--local=/"+DNSDomain+"/", "--domain-needed")
		for name, a := range cfg.DNS {
			if strings.ContainsAny(name, ", /") || name == "" {
				return nil, fmt.Errorf("lab: dhcp: DNS name %q", name)
			}
			args = append(args, "--host-record="+name+","+a.String())
			l.cmds.printf("# DNS: %s is %s", name, a)
		}
	}
	for _, h := range cfg.Hosts {
		v := h.MAC.String() + "," + h.IP.String()
		if h.Hostname != "" {
			v += "," + h.Hostname
		}
		args = append(args, "--dhcp-host="+v)
	}
	args = append(args, cfg.Args...)

	// A restarted dnsmasq appends to the same log: the readiness check looks
	// only at what this instance wrote.
	if st, err := os.Stat(d.logFile); err == nil {
		d.logOffset = st.Size()
	}
	proc, err := l.startProcess("dnsmasq", l.LogPath("dnsmasq.out"), nil, nil, args)
	if err != nil {
		return nil, err
	}
	d.proc = proc
	l.mu.Lock()
	l.dhcp = d
	l.mu.Unlock()
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	l.log.Info("dnsmasq up", "root-path", cfg.RootPath, "bootfile-url", cfg.BootFileURL, "log", d.logFile)
	return d, nil
}

// waitReady waits for dnsmasq to log that its DHCP socket is bound.
func (d *DHCP) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if b, err := os.ReadFile(d.logFile); err == nil && int64(len(b)) >= d.logOffset &&
			strings.Contains(string(b[d.logOffset:]), "sockets bound exclusively to interface") {
			// "DHCP, sockets bound…", or "DHCPv6, …" in an IPv6-only lab.
			return nil
		}
		if d.proc.Exited() {
			log := d.logFile
			if _, err := os.Stat(log); err != nil {
				log = d.proc.logPath
			}
			return componentError("dnsmasq", log, fmt.Errorf("exited during start-up: %v (also see %s)", exitText(d.proc.Err()), d.proc.logPath))
		}
		select {
		case <-ctx.Done():
			return componentError("dnsmasq", d.logFile, fmt.Errorf("not ready: %w", ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Config returns the configuration dnsmasq was started with.
func (d *DHCP) Config() DHCPConfig { return d.cfg }

// LogFile returns dnsmasq's log (every DHCP exchange, with --log-dhcp).
func (d *DHCP) LogFile() string { return d.logFile }

// Stop stops dnsmasq. It is safe to call more than once.
func (d *DHCP) Stop() error {
	err := d.proc.stop(2 * time.Second)
	d.lab.mu.Lock()
	if d.lab.dhcp == d {
		d.lab.dhcp = nil
	}
	d.lab.mu.Unlock()
	return err
}

// Restart stops dnsmasq and starts it again with cfg (leases are kept).
func (d *DHCP) Restart(ctx context.Context, cfg DHCPConfig) (*DHCP, error) {
	if err := d.Stop(); err != nil {
		return nil, err
	}
	return d.lab.StartDHCP(ctx, cfg)
}

// Leases reads dnsmasq's lease file.
func (d *DHCP) Leases() ([]Lease, error) {
	f, err := os.Open(d.leaseFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dnsmasq leases: %w", err)
	}
	defer f.Close()
	return parseLeases(f, d.leaseFile)
}

func parseLeases(f *os.File, name string) ([]Lease, error) {
	var out []Lease
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		// <expiry epoch> <mac> <ip> <hostname or *> <client id or *>
		fs := strings.Fields(s.Text())
		if len(fs) < 4 || strings.HasPrefix(fs[0], "duid") {
			continue
		}
		exp, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: expiry %q: %w", name, n, fs[0], err)
		}
		mac, err := net.ParseMAC(fs[1])
		if err != nil {
			continue // DHCPv6 lines carry no MAC
		}
		ip, err := netip.ParseAddr(fs[2])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: address %q: %w", name, n, fs[2], err)
		}
		host := fs[3]
		if host == "*" {
			host = ""
		}
		out = append(out, Lease{Expires: time.Unix(exp, 0), MAC: mac, IP: ip, Hostname: host})
	}
	return out, s.Err()
}

// WaitLease waits until dnsmasq has acknowledged a lease for mac (a guest's
// DHCP went through) and returns it.
func (d *DHCP) WaitLease(ctx context.Context, mac net.HardwareAddr) (Lease, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	for {
		ls, err := d.Leases()
		if err != nil {
			return Lease{}, err
		}
		for _, l := range ls {
			if l.MAC.String() == mac.String() {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return Lease{}, componentError("dnsmasq", d.logFile, fmt.Errorf("no lease for %s: %w", mac, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
