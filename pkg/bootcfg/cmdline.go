package bootcfg

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/cmdline"
	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

// CmdlineError is a problem with one kernel command-line option. Its
// message names the option and, unless it is a secret, its value.
type CmdlineError struct {
	Key string
	// Value is the option's value, "***" for a password, "" when the
	// message does not need it.
	Value string
	Err   error
}

// Error formats the problem as `kernel cmdline <key>="<value>": <why>`.
func (e *CmdlineError) Error() string {
	var rp *rootpath.Error
	if e.Value == "" || errors.As(e.Err, &rp) {
		// A root-path error already quotes the (masked) input.
		return fmt.Sprintf("kernel cmdline %s: %v", e.Key, e.Err)
	}
	return fmt.Sprintf("kernel cmdline %s=%q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns the underlying reason.
func (e *CmdlineError) Unwrap() error { return e.Err }

// handler applies one option to the parser state.
type handler struct {
	fn func(p *cmdParser, key, val string, hasVal bool) error
	// secret options have their value masked in errors.
	secret bool
	// target options may carry credentials; errors show them redacted.
	target bool
}

// lunbootKeys are the lunboot.* options; names use '_' (the parser also
// accepts '-', as the kernel does for its own parameters).
var lunbootKeys = map[string]handler{
	"lunboot.target": {fn: func(p *cmdParser, k, v string, _ bool) error {
		r, err := rootpath.ParseTarget(v)
		if err != nil {
			return err
		}
		return p.setTarget(k, r)
	}, target: true},
	"lunboot.initiator": {fn: (*cmdParser).initiator},
	"lunboot.iface": {fn: func(p *cmdParser, k, v string, _ bool) error {
		if mac, err := net.ParseMAC(v); err == nil {
			return setOnce(p, &p.src.InterfaceMAC, mac, k, macEqual)
		}
		if err := rootpath.CheckIfname(v); err != nil {
			return fmt.Errorf("neither a MAC address nor an interface name: %w", err)
		}
		return setOnce(p, &p.src.InterfaceName, v, k, eq)
	}},
	"lunboot.dhcp_timeout":    {fn: durationOpt(func(s *Source) *Setting[time.Duration] { return &s.DHCPTimeout }, time.Second)},
	"lunboot.carrier_timeout": {fn: durationOpt(func(s *Source) *Setting[time.Duration] { return &s.CarrierTimeout }, 0)},
	"lunboot.retries":         {fn: (*cmdParser).retries},
	"lunboot.timeout":         {fn: durationOpt(func(s *Source) *Setting[time.Duration] { return &s.Timeout }, 0)},
	"lunboot.rescue":          {fn: boolOpt(func(s *Source) *Setting[bool] { return &s.Rescue })},
	"lunboot.entry": {fn: func(p *cmdParser, k, v string, _ bool) error {
		if v == "" {
			return errors.New("empty; give a boot entry's title, id (BLS file name, GRUB --id) or index")
		}
		return setOnce(p, &p.src.Entry, v, k, eq)
	}},
	"lunboot.menu_timeout": {fn: durationOpt(func(s *Source) *Setting[time.Duration] { return &s.MenuTimeout }, 0)},
	"lunboot.handoff": {fn: func(p *cmdParser, k, v string, _ bool) error {
		m, err := handoff.ParseMode(v)
		if err != nil {
			return err
		}
		return setOnce(p, &p.src.Handoff, m, k, eq)
	}},
	"lunboot.force": {fn: boolOpt(func(s *Source) *Setting[bool] { return &s.Force })},
	"lunboot.overlay": {fn: func(p *cmdParser, k, v string, _ bool) error {
		o, err := handoff.ParseOverlay(v)
		if err != nil {
			return err
		}
		return setOnce(p, &p.src.Overlay, o, k, eq)
	}},
	"lunboot.overlay_size": {fn: func(p *cmdParser, k, v string, _ bool) error {
		if _, _, err := handoff.ParseOverlaySize(v); err != nil {
			return err
		}
		return setOnce(p, &p.src.OverlaySize, v, k, eq)
	}},
	"lunboot.multipath":     {fn: boolOpt(func(s *Source) *Setting[bool] { return &s.Multipath })},
	"lunboot.portal":        {fn: (*cmdParser).portals},
	"lunboot.header_digest": {fn: enumOpt(func(s *Source) *Setting[Digest] { return &s.HeaderDigest }, digestValues)},
	"lunboot.data_digest":   {fn: enumOpt(func(s *Source) *Setting[Digest] { return &s.DataDigest }, digestValues)},
	"lunboot.loglevel": {fn: enumOpt(func(s *Source) *Setting[slog.Level] { return &s.LogLevel },
		map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError})},
	"lunboot.debug": {fn: func(p *cmdParser, k, v string, hasVal bool) error {
		on, err := parseBool(v, hasVal)
		if err != nil {
			return err
		}
		lvl := slog.LevelInfo
		if on {
			lvl = slog.LevelDebug
		}
		return setOnce(p, &p.src.LogLevel, lvl, k, eq)
	}},
	"lunboot.append": {fn: func(p *cmdParser, k, v string, _ bool) error {
		if strings.ContainsAny(v, "\x00\n") {
			return errors.New("contains a NUL or newline")
		}
		return setOnce(p, &p.src.Append, v, k, eq)
	}},
	// lunboot.modules= is read by stage 1 (ModulesFromCmdline), which runs
	// before the configuration: here it is only checked, so that a typo
	// is reported like any other.
	"lunboot.modules": {fn: func(_ *cmdParser, _, v string, _ bool) error {
		_, err := parseModules(v)
		return err
	}},
	"lunboot.vlan": {fn: (*cmdParser).lunbootVLAN},
	"lunboot.ibft": {fn: enumOpt(func(s *Source) *Setting[IBFTPolicy] { return &s.IBFT },
		map[string]IBFTPolicy{"prefer": IBFTPrefer, "fallback": IBFTFallback, "ignore": IBFTIgnore, "1": IBFTPrefer, "0": IBFTIgnore})},
}

var digestValues = map[string]Digest{"none": DigestNone, "crc32c": DigestCRC32C, "prefer": DigestPrefer}

// otherKeys are the dracut, initramfs-tools and kernel options lunboot
// understands. Anything else outside lunboot.* is left to others.
var otherKeys = map[string]handler{
	"netroot":   {fn: (*cmdParser).netroot, target: true},
	"iscsiroot": {fn: (*cmdParser).iscsiroot, target: true},
	"root": {fn: func(p *cmdParser, k, v string, hv bool) error {
		l := strings.ToLower(v)
		if strings.HasPrefix(l, "iscsi:") || l == "dhcp" || l == "dhcp6" {
			return p.netroot(k, v, hv)
		}
		return nil // root=UUID=… and friends are for the OS
	}, target: true},
	"rd.iscsi.param":     {fn: (*cmdParser).iscsiParam},
	"rd.iscsi.initiator": {fn: (*cmdParser).initiator},
	"iscsi_initiator":    {fn: (*cmdParser).initiator},

	"rd.iscsi.username":    {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.user })},
	"iscsi_username":       {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.user })},
	"rd.iscsi.password":    {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.pass }), secret: true},
	"iscsi_password":       {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.pass }), secret: true},
	"rd.iscsi.in.username": {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.ruser })},
	"iscsi_in_username":    {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.ruser })},
	"rd.iscsi.in.password": {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.rpass }), secret: true},
	"iscsi_in_password":    {fn: credOpt(func(p *cmdParser) *Setting[string] { return &p.rpass }), secret: true},

	"rd.iscsi.firmware": {fn: (*cmdParser).preferIBFT},
	"iscsi_firmware":    {fn: (*cmdParser).preferIBFT},
	"rd.iscsi.ibft":     {fn: (*cmdParser).preferIBFT},
	"iscsi_auto":        {fn: (*cmdParser).preferIBFT},

	"iscsi_target_name": {fn: rawOpt(func(p *cmdParser) *Setting[string] { return &p.tName })},
	"iscsi_target_ip":   {fn: rawOpt(func(p *cmdParser) *Setting[string] { return &p.tIP })},
	"iscsi_target_port": {fn: rawOpt(func(p *cmdParser) *Setting[string] { return &p.tPort })},

	"ip":                     {fn: (*cmdParser).ip},
	"BOOTIF":                 {fn: (*cmdParser).bootif},
	"nameserver":             {fn: (*cmdParser).nameserver},
	"vlan":                   {fn: (*cmdParser).vlanOpt},
	"rd.net.timeout.carrier": {fn: secondsOpt(func(s *Source) *Setting[time.Duration] { return &s.CarrierTimeout })},
	"rd.net.timeout.dhcp":    {fn: secondsOpt(func(s *Source) *Setting[time.Duration] { return &s.DHCPTimeout })},
}

