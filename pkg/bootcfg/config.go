package bootcfg

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lunboot/lunboot/pkg/handoff"
	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

// Field names a Config field for Config.Origin.
type Field string

// Config fields whose origin is recorded.
const (
	FieldTarget         Field = "target"
	FieldInitiator      Field = "initiator"
	FieldCHAP           Field = "chap"
	FieldInterfaceName  Field = "interface"
	FieldInterfaceMAC   Field = "interface mac"
	FieldIPMode         Field = "ip"
	FieldAddress        Field = "address"
	FieldGateway        Field = "gateway"
	FieldDNS            Field = "dns"
	FieldHostname       Field = "hostname"
	FieldMTU            Field = "mtu"
	FieldVLAN           Field = "vlan"
	FieldDHCPTimeout    Field = "dhcp timeout"
	FieldCarrierTimeout Field = "carrier timeout"
	FieldRetries        Field = "retries"
	FieldTimeout        Field = "timeout"
	FieldRescue         Field = "rescue"
	FieldEntry          Field = "entry"
	FieldMenuTimeout    Field = "menu timeout"
	FieldHandoff        Field = "handoff"
	FieldForce          Field = "force"
	FieldPortals        Field = "portals"
	FieldMultipath      Field = "multipath"
	FieldOverlay        Field = "overlay"
	FieldOverlaySize    Field = "overlay size"
	FieldHeaderDigest   Field = "header digest"
	FieldDataDigest     Field = "data digest"
	FieldLogLevel       Field = "log level"
	FieldAppend         Field = "append"
	FieldIBFT           Field = "ibft"
	FieldISCSIParams    Field = "iscsi params"
)

// Defaults for what no source sets.
const (
	DefaultDHCPTimeout    = 30 * time.Second
	DefaultCarrierTimeout = 10 * time.Second
	DefaultRetries        = 3
)

// Config is the boot configuration after precedence and defaults. Each
// field's Origin says where it came from.
type Config struct {
	// Target is the iSCSI target (portal, target name, LUN), without
	// credentials.
	Target rootpath.RootPath
	// Initiator is the initiator IQN used for the login and handed to the
	// OS. Default: DefaultInitiatorName of the boot NIC's MAC.
	Initiator string
	// CHAP holds the credentials; zero for none. Credentials from an iBFT
	// are only used with the iBFT's own target.
	CHAP iscsi.CHAP

	// Interface selects the boot NIC. Default: any NIC that gets a lease.
	Interface Interface
	// IP is the boot NIC's configuration. Default: DHCP.
	IP IP
	// VLAN is the 802.1Q VLAN the boot NIC's traffic is tagged with.
	// Default: none (untagged).
	VLAN VLAN

	// DHCPTimeout bounds one DHCP attempt. Default 30s.
	DHCPTimeout time.Duration
	// CarrierTimeout bounds the wait for link carrier. Default 10s.
	CarrierTimeout time.Duration
	// Retries is how often the network stage and the iSCSI login are each
	// retried before the boot gives up; RetryForever retries until
	// Timeout. Default 3.
	Retries int
	// Timeout bounds the whole boot up to kexec; 0 means no overall limit
	// (each stage still has its own). Default 0.
	Timeout time.Duration
	// Rescue chooses what happens when the boot gives up: true drops to a
	// rescue shell, false reboots. Default true.
	Rescue bool
	// Entry selects the OS boot entry by 0-based index, id (a BLS entry's
	// file name without .conf, a GRUB menuentry's --id), title, or a unique
	// part of one (osfind.Found.Choose); "" takes the OS's default entry.
	Entry string
	// MenuTimeout is how long the boot menu waits for a choice (a line on
	// the console); 0 boots the selected entry at once. Default 0.
	MenuTimeout time.Duration
	// Handoff is how the OS is told about its root disk (lunboot.handoff=);
	// handoff.Decide resolves it. Default auto.
	Handoff handoff.Mode
	// Force kexecs even when the OS initrd looks unable to log in to the
	// target itself. Default false.
	Force bool
	// Portals are further portals (host:port) of the target, where the
	// session continues when the one in use fails (several netroot=,
	// lunboot.portal=). Default none; the portals SendTargets reports
	// are added at login.
	Portals []string
	// Overlay is lunboot.overlay=: a golden image served read-only with
	// the client's writes in RAM or on its own LUN (docs/handoff.md,
	// "Golden images"); it implies carry-in. Default none.
	Overlay handoff.Overlay
	// OverlaySize is lunboot.overlay_size= as given (a size or a
	// percentage of the OS's memory; the carried daemon resolves it).
	// Default handoff.DefaultOverlaySize.
	OverlaySize string
	// Multipath hands every path to the OS (lunboot.multipath=1): two
	// iBFT target slots and one netroot= per portal. Default: only when
	// the OS initrd carries dm-multipath.
	Multipath bool
	// HeaderDigest and DataDigest are the digest policies for the login.
	// Default none.
	HeaderDigest, DataDigest Digest
	// LogLevel is the console verbosity. Default info.
	LogLevel slog.Level
	// Append is extra text for the OS kernel command line.
	Append string
	// IBFT is how a firmware iBFT ranks against DHCP. Default fallback.
	IBFT IBFTPolicy
	// ISCSIParams are open-iscsi node parameters ("name=value", from
	// rd.iscsi.param=) for the OS's initiator; lunboot's own login does not
	// use them. The hand-off passes them on where the OS initrd's dialect
	// can (dracut).
	ISCSIParams []string

	// Warnings collects the warnings of the sources and of merging.
	Warnings []string

	origins map[Field]Origin
	// problems are invalid values that won precedence (a DHCP root-path
	// that does not parse); Validate reports them.
	problems []error
	broken   map[Field]bool
	// looked describes where the target was looked for, for Validate's
	// error.
	looked []string
}