// ignoredKeys are iSCSI options of dracut and initramfs-tools that lunboot
// understands but does not use; each gets a warning saying why.
var ignoredKeys = map[string]string{
	"rd.iscsi.login_retry_max": "use lunboot.retries=",
	"rd.iscsi.waitnet":         "lunboot waits for the boot interface only",
	"rd.iscsi.testroute":       "lunboot checks the route to the portal itself",
	"rd.iscsi.mp":              "lunboot fails over between the portals of several netroot= and lunboot.portal=; lunboot.multipath=1 hands them all to the OS",
	"rd.iscsi.transport":       "lunboot is a software initiator; offload HBAs boot themselves",
	"rd.iscsi.target.name":     "dracut no longer reads it either; use netroot=iscsi:…",
	"rd.iscsi.target.ip":       "dracut no longer reads it either; use netroot=iscsi:…",
	"rd.iscsi.target.port":     "dracut no longer reads it either; use netroot=iscsi:…",
	"rd.iscsi.target.group":    "the target portal group tag is learned at login",
	"iscsi_target_group":       "the target portal group tag is learned at login",

	// dracut's network options (dracut.cmdline(7), "Network"): lunboot
	// configures one plain NIC, by DHCP or ip=, and says so rather than
	// leave a dracut user wondering why a bond or route is missing.
	"bond":                    "lunboot boots over one plain NIC and builds no bond; select a member NIC with BOOTIF= (the OS can bond it later)",
	"team":                    "lunboot boots over one plain NIC and builds no team; select a member NIC with BOOTIF=",
	"bridge":                  "lunboot boots over one plain NIC and builds no bridge; select the NIC with BOOTIF=",
	"ifname":                  "lunboot does not rename interfaces; select the NIC by MAC with BOOTIF= or lunboot.iface=, not by a name ifname= would give it",
	"rd.route":                "lunboot adds no static routes from the command line; the portal must be on the boot NIC's subnet or behind its gateway (DHCP option 121 routes are applied)",
	"rd.peerdns":              "lunboot always uses the lease's DNS servers, after those of nameserver= and ip=",
	"bootdev":                 "lunboot selects the boot NIC with BOOTIF=, lunboot.iface= or the device field of ip=",
	"rd.neednet":              "lunboot always brings up the boot NIC",
	"rd.net.timeout.iflink":   "lunboot waits for carrier only: use lunboot.carrier_timeout= (rd.net.timeout.carrier=)",
	"rd.net.timeout.ifup":     "use lunboot.dhcp_timeout= (rd.net.timeout.dhcp=)",
	"rd.net.timeout.route":    "lunboot does not wait for routes",
	"rd.net.timeout.ipv6dad":  "lunboot waits for duplicate address detection within lunboot.dhcp_timeout=",
	"rd.net.timeout.ipv6auto": "lunboot waits for router advertisements within lunboot.dhcp_timeout=",
	"rd.net.dhcp.retry":       "use lunboot.retries=",
}