// Origin returns where field f's value came from.
func (c Config) Origin(f Field) Origin { return c.origins[f] }

// Merge applies precedence and defaults to the three sources (see
// Resolve) and checks that the result can boot (see Validate). It returns
// the Config even when the check fails, so the boot log can show what was
// found.
func Merge(cmdline, network, firmware Source) (Config, error) {
	c := Resolve(cmdline, network, firmware)
	return c, c.Validate()
}

// Resolve applies precedence — the command line, then the network stage
// (DHCP), then the firmware iBFT, then defaults — field by field, without
// checking completeness. The boot flow calls it before the network is up
// (with an empty network Source) to learn how to bring the network up, and
// Merge afterwards. The iBFT moves ahead of DHCP when the command line asks
// for it (IBFTPrefer) and is dropped with IBFTIgnore.
//
// A few fields are chosen together rather than one by one:
//   - CHAP from the command line applies to whatever target is chosen;
//     CHAP from the iBFT only to the iBFT's own target, so its secrets are
//     never sent to a target it was not meant for.
//   - The address and gateway come from the source that chose the IP mode
//     (in DHCP mode, from the lease), never mixed from two sources.
func Resolve(cmdline, network, firmware Source) Config {
	c := Config{origins: make(map[Field]Origin)}
	cmd := []*Source{&cmdline}
	c.IBFT = pick(&c, FieldIBFT, cmd, IBFTFallback, "", func(s *Source) Setting[IBFTPolicy] { return s.IBFT })
	fw := &firmware
	if c.IBFT == IBFTIgnore {
		if firmware.Kind != 0 {
			c.Warnings = append(c.Warnings, "firmware iBFT ignored (lunboot.ibft=ignore)")
		}
		fw = &Source{}
	}
	order := []*Source{&cmdline, &network, fw}
	if c.IBFT == IBFTPrefer {
		order = []*Source{&cmdline, fw, &network}
	}
	for _, s := range order {
		c.Warnings = append(c.Warnings, s.Warnings...)
	}

	// The target, and the credentials that go with it.
	var tsrc *Source
	c.Target, tsrc = pickSrc(&c, FieldTarget, order, rootpath.RootPath{}, "", func(s *Source) Setting[rootpath.RootPath] { return s.Target })
	c.Warnings = append(c.Warnings, c.Target.Warnings...)
	switch {
	case cmdline.CHAP.IsSet():
		c.CHAP = takeSetting(&c, FieldCHAP, cmdline.CHAP)
	case tsrc != nil && tsrc.CHAP.IsSet():
		c.CHAP = takeSetting(&c, FieldCHAP, tsrc.CHAP)
	default:
		c.origins[FieldCHAP] = Origin{Kind: Default}
	}
	if fw.CHAP.IsSet() && tsrc != fw && !cmdline.CHAP.IsSet() {
		c.Warnings = append(c.Warnings, fmt.Sprintf("iBFT CHAP credentials not used: the target came from %s, not the iBFT", c.origins[FieldTarget]))
	}

	// The network.
	c.Interface.Name = pick(&c, FieldInterfaceName, order, "", "any interface", func(s *Source) Setting[string] { return s.InterfaceName })
	c.Interface.MAC = pick(&c, FieldInterfaceMAC, order, nil, "any interface", func(s *Source) Setting[net.HardwareAddr] { return s.InterfaceMAC })
	var msrc *Source
	c.IP.Mode, msrc = pickSrc(&c, FieldIPMode, order, IPDHCP, "", func(s *Source) Setting[IPMode] { return s.IPMode })
	asrc := msrc
	if c.IP.Mode.Dynamic() {
		asrc = &network // the lease's address, whoever asked for DHCP
	}
	if asrc != nil {
		one := []*Source{asrc}
		c.IP.Address = pick(&c, FieldAddress, one, netip.Prefix{}, "", func(s *Source) Setting[netip.Prefix] { return s.Address })
		c.IP.Gateway = pick(&c, FieldGateway, one, netip.Addr{}, "", func(s *Source) Setting[netip.Addr] { return s.Gateway })
	}
	c.IP.DNS = pick(&c, FieldDNS, order, nil, "", func(s *Source) Setting[[]netip.Addr] { return s.DNS })
	if d := network.DNS; c.IP.Mode.Dynamic() && cmdline.DNS.IsSet() && d.IsSet() && d.Err == nil {
		// With DHCP the lease's name servers come after those of the
		// command line, as dracut writes them (its dhclient-script adds
		// the lease's to the nameserver= ones; rd.peerdns=0 would drop
		// them) and as the network stage writes resolv.conf.
		for _, a := range d.Value {
			if !slices.Contains(c.IP.DNS, a) {
				c.IP.DNS = append(c.IP.DNS, a)
			}
		}
		o := c.origins[FieldDNS]
		o.Detail += " then " + d.Origin.String()
		c.origins[FieldDNS] = o
	}
	c.IP.Hostname = pick(&c, FieldHostname, order, "", "", func(s *Source) Setting[string] { return s.Hostname })
	c.IP.MTU = pick(&c, FieldMTU, order, 0, "unchanged", func(s *Source) Setting[int] { return s.MTU })
	c.VLAN = pick(&c, FieldVLAN, order, VLAN{}, "untagged", func(s *Source) Setting[VLAN] { return s.VLAN })

	// The initiator name, by default derived from the boot NIC.
	c.Initiator = pick(&c, FieldInitiator, order, "", "", func(s *Source) Setting[string] { return s.Initiator })
	if cmdline.IPXEInitiator.IsSet() {
		c.ipxeInitiator(cmdline, network)
	} else if c.origins[FieldInitiator].Kind == Default && !c.broken[FieldInitiator] {
		mac := c.Interface.MAC
		if m := network.InterfaceMAC; m.IsSet() {
			mac = m.Value // the NIC actually used, if the network stage says
		}
		if n := DefaultInitiatorName(mac); n != "" {
			c.Initiator = n
			c.origins[FieldInitiator] = Origin{Default, derivedFrom + "MAC " + mac.String()}
		}
	}

	// Behaviour: command line or defaults only.
	c.DHCPTimeout = pick(&c, FieldDHCPTimeout, cmd, DefaultDHCPTimeout, "", func(s *Source) Setting[time.Duration] { return s.DHCPTimeout })
	c.CarrierTimeout = pick(&c, FieldCarrierTimeout, cmd, DefaultCarrierTimeout, "", func(s *Source) Setting[time.Duration] { return s.CarrierTimeout })
	c.Retries = pick(&c, FieldRetries, cmd, DefaultRetries, "", func(s *Source) Setting[int] { return s.Retries })
	c.Timeout = pick(&c, FieldTimeout, cmd, 0, "none", func(s *Source) Setting[time.Duration] { return s.Timeout })
	c.Rescue = pick(&c, FieldRescue, cmd, true, "", func(s *Source) Setting[bool] { return s.Rescue })
	c.Entry = pick(&c, FieldEntry, cmd, "", "the OS's default entry", func(s *Source) Setting[string] { return s.Entry })
	c.MenuTimeout = pick(&c, FieldMenuTimeout, cmd, 0, "", func(s *Source) Setting[time.Duration] { return s.MenuTimeout })
	c.Handoff = pick(&c, FieldHandoff, cmd, handoff.ModeAuto, "", func(s *Source) Setting[handoff.Mode] { return s.Handoff })
	c.Force = pick(&c, FieldForce, cmd, false, "", func(s *Source) Setting[bool] { return s.Force })
	c.Overlay = pick(&c, FieldOverlay, cmd, handoff.Overlay{}, "none", func(s *Source) Setting[handoff.Overlay] { return s.Overlay })
	c.OverlaySize = pick(&c, FieldOverlaySize, cmd, handoff.DefaultOverlaySize, "", func(s *Source) Setting[string] { return s.OverlaySize })
	c.Multipath = pick(&c, FieldMultipath, cmd, false, "", func(s *Source) Setting[bool] { return s.Multipath })
	for _, p := range pick(&c, FieldPortals, cmd, nil, "none", func(s *Source) Setting[[]string] { return s.Portals }) {
		if p != c.Target.Portal() && !slices.Contains(c.Portals, p) {
			c.Portals = append(c.Portals, p)
		}
	}
	c.HeaderDigest = pick(&c, FieldHeaderDigest, cmd, DigestNone, "", func(s *Source) Setting[Digest] { return s.HeaderDigest })
	c.DataDigest = pick(&c, FieldDataDigest, cmd, DigestNone, "", func(s *Source) Setting[Digest] { return s.DataDigest })
	c.LogLevel = pick(&c, FieldLogLevel, cmd, slog.LevelInfo, "", func(s *Source) Setting[slog.Level] { return s.LogLevel })
	c.Append = pick(&c, FieldAppend, cmd, "", "", func(s *Source) Setting[string] { return s.Append })
	c.ISCSIParams = pick(&c, FieldISCSIParams, cmd, nil, "", func(s *Source) Setting[[]string] { return s.ISCSIParams })

	// Where the target was looked for, for Validate's message.
	c.looked = []string{"the kernel command line (netroot=iscsi:…, root=iscsi:…, lunboot.target=, iscsi_target_name= with iscsi_target_ip=)"}
	switch {
	case network.Kind == DHCP:
		if c.IP.Mode.IPv6() {
			c.looked = append(c.looked, "the DHCPv6 reply (option 59, the boot file URL)")
		} else {
			c.looked = append(c.looked, "the DHCP lease (option 17, option 43 sub-option 201)")
		}
	case c.IP.Mode == IPStatic:
		c.looked = append(c.looked, "not DHCP: the address is static ("+c.origins[FieldIPMode].String()+")")
	default:
		c.looked = append(c.looked, "not DHCP: no lease yet")
	}
	switch {
	case c.IBFT == IBFTIgnore:
		c.looked = append(c.looked, "not the iBFT: lunboot.ibft=ignore")
	case firmware.Kind == IBFT:
		c.looked = append(c.looked, "the firmware iBFT (it has no target)")
	default:
		c.looked = append(c.looked, "no firmware iBFT was found")
	}
	return c
}

// pickSrc returns the value of the first source that has the setting, and
// that source; or def with a Default origin and a nil source. A winning
// setting with Err is recorded as a problem and yields def.
func pickSrc[T any](c *Config, f Field, order []*Source, def T, defDetail string, get func(*Source) Setting[T]) (T, *Source) {
	for i, s := range order {
		st := get(s)
		if !st.IsSet() {
			continue
		}
		// Invalid values further down are reported, never used.
		for _, lower := range order[i+1:] {
			if l := get(lower); l.IsSet() && l.Err != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s from %s not used (%s takes precedence); it is invalid anyway: %v", f, l.Origin, st.Origin, l.Err))
			}
		}
		c.origins[f] = st.Origin
		if st.Err != nil {
			c.problem(f, st.Origin, st.Err)
			return def, s
		}
		return st.Value, s
	}
	c.origins[f] = Origin{Default, defDetail}
	return def, nil
}

func pick[T any](c *Config, f Field, order []*Source, def T, defDetail string, get func(*Source) Setting[T]) T {
	v, _ := pickSrc(c, f, order, def, defDetail, get)
	return v
}

// takeSetting uses one given setting, as pickSrc would.
func takeSetting[T any](c *Config, f Field, s Setting[T]) T {
	c.origins[f] = s.Origin
	if s.Err != nil {
		c.problem(f, s.Origin, s.Err)
		var zero T
		return zero
	}
	return s.Value
}