// cmdParser accumulates a Source from parameters.
type cmdParser struct {
	src Source
	// CHAP pieces, assembled when all parameters are read.
	user, pass, ruser, rpass Setting[string]
	// initramfs-tools' split target.
	tName, tIP, tPort Setting[string]
	// dhcpKey is the option that asked for the root-path from DHCP.
	dhcpKey string
	// dhcp6Root: the root-path is to come from DHCPv6 (netroot=dhcp6).
	dhcp6Root bool
}

// ParseCmdline reads the options lunboot understands from a kernel command
// line (the content of /proc/cmdline). docs/configuration.md lists them.
// Unknown lunboot.* options and malformed values of known options are
// errors, all of them reported together as *CmdlineError values joined
// with errors.Join; other options are ignored, except iSCSI options of
// dracut and initramfs-tools that lunboot does not use, which produce
// warnings. The line is split as the kernel splits it (pkg/cmdline); the
// words after "--" are init's arguments, not options, and are ignored.
func ParseCmdline(line string) (Source, error) {
	p := &cmdParser{src: Source{Kind: Cmdline}}
	var errs []error
	fail := func(key, val string, h handler, err error) {
		switch {
		case h.secret && val != "":
			val = rootpath.Mask
		case h.target:
			val = rootpath.Redact(val)
		case key == "rd.iscsi.param":
			// node.session.auth.password[_in]=… is a CHAP secret too.
			if name, _, ok := strings.Cut(val, "="); ok && strings.Contains(name, "password") {
				val = name + "=" + rootpath.Mask
			}
		}
		errs = append(errs, &CmdlineError{Key: key, Value: clip(val), Err: err})
	}
	apply := func(key string, prm cmdline.Param, h handler) {
		if err := h.fn(p, key, prm.Value, prm.HasValue); err != nil {
			val := prm.Value
			if !prm.HasValue {
				val = ""
			}
			fail(key, val, h, err)
		}
	}
	// Only the kernel's parameters: those after "--" are init's
	// arguments (kernel/params.c parse_args), as for the module loader.
	params := cmdline.Kernel(line)
	rootISCSI := slices.ContainsFunc(params, func(prm cmdline.Param) bool {
		return prm.Key == "root" && strings.HasPrefix(strings.ToLower(prm.Value), "iscsi:")
	})
	for _, prm := range params {
		key := prm.Key
		h, ok := otherKeys[key]
		if strings.HasPrefix(key, "lunboot.") {
			key = "lunboot." + strings.ReplaceAll(key[len("lunboot."):], "-", "_")
			h, ok = lunbootKeys[key]
			if !ok {
				fail(prm.Key, "", handler{}, unknownKey(key))
				continue
			}
		}
		if !ok {
			if why, ign := ignoredKeys[key]; ign {
				p.src.Warnings = append(p.src.Warnings, fmt.Sprintf("kernel cmdline %s ignored: %s", key, why))
			} else if strings.HasPrefix(key, "rd.iscsi.") || strings.HasPrefix(key, "rd.net.") {
				p.src.Warnings = append(p.src.Warnings, fmt.Sprintf("kernel cmdline %s ignored: not an option lunboot knows", key))
			}
			continue
		}
		if key == "netroot" && rootISCSI {
			// dracut: "root takes precedence over netroot. Ignoring
			// netroot" (modules.d/*iscsi/parse-iscsiroot.sh).
			p.src.Warnings = append(p.src.Warnings, fmt.Sprintf("kernel cmdline netroot=%s ignored: root=iscsi:… takes precedence, as in dracut", clip(rootpath.Redact(prm.Value))))
			continue
		}
		apply(key, prm, h)
	}
	if err := p.finish(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Source{}, errors.Join(errs...)
	}
	return p.src, nil
}

// finish assembles what several options describe together and checks
// that they agree.
func (p *cmdParser) finish() error {
	var errs []error
	if err := p.finishVLAN(); err != nil {
		errs = append(errs, err)
	}
	// initramfs-tools: iscsi_target_name + iscsi_target_ip [+ port].
	if p.tName.IsSet() || p.tIP.IsSet() || p.tPort.IsSet() {
		key := "iscsi_target_name/iscsi_target_ip"
		switch {
		case !p.tName.IsSet() || !p.tIP.IsSet():
			errs = append(errs, &CmdlineError{Key: key, Err: errors.New("iscsi_target_name= and iscsi_target_ip= go together")})
		default:
			var port uint64
			var err error
			if p.tPort.IsSet() {
				port, err = strconv.ParseUint(p.tPort.Value, 10, 16)
				if err != nil || port == 0 || !isDigitsOnly(p.tPort.Value) {
					errs = append(errs, &CmdlineError{Key: "iscsi_target_port", Value: p.tPort.Value, Err: errors.New("not a port number from 1 to 65535")})
					break
				}
			}
			r, err := rootpath.New(p.tIP.Value, uint16(port), [8]byte{}, p.tName.Value)
			if err != nil {
				errs = append(errs, &CmdlineError{Key: key, Err: err})
				break
			}
			if err := p.setTarget(key, r); err != nil {
				errs = append(errs, &CmdlineError{Key: key, Err: err})
			}
		}
	}
	if p.dhcpKey != "" {
		if p.src.Target.IsSet() {
			errs = append(errs, &CmdlineError{Key: p.dhcpKey, Err: fmt.Errorf("asks for the root-path from DHCP, but %s names a target", p.src.Target.Origin.Detail)})
		}
		if p.src.IPMode.Value == IPStatic {
			errs = append(errs, &CmdlineError{Key: p.dhcpKey, Err: fmt.Errorf("asks for the root-path from DHCP, but %s configures a static address", p.src.IPMode.Origin.Detail)})
		}
		if p.dhcp6Root {
			switch {
			case !p.src.IPMode.IsSet():
				p.src.IPMode = Set(IPDHCP6, Origin{Cmdline, p.dhcpKey + "=dhcp6"})
			case p.src.IPMode.Value == IPDHCP:
				errs = append(errs, &CmdlineError{Key: p.dhcpKey, Err: fmt.Errorf("asks for the root-path from DHCPv6 (option 59), but %s configures IPv4 by DHCP; use ip=dhcp6 or ip=auto6, or netroot=dhcp", p.src.IPMode.Origin.Detail)})
			}
		} else if p.src.IPMode.Value.IPv6() && p.dhcpKey != "" {
			errs = append(errs, &CmdlineError{Key: p.dhcpKey, Err: fmt.Errorf("asks for the root-path from DHCPv4 (option 17), but %s configures IPv6; use %s=dhcp6 (option 59)", p.src.IPMode.Origin.Detail, p.dhcpKey)})
		}
	}
	// CHAP.
	if p.user.IsSet() || p.pass.IsSet() || p.ruser.IsSet() || p.rpass.IsSet() {
		c := iscsi.CHAP{Username: p.user.Value, Secret: p.pass.Value, TargetUsername: p.ruser.Value, TargetSecret: p.rpass.Value}
		o := p.user.Origin
		for _, s := range []Setting[string]{p.pass, p.ruser, p.rpass} {
			if o.Kind == 0 {
				o = s.Origin
			}
		}
		if err := validateCHAP(c); err != nil {
			errs = append(errs, &CmdlineError{Key: o.Detail, Err: err})
		} else {
			p.src.CHAP = Set(c, o)
		}
	}
	return errors.Join(errs...)
}