func (c *Config) problem(f Field, o Origin, err error) {
	c.problems = append(c.problems, fmt.Errorf("%s from %s: %w", f, o, err))
	if c.broken == nil {
		c.broken = make(map[Field]bool)
	}
	c.broken[f] = true
}

// Validate reports, all together, why the configuration cannot boot: an
// invalid value that won precedence, no target anywhere (saying where it
// looked), no initiator name, incomplete CHAP credentials, a static
// configuration without an address.
func (c Config) Validate() error {
	errs := append([]error(nil), c.problems...)
	if c.Target.Target == "" && !c.broken[FieldTarget] {
		errs = append(errs, fmt.Errorf("no iSCSI target: looked in %s", strings.Join(c.looked, "; ")))
	}
	if c.Initiator == "" && !c.broken[FieldInitiator] {
		errs = append(errs, errors.New("no initiator name: none of rd.iscsi.initiator=, lunboot.initiator=, DHCP option 203 (or 43.203) or the iBFT gave one, and no boot NIC MAC is known to derive the default from (select the NIC with BOOTIF= or ip=…:<dev>:…)"))
	}
	if err := validateCHAP(c.CHAP); err != nil {
		errs = append(errs, fmt.Errorf("chap from %s: %w", c.origins[FieldCHAP], err))
	}
	if c.IP.Mode == IPStatic && !c.IP.Address.IsValid() {
		errs = append(errs, fmt.Errorf("static IP configuration from %s has no address", c.origins[FieldIPMode]))
	}
	return errors.Join(errs...)
}