// setOnce sets a Setting from the command line; setting it again to a
// different value is an error naming both options.
func setOnce[T any](p *cmdParser, s *Setting[T], v T, key string, same func(a, b T) bool) error {
	if s.IsSet() {
		if same(s.Value, v) {
			return nil
		}
		return fmt.Errorf("conflicts with %s given earlier with a different value", s.Origin.Detail)
	}
	*s = Set(v, Origin{Cmdline, key})
	return nil
}

func eq[T comparable](a, b T) bool { return a == b }

func macEqual(a, b net.HardwareAddr) bool { return slices.Equal(a, b) }

func (p *cmdParser) setTarget(key string, r rootpath.RootPath) error {
	creds := r
	r = r.WithoutCredentials()
	if r.NetDev != "" {
		if err := setOnce(p, &p.src.InterfaceName, r.NetDev, key, eq); err != nil {
			return err
		}
	}
	if t := p.src.Target.Value; key == "netroot" && p.src.Target.Origin.Detail == "netroot" && p.src.Target.IsSet() && !t.Equal(r) && t.Target == r.Target && t.LUN == r.LUN && t.Portal() != r.Portal() {
		// dracut accepts several netroot= (one node record each); for
		// lunboot they are several paths to one logical unit.
		return p.addPortals(key, []string{r.Portal()})
	}
	if p.src.Target.IsSet() && !p.src.Target.Value.Equal(r) {
		return fmt.Errorf("names target %s, but %s named %s; lunboot boots from one target", r, p.src.Target.Origin.Detail, p.src.Target.Value)
	}
	if !p.src.Target.IsSet() {
		p.src.Target = Set(r, Origin{Cmdline, key})
	}
	if creds.HasCredentials() {
		for _, c := range []struct {
			s *Setting[string]
			v string
		}{{&p.user, creds.Username}, {&p.pass, creds.Password}, {&p.ruser, creds.ReverseUsername}, {&p.rpass, creds.ReversePassword}} {
			if c.v == "" {
				continue
			}
			if err := setOnce(p, c.s, c.v, key, eq); err != nil {
				return fmt.Errorf("CHAP credentials: %w", err)
			}
		}
	}
	return nil
}

// portals reads lunboot.portal=<host>[:<port>][,<host>[:<port>]…]: more
// portals of the target, for failover. IPv6 literals go in brackets.
func (p *cmdParser) portals(key, v string, hasVal bool) error {
	if !hasVal || v == "" {
		return errors.New("needs a value: a comma-separated list of <address>[:<port>]")
	}
	var list []string
	for i, f := range strings.Split(v, ",") {
		pt, err := parsePortal(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("portal %d %q: %w", i+1, f, err)
		}
		list = append(list, pt)
	}
	return p.addPortals(key, list)
}