// Report returns one line per setting for the boot log, each with its
// origin: `target … (from DHCP option 17)`, `initiator
// iqn.2026-11.org.lunboot:525400123456 (derived from MAC
// 52:54:00:12:34:56)`, `chap none (default)`. Passwords never appear.
func (c Config) Report() []string {
	line := func(name string, f Field, v string) string {
		return fmt.Sprintf("%s %s (%s)", name, v, c.from(f))
	}
	target := "none"
	if c.Target.Target != "" {
		target = fmt.Sprintf("%s (portal %s, LUN %s = Linux LUN %d)", c.Target, c.Target.Portal(), c.Target.LUN, c.Target.LUN.Linux())
	}
	retries := "retried " + strconv.Itoa(c.Retries) + " times"
	switch c.Retries {
	case RetryForever:
		retries = "retried forever"
	case 0:
		retries = "not retried"
	case 1:
		retries = "retried once"
	}
	overall := "no overall timeout"
	if c.Timeout > 0 {
		overall = fmt.Sprintf("overall timeout %v", c.Timeout)
	}
	lines := []string{
		line("target", FieldTarget, target),
		line("initiator", FieldInitiator, cmp.Or(c.Initiator, "none")),
		line("chap", FieldCHAP, c.CHAP.String()),
		c.interfaceLine(),
		line("vlan", FieldVLAN, c.VLAN.String()),
		line("ip", FieldIPMode, c.IP.String()),
		line("digests", FieldHeaderDigest, "header "+c.HeaderDigest.String()+" data "+c.DataDigest.String()),
		fmt.Sprintf("network and login %s, %s, dhcp timeout %v, carrier timeout %v", retries, overall, c.DHCPTimeout, c.CarrierTimeout),
		fmt.Sprintf("handoff %s, force %t, rescue %t, entry %q, menu timeout %v", c.Handoff, c.Force, c.Rescue, c.Entry, c.MenuTimeout),
	}
	switch c.Overlay.Kind {
	case handoff.OverlayRAM:
		lines = append(lines, line("overlay", FieldOverlay, "ram, size "+c.OverlaySize))
	case handoff.OverlayLUN:
		lines = append(lines, line("overlay", FieldOverlay, c.Overlay.String()))
	}
	return lines
}