// addPortals appends portals, without duplicates.
func (p *cmdParser) addPortals(key string, list []string) error {
	cur := p.src.Portals.Value
	for _, pt := range list {
		if !slices.Contains(cur, pt) {
			cur = append(cur, pt)
		}
	}
	origin := Origin{Cmdline, key}
	if p.src.Portals.IsSet() {
		origin = p.src.Portals.Origin
	}
	p.src.Portals = Set(cur, origin)
	return nil
}

// parsePortal checks one <address>[:<port>] and returns it as host:port
// (port 3260 when left out).
func parsePortal(s string) (string, error) {
	host, port := s, "3260"
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", errors.New("unbalanced '['")
		}
		host = s[1:end]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return "", fmt.Errorf("unexpected %q after ']'", rest)
			}
			port = rest[1:]
		}
	} else {
		if strings.Count(s, ":") > 1 {
			return "", errors.New("write an IPv6 address in brackets: [addr]:port")
		}
		if h, pt, ok := strings.Cut(s, ":"); ok {
			host, port = h, pt
		}
		if host == "" || strings.ContainsAny(host, " /[]@") {
			return "", fmt.Errorf("%q is not a host name or address", host)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || !isDigitsOnly(port) {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func (p *cmdParser) netroot(key, v string, hasVal bool) error {
	if !hasVal || v == "" {
		return errors.New("needs a value: iscsi:<server>:<proto>:<port>:<LUN>:<target>, or dhcp")
	}
	switch l := strings.ToLower(v); {
	case l == "dhcp":
		p.dhcpKey = key
		return nil
	case l == "iscsi":
		// dracut: an iSCSI root whose details come from elsewhere (DHCP,
		// or the iBFT with rd.iscsi.firmware); that is lunboot's default.
		return nil
	case l == "dhcp6":
		// dracut: the root-path from DHCPv6, and DHCPv6 on the NIC when
		// no ip= says otherwise (35network-legacy/ifup.sh). lunboot
		// reads it from option 59, the boot file URL (RFC 5970).
		p.dhcpKey = key
		p.dhcp6Root = true
		return nil
	case l == "iscsi:ibft" || l == "iscsi:ibft:":
		return errors.New("\"iscsi:ibft\" is not a target (dracut would look up a host named ibft); use rd.iscsi.firmware=1")
	case !strings.HasPrefix(l, "iscsi:"):
		scheme, _, _ := strings.Cut(v, ":")
		return fmt.Errorf("%q root is not iSCSI; lunboot boots only iSCSI targets", scheme)
	}
	r, err := rootpath.ParseCmdline(v)
	if err != nil {
		return err
	}
	return p.setTarget(key, r)
}

// iscsiroot reads dracut's deprecated iscsiroot=, whose value is a
// root-path without the "iscsi:" scheme (dracut prepends it:
// netroot=iscsi:$iscsiroot); the prefixed form is accepted too.
func (p *cmdParser) iscsiroot(key, v string, hasVal bool) error {
	if hasVal && v != "" && !strings.HasPrefix(strings.ToLower(v), "iscsi:") {
		v = "iscsi:" + v
	}
	p.src.Warnings = append(p.src.Warnings, "kernel cmdline iscsiroot= is dracut's deprecated spelling of netroot=iscsi:…; read as netroot=")
	return p.netroot(key, v, hasVal)
}

// iscsiParam keeps dracut's rd.iscsi.param=<node parameter>=<value> for the
// OS's initiator: dracut applies each to its node record (iscsiadm
// --op=update --name … --value …); lunboot's own login has no use for
// open-iscsi's node settings.
func (p *cmdParser) iscsiParam(key, v string, _ bool) error {
	name, _, ok := strings.Cut(v, "=")
	bad := strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"'\\`$*?", r) })
	if !ok || name == "" || bad >= 0 {
		// The OS initrd's scripts split and expand what they read from
		// /proc/cmdline (pkg/handoff refuses the same characters).
		return errors.New("not an open-iscsi node parameter: the form is <name>=<value>, e.g. node.session.timeo.replacement_timeout=30, without spaces, quotes or the shell characters $ * ?")
	}
	if !p.src.ISCSIParams.IsSet() {
		p.src.ISCSIParams = Set([]string(nil), Origin{Cmdline, key})
	}
	p.src.ISCSIParams.Value = append(p.src.ISCSIParams.Value, v)
	return nil
}

func (p *cmdParser) initiator(key, v string, _ bool) error {
	if strings.EqualFold(v, InitiatorIPXE) && key == "lunboot.initiator" {
		if p.src.Initiator.IsSet() {
			return fmt.Errorf("conflicts with %s given earlier with a different value", p.src.Initiator.Origin.Detail)
		}
		return setOnce(p, &p.src.IPXEInitiator, true, key, eq)
	}
	if p.src.IPXEInitiator.IsSet() {
		return fmt.Errorf("conflicts with %s=%s given earlier", p.src.IPXEInitiator.Origin.Detail, InitiatorIPXE)
	}
	n, err := rootpath.NormalizeName(v)
	if err != nil {
		return fmt.Errorf("not a valid iSCSI name: %w", err)
	}
	if n != v {
		p.src.Warnings = append(p.src.Warnings, fmt.Sprintf("kernel cmdline %s: initiator name %q folded to lower case %q (RFC 3722)", key, v, n))
	}
	return setOnce(p, &p.src.Initiator, n, key, eq)
}

func credOpt(field func(*cmdParser) *Setting[string]) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, _ bool) error {
		if v == "" {
			return errors.New("empty")
		}
		return setOnce(p, field(p), v, key, eq)
	}
}

func rawOpt(field func(*cmdParser) *Setting[string]) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, _ bool) error {
		if v == "" {
			return errors.New("empty")
		}
		return setOnce(p, field(p), v, key, eq)
	}
}

func (p *cmdParser) preferIBFT(key, v string, hasVal bool) error {
	on, err := parseBool(v, hasVal)
	if err != nil || !on {
		return err
	}
	return setOnce(p, &p.src.IBFT, IBFTPrefer, key, eq)
}

func (p *cmdParser) ip(key, v string, _ bool) error {
	s, err := parseIPParam(v)
	if err != nil {
		return err
	}
	p.src.Warnings = append(p.src.Warnings, s.warnings...)
	if s.ibft {
		if err := setOnce(p, &p.src.IBFT, IBFTPrefer, key, eq); err != nil {
			return err
		}
	}
	if s.mode != 0 {
		if err := setOnce(p, &p.src.IPMode, s.mode, key, eq); err != nil {
			return err
		}
	}
	if s.addr.IsValid() {
		if err := setOnce(p, &p.src.Address, s.addr, key, eq); err != nil {
			return err
		}
	}
	if s.gw.IsValid() {
		if err := setOnce(p, &p.src.Gateway, s.gw, key, eq); err != nil {
			return err
		}
	}
	if s.hostname != "" {
		if err := setOnce(p, &p.src.Hostname, s.hostname, key, eq); err != nil {
			return err
		}
	}
	if s.dev != "" {
		if err := setOnce(p, &p.src.InterfaceName, s.dev, key, eq); err != nil {
			return err
		}
	}
	if s.mtu != 0 {
		if err := setOnce(p, &p.src.MTU, s.mtu, key, eq); err != nil {
			return err
		}
	}
	p.addDNS(key, s.dns...)
	return nil
}

func (p *cmdParser) addDNS(key string, addrs ...netip.Addr) {
	for _, a := range addrs {
		if !p.src.DNS.IsSet() {
			p.src.DNS = Set([]netip.Addr(nil), Origin{Cmdline, key})
		} else if !strings.Contains(p.src.DNS.Origin.Detail, key) {
			p.src.DNS.Origin.Detail += ", " + key
		}
		if !slices.Contains(p.src.DNS.Value, a) {
			p.src.DNS.Value = append(p.src.DNS.Value, a)
		}
	}
}

func (p *cmdParser) nameserver(key, v string, _ bool) error {
	a, err := parseIPAddr(v)
	if err != nil {
		if b, err2 := netip.ParseAddr(v); err2 == nil && b.Zone() == "" {
			a, err = b.Unmap(), nil // dracut writes IPv6 name servers without brackets
		}
	}
	if err != nil {
		return err
	}
	p.addDNS(key, a)
	return nil
}

// bootif parses PXELINUX's BOOTIF=<hardware type>-<MAC with '-'>, where
// type 01 is Ethernet, or a plain MAC address.
func (p *cmdParser) bootif(key, v string, _ bool) error {
	s := v
	if parts := strings.Split(v, "-"); len(parts) == 7 {
		if parts[0] != "01" {
			return fmt.Errorf("hardware type %q is not 01 (Ethernet)", parts[0])
		}
		s = strings.Join(parts[1:], "-")
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return errors.New("not a MAC address; the forms are 01-aa-bb-cc-dd-ee-ff (PXELINUX) and aa:bb:cc:dd:ee:ff")
	}
	return setOnce(p, &p.src.InterfaceMAC, mac, key, macEqual)
}