// from says where field f came from, for Report: "from DHCP option 17";
// a default is just "default", or how it was derived ("derived from MAC
// 52:54:00:12:34:56") rather than "from default (derived from …)".
func (c Config) from(f Field) string {
	o := c.origins[f]
	if o.Kind != Default {
		return "from " + o.String()
	}
	if strings.HasPrefix(o.Detail, derivedFrom) {
		return o.Detail
	}
	return "default"
}

// derivedFrom starts the Detail of a default computed from something else
// (the initiator name from the NIC's MAC), which Report shows instead of
// "default".
const derivedFrom = "derived from "

func (c Config) interfaceLine() string {
	name, mac := c.origins[FieldInterfaceName], c.origins[FieldInterfaceMAC]
	switch {
	case c.Interface.Name != "" && len(c.Interface.MAC) > 0 && name != mac:
		return fmt.Sprintf("interface %s (%s) MAC %s (%s)", c.Interface.Name, c.from(FieldInterfaceName), c.Interface.MAC, c.from(FieldInterfaceMAC))
	case len(c.Interface.MAC) > 0 && c.Interface.Name == "":
		return fmt.Sprintf("interface %s (%s)", c.Interface, c.from(FieldInterfaceMAC))
	}
	return fmt.Sprintf("interface %s (%s)", c.Interface, c.from(FieldInterfaceName))
}

// String is Report on one line.
func (c Config) String() string { return strings.Join(c.Report(), "; ") }

// Format implements fmt.Formatter so that no verb dumps the struct: %v, %s
// and %+v print String(), %q quotes it, %#v wraps it in bootcfg.Config{}.
func (c Config) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q':
		io.WriteString(f, strconv.Quote(c.String()))
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, "bootcfg.Config{"+c.String()+"}")
	default:
		io.WriteString(f, c.String())
	}
}

// LogValue implements slog.LogValuer: the main settings, no passwords.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("target", c.Target),
		slog.String("initiator", c.Initiator),
		slog.String("chap", c.CHAP.String()),
		slog.String("interface", c.Interface.String()),
		slog.String("vlan", c.VLAN.String()),
		slog.String("ip", c.IP.String()),
		slog.String("handoff", c.Handoff.String()),
		slog.Int("retries", c.Retries),
		slog.Duration("timeout", c.Timeout),
	)
}

// MarshalText implements encoding.TextMarshaler with String(), so JSON
// output never carries the passwords.
func (c Config) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