func (p *cmdParser) retries(key, v string, _ bool) error {
	n := RetryForever
	if v != "forever" {
		var err error
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 || !isDigitsOnly(v) {
			return errors.New("not a number from 0 to 1000, or forever")
		}
	}
	return setOnce(p, &p.src.Retries, n, key, eq)
}

func boolOpt(field func(*Source) *Setting[bool]) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, hasVal bool) error {
		b, err := parseBool(v, hasVal)
		if err != nil {
			return err
		}
		return setOnce(p, field(&p.src), b, key, eq)
	}
}

// parseBool accepts what the kernel's kstrtobool and dracut's getargbool
// accept; a bare option (no '=') is true.
func parseBool(v string, hasVal bool) (bool, error) {
	if !hasVal {
		return true, nil
	}
	switch strings.ToLower(v) {
	case "1", "y", "yes", "true", "on":
		return true, nil
	case "0", "n", "no", "false", "off":
		return false, nil
	}
	return false, errors.New("not a boolean: use 1 or 0")
}

func enumOpt[T comparable](field func(*Source) *Setting[T], values map[string]T) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, _ bool) error {
		x, ok := values[strings.ToLower(v)]
		if !ok {
			names := make([]string, 0, len(values))
			for n := range values {
				if !isDigitsOnly(n) && n != "warning" {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			return fmt.Errorf("not one of %s", strings.Join(names, ", "))
		}
		return setOnce(p, field(&p.src), x, key, eq)
	}
}

// maxDuration bounds every duration option, so arithmetic on them cannot
// overflow and a typo (lunboot.timeout=3000000) is caught.
const maxDuration = 24 * time.Hour

// parseDuration accepts a number of seconds ("30") or a Go duration
// ("30s", "2m", "1m30s").
func parseDuration(v string, min time.Duration) (time.Duration, error) {
	var d time.Duration
	if isDigitsOnly(v) && len(v) <= 6 {
		n, _ := strconv.Atoi(v)
		d = time.Duration(n) * time.Second
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New("not a duration: give seconds (30) or a Go duration (30s, 2m)")
		}
	}
	if d < min || d > maxDuration {
		return 0, fmt.Errorf("must be from %v to %v", min, maxDuration)
	}
	return d, nil
}

func durationOpt(field func(*Source) *Setting[time.Duration], min time.Duration) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, _ bool) error {
		d, err := parseDuration(v, min)
		if err != nil {
			return err
		}
		return setOnce(p, field(&p.src), d, key, eq)
	}
}

// secondsOpt reads dracut's rd.net.timeout.* options (whole seconds).
func secondsOpt(field func(*Source) *Setting[time.Duration]) func(*cmdParser, string, string, bool) error {
	return func(p *cmdParser, key, v string, _ bool) error {
		if !isDigitsOnly(v) {
			return errors.New("not a number of seconds")
		}
		d, err := parseDuration(v, 0)
		if err != nil {
			return err
		}
		return setOnce(p, field(&p.src), d, key, eq)
	}
}

// unknownKey explains an unknown lunboot.* option, suggesting the closest
// known one.
func unknownKey(key string) error {
	best, bestD := "", 4
	for k := range lunbootKeys {
		if d := editDistance(strings.ToLower(key), k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown lunboot option (did you mean %s?); docs/configuration.md lists them", best)
	}
	return errors.New("unknown lunboot option; docs/configuration.md lists them")
}

// editDistance is the Levenshtein distance, bounded in cost by the short
// key names it is used on.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ModulesFromCmdline reports whether the kernel command line asks stage 1
// to load every module of the image (lunboot.modules=all) instead of only
// the drivers of the devices present (lunboot.modules=hardware, the
// default). An unknown value counts as the default here; the config stage
// reports it.
func ModulesFromCmdline(line string) (all bool) {
	for _, prm := range cmdline.Kernel(line) {
		if strings.ReplaceAll(prm.Key, "-", "_") == "lunboot.modules" {
			if v, err := parseModules(prm.Value); err == nil {
				all = v
			}
		}
	}
	return all
}

func parseModules(v string) (all bool, err error) {
	switch v {
	case "all":
		return true, nil
	case "hardware":
		return false, nil
	}
	return false, errors.New(`want "hardware" (the drivers of the devices present, the default) or "all" (every module of the image)`)
}
