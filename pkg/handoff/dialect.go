package handoff

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/iscsi"
)

// Generator is the tool that built an OS initrd; it decides which command
// line parameters the initrd understands.
type Generator int

// Generators.
const (
	GeneratorUnknown Generator = iota
	// GeneratorDracut: Fedora, RHEL, SUSE, newer Ubuntu. iSCSI through the
	// dracut "iscsi" module (iscsiadm + iscsid) and a network module.
	GeneratorDracut
	// GeneratorInitramfsTools: Debian, older Ubuntu. iSCSI through
	// open-iscsi's scripts/local-top/iscsi (iscsistart), network through
	// klibc ipconfig.
	GeneratorInitramfsTools
)

// String names the generator.
func (g Generator) String() string {
	switch g {
	case GeneratorDracut:
		return "dracut"
	case GeneratorInitramfsTools:
		return "initramfs-tools"
	}
	return "unknown"
}

// NetBackend is how the initrd brings the network up.
type NetBackend int

// Network backends. dracut's "network" module uses the first of
// network-manager, systemd-networkd, connman, network-legacy that is
// included (modules.d/40network/module-setup.sh).
const (
	NetUnknown        NetBackend = iota
	NetLegacy                    // dracut network-legacy (dhclient, ifup)
	NetNetworkManager            // dracut network-manager (nm-initrd-generator)
	NetNetworkd                  // dracut systemd-networkd (systemd-network-generator)
	NetConnman                   // dracut connman
	NetKlibc                     // initramfs-tools: klibc ipconfig
)

// String names the backend as dracut names its module.
func (n NetBackend) String() string {
	return map[NetBackend]string{
		NetUnknown: "unknown", NetLegacy: "network-legacy", NetNetworkManager: "network-manager",
		NetNetworkd: "systemd-networkd", NetConnman: "connman", NetKlibc: "klibc ipconfig",
	}[n]
}

// Dialect is the command-line language of an initrd.
type Dialect struct {
	Generator Generator
	Network   NetBackend
}

// String names generator and network backend.
func (d Dialect) String() string { return d.Generator.String() + " (" + d.Network.String() + ")" }

// Dialect returns the inspected initrd's dialect.
func (in *Initrd) Dialect() Dialect { return Dialect{in.Generator, in.Network} }

// detect names the generator from the files it leaves behind: dracut keeps
// its own tree under lib/dracut (and var/lib/dracut/hooks in dracut-ng),
// initramfs-tools has conf/initramfs.conf and scripts/functions.
func (in *Initrd) detect() (Generator, NetBackend) {
	dracut := len(in.DracutModules) > 0 || in.hasPrefix("usr/lib/dracut/") ||
		in.hasPrefix("lib/dracut/") || in.hasPrefix("var/lib/dracut/hooks/")
	itools := in.Has("conf/initramfs.conf") || in.Has("scripts/functions")
	switch {
	case dracut && itools:
		in.warnf("the initrd has both dracut and initramfs-tools files; cannot tell which built it")
		return GeneratorUnknown, NetUnknown
	case itools:
		return GeneratorInitramfsTools, NetKlibc
	case !dracut:
		return GeneratorUnknown, NetUnknown
	}
	mods := map[string]bool{}
	for _, m := range in.DracutModules {
		mods[m] = true
	}
	switch {
	case mods["network-manager"]:
		return GeneratorDracut, NetNetworkManager
	case mods["systemd-networkd"]:
		return GeneratorDracut, NetNetworkd
	case mods["connman"]:
		return GeneratorDracut, NetConnman
	case mods["network-legacy"]:
		return GeneratorDracut, NetLegacy
	case len(mods) > 0:
		return GeneratorDracut, NetUnknown
	}
	// No modules.txt: look at the files each backend installs.
	if _, ok := in.findProgram("nm-initrd-generator"); ok {
		return GeneratorDracut, NetNetworkManager
	}
	if _, ok := in.findProgram("systemd-networkd"); ok {
		return GeneratorDracut, NetNetworkd
	}
	if _, ok := in.findProgram("dhclient"); ok && in.Has("sbin/ifup") {
		return GeneratorDracut, NetLegacy
	}
	return GeneratorDracut, NetUnknown
}

// Parameters each dialect reads for the iSCSI root, the boot network and
// firmware mode. Cmdline removes every one of them from the entry before
// adding its own, so nothing stale (a different target, ip=ibft without a
// table, rd.bootif=0) contradicts the hand-off. Everything else, root=
// included, is kept as the entry has it.
var (
	dracutOwned = keySet(
		"netroot", "iscsiroot", "iscsi_firmware", "rd.iscsi.firmware", "rd.iscsi.ibft",
		"rd.iscsi.initiator", "iscsi_initiator",
		"rd.iscsi.username", "rd.iscsi.password", "rd.iscsi.in.username", "rd.iscsi.in.password",
		"iscsi_username", "iscsi_password", "iscsi_in_username", "iscsi_in_password",
		// Documented but dead since dracut 5fbe772b (2019): dropped so
		// nobody is misled by them.
		"rd.iscsi.target.name", "rd.iscsi.target.ip", "rd.iscsi.target.port", "rd.iscsi.target.group",
		"iscsi_target_name", "iscsi_target_ip", "iscsi_target_port", "iscsi_target_group",
		"ip", "BOOTIF", "rd.bootif", "bootdev", "rd.neednet", "vlan",
	)
	initramfsToolsOwned = keySet(
		"iscsi_auto", "iscsi_initiator", "iscsi_target_name", "iscsi_target_ip", "iscsi_target_port",
		"iscsi_target_group", "iscsi_username", "iscsi_password", "iscsi_in_username", "iscsi_in_password",
		"ip", "BOOTIF",
	)
)

func keySet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// ErrInitramfsToolsIPv6 says why an initramfs-tools initrd cannot log in
// over IPv6, in either hand-off form: its network comes from klibc's
// ipconfig, which speaks DHCPv4/BOOTP and IPv4 static addresses only, and
// its firmware mode from iscsistart -N, which configures only IPv4 from the
// iBFT (open-iscsi usr/iscsistart.c, utils/fwparam_ibft: the NIC is set up
// through SIOCSIFADDR with AF_INET).
var ErrInitramfsToolsIPv6 = errors.New("the OS initrd is initramfs-tools, which cannot boot over IPv6: klibc ipconfig configures IPv4 only and iscsistart -N (iBFT network setup) is IPv4-only; rebuild the OS initrd with dracut (dracut --add \"iscsi network-legacy\"), or boot over IPv4")

// ErrDialect is wrapped by Cmdline errors: the parameters cannot be said in
// the initrd's dialect (unknown generator, a value the initrd scripts would
// mangle, a VLAN the command line cannot name).
var ErrDialect = errors.New("handoff: cannot express the hand-off on the command line")

// Cmdline returns the OS kernel command line: the entry's own arguments,
// minus those the dialect reads for the iSCSI root and boot network, plus
// the hand-off parameters in the dialect, inserted before any "--". mode
// must be decided (ModeCmdline, ModeIBFT or ModeBoth; see Decide).
//
// dracut, explicit:
//
//	netroot=iscsi:<ip>::<port>:<lun>:<target> rd.iscsi.initiator=<iqn>
//	[rd.iscsi.username= rd.iscsi.password= [rd.iscsi.in.username= rd.iscsi.in.password=]]
//	ip=dhcp|<ip>::<gw>:<mask>:<host>::none[:<dns1>[:<dns2>]] BOOTIF=01-<mac> rd.bootif=1 rd.neednet=1
//
// dracut, firmware: rd.iscsi.firmware=1 rd.iscsi.initiator=<iqn> rd.neednet=1
// and rd.iscsi.ibft=1 (network from the table), or the explicit ip= and
// BOOTIF= with systemd-networkd, whose generator ignores ip=ibft.
//
// initramfs-tools, explicit:
//
//	ip=dhcp|<ip>::<gw>:<mask>:<host>::off[:<dns0>[:<dns1>]] BOOTIF=01-<mac>
//	iscsi_initiator=<iqn> iscsi_target_name=<target> iscsi_target_ip=<ip> iscsi_target_port=<port>
//	[iscsi_target_group=<tpgt>] [iscsi_username= iscsi_password= [iscsi_in_username= iscsi_in_password=]]
//
// initramfs-tools, firmware: iscsi_auto (iscsistart -N then -b read the
// table), plus ip=dhcp BOOTIF= when the address came from DHCP.
//
// The NIC is named by MAC (BOOTIF=, honoured by dracut's network-legacy and
// NetworkManager and by initramfs-tools' configure_networking), never by
// the firmware kernel's interface name, which the OS does not share. The
// LUN is written in decimal as Linux numbers it. CHAP secrets appear only in
// explicit form, which ModeBoth avoids when CHAP is in use.
func Cmdline(entry string, info *Info, d Dialect, mode Mode) (string, error) {
	if err := info.Validate(); err != nil {
		return "", err
	}
	if mode != ModeCmdline && mode != ModeIBFT && mode != ModeBoth {
		return "", fmt.Errorf("handoff: Cmdline needs a resolved mode, got %v", mode)
	}
	args := ParseCmdline(entry)
	var owned map[string]bool
	switch d.Generator {
	case GeneratorDracut:
		owned = dracutOwned
	case GeneratorInitramfsTools:
		owned = initramfsToolsOwned
	default:
		return "", fmt.Errorf("%w: the OS initrd was built by an unknown generator (neither dracut nor initramfs-tools)", ErrDialect)
	}
	// ModeBoth speaks firmware mode when the explicit form would expose
	// CHAP secrets, or when the entry already does.
	firmware := mode == ModeIBFT ||
		mode == ModeBoth && (info.CHAP != nil || firmwareEntry(args, d.Generator))
	if info.NIC.VLAN != 0 && d.Generator == GeneratorInitramfsTools {
		return "", fmt.Errorf("%w: %s", ErrDialect, errVLANInitramfsTools)
	}

	if d.Generator == GeneratorInitramfsTools && info.IPv6() {
		return "", fmt.Errorf("%w: %w", ErrDialect, ErrInitramfsToolsIPv6)
	}
	var add []string
	var err error
	if d.Generator == GeneratorDracut {
		add, err = dracutArgs(info, d.Network, firmware)
	} else {
		add, err = initramfsToolsArgs(info, firmware)
	}
	if err != nil {
		return "", err
	}

	out := make([]Arg, 0, len(args)+len(add))
	inserted := false
	for _, a := range args {
		if a.IsEnd() && !inserted {
			for _, s := range add {
				out = append(out, Arg{Raw: s})
			}
			inserted = true
		}
		if !inserted && owned[a.Key] {
			continue
		}
		out = append(out, a)
	}
	if !inserted {
		for _, s := range add {
			out = append(out, Arg{Raw: s})
		}
	}
	return JoinCmdline(out), nil
}

// CarryCmdline is the OS command line of a carry-in hand-off: the entry's
// arguments without those the initrd's dialect would read for an iSCSI
// root or boot network of its own (lunboot's carried hook configures the
// NIC and logs in), root= and everything else as the entry has them.
func CarryCmdline(entry string, d Dialect) (string, error) {
	var owned map[string]bool
	switch d.Generator {
	case GeneratorDracut:
		owned = dracutOwned
	case GeneratorInitramfsTools:
		owned = initramfsToolsOwned
	default:
		return "", fmt.Errorf("%w: the OS initrd was built by an unknown generator (neither dracut nor initramfs-tools)", ErrDialect)
	}
	var out []Arg
	end := false
	for _, a := range ParseCmdline(entry) {
		end = end || a.IsEnd()
		if !end && owned[a.Key] {
			continue
		}
		out = append(out, a)
	}
	return JoinCmdline(out), nil
}

// firmwareEntry reports whether the entry already asks for firmware mode
// (an installer's iBFT install: rd.iscsi.firmware, ip=ibft, iscsi_auto).
func firmwareEntry(args []Arg, g Generator) bool {
	for _, a := range args {
		switch g {
		case GeneratorDracut:
			switch a.Key {
			case "rd.iscsi.firmware", "iscsi_firmware", "rd.iscsi.ibft":
				if !a.HasValue || boolArg(a.Value) {
					return true
				}
			case "ip":
				if a.Value == "ibft" {
					return true
				}
			}
		case GeneratorInitramfsTools:
			if a.Key == "iscsi_auto" {
				return true
			}
		}
	}
	return false
}

// boolArg is dracut's getargbool truth: anything but 0, no, off.
func boolArg(v string) bool { return v != "0" && v != "no" && v != "off" }

func dracutArgs(info *Info, net NetBackend, firmware bool) ([]string, error) {
	var a []string
	if firmware {
		a = append(a, "rd.iscsi.firmware=1")
	} else {
		host := info.Target.Addr.Addr()
		hs := host.String()
		if host.Is6() {
			hs = "[" + hs + "]"
		}
		if h := info.Target.Host; h != "" {
			// dracut resolves a host name itself: iscsiadm's getaddrinfo,
			// with the resolv.conf its network module writes from the
			// lease (docs/handoff.md, "Host names"). The iBFT holds the
			// address.
			if err := checkValue("target host name", h, false); err != nil {
				return nil, err
			}
			hs = h
		}
		if err := checkValue("target name", info.Target.Name, false); err != nil {
			return nil, err
		}
		a = append(a, fmt.Sprintf("netroot=iscsi:%s::%d:%d:%s", hs, port(info), info.Target.LUN.Linux(), info.Target.Name))
		// dracut takes several netroot= (one node record each, logged in
		// one after the other); the path in use comes first.
		for _, p := range info.MorePaths {
			h := p.Addr.Addr().String()
			if p.Addr.Addr().Is6() {
				h = "[" + h + "]"
			}
			a = append(a, fmt.Sprintf("netroot=iscsi:%s::%d:%d:%s", h, p.Addr.Port(), info.Target.LUN.Linux(), info.Target.Name))
		}
	}
	if err := checkValue("initiator name", info.InitiatorName, false); err != nil {
		return nil, err
	}
	a = append(a, "rd.iscsi.initiator="+info.InitiatorName)
	// dracut applies each to the node records it logs in with
	// (iscsiroot: iscsiadm --op=update --name … --value …), in firmware
	// mode too.
	for _, p := range info.ISCSIParams {
		if err := checkParam(p); err != nil {
			return nil, err
		}
		a = append(a, "rd.iscsi.param="+p)
	}
	if !firmware {
		c, err := chapArgs(info.CHAP, "rd.iscsi.username", "rd.iscsi.password", "rd.iscsi.in.username", "rd.iscsi.in.password")
		if err != nil {
			return nil, err
		}
		a = append(a, c...)
	}
	if firmware && net != NetNetworkd && info.NIC.VLAN == 0 {
		// network-legacy (ibft_to_cmdline) and NetworkManager
		// (nmi-ibft-reader) configure the NIC from the table, by MAC.
		// Not on a VLAN: dracut 059's ibft_to_cmdline writes
		// ip=ibft0:dhcp (or the static address) for the parent and
		// vlan=ibft0.<id>:ibft0 beside it, so the address goes on the
		// untagged NIC and the VLAN interface stays without one (seen in
		// the lab: "dhcp for interface ibft0 failed"); the explicit
		// ifname=/vlan=/ip= below configure the VLAN itself.
		a = append(a, "rd.iscsi.ibft=1")
	} else {
		n, err := netArgs(info, GeneratorDracut)
		if err != nil {
			return nil, err
		}
		a = append(a, n...)
		a = append(a, "rd.bootif=1")
	}
	return append(a, "rd.neednet=1"), nil
}

func initramfsToolsArgs(info *Info, firmware bool) ([]string, error) {
	var a []string
	if firmware {
		a = append(a, "iscsi_auto")
		// A static table configures the NIC (iscsistart -N writes
		// /run/net-<dev>.conf and configure_networking leaves it alone);
		// a DHCP one needs ipconfig to ask again on the right NIC.
		if info.NIC.Origin == ibft.OriginDHCP && info.NIC.VLAN == 0 {
			n, err := netArgs(info, GeneratorInitramfsTools)
			if err != nil {
				return nil, err
			}
			a = append(a, n...)
		}
		return a, nil
	}
	n, err := netArgs(info, GeneratorInitramfsTools)
	if err != nil {
		return nil, err
	}
	a = append(a, n...)
	for _, v := range []struct{ what, s string }{{"initiator name", info.InitiatorName}, {"target name", info.Target.Name}} {
		if err := checkValue(v.what, v.s, false); err != nil {
			return nil, err
		}
	}
	a = append(a,
		"iscsi_initiator="+info.InitiatorName,
		"iscsi_target_name="+info.Target.Name,
		"iscsi_target_ip="+info.Target.Addr.Addr().String(),
		fmt.Sprintf("iscsi_target_port=%d", port(info)),
	)
	if info.Target.TPGT > 1 {
		a = append(a, fmt.Sprintf("iscsi_target_group=%d", info.Target.TPGT))
	}
	c, err := chapArgs(info.CHAP, "iscsi_username", "iscsi_password", "iscsi_in_username", "iscsi_in_password")
	if err != nil {
		return nil, err
	}
	return append(a, c...), nil
}

func port(info *Info) uint16 {
	if p := info.Target.Addr.Port(); p != 0 {
		return p
	}
	return 3260
}

func chapArgs(c *iscsi.CHAP, user, pass, inUser, inPass string) ([]string, error) {
	if c == nil {
		return nil, nil
	}
	for _, v := range []struct {
		what, s string
		secret  bool
	}{
		{"CHAP user name", c.Username, false}, {"CHAP secret", c.Secret, true},
		{"mutual CHAP target user name", c.TargetUsername, false}, {"mutual CHAP target secret", c.TargetSecret, true},
	} {
		if v.s == "" {
			continue
		}
		if err := checkValue(v.what, v.s, v.secret); err != nil {
			return nil, err
		}
	}
	a := []string{user + "=" + c.Username, pass + "=" + c.Secret}
	if c.Mutual() {
		a = append(a, inUser+"="+c.TargetUsername, inPass+"="+c.TargetSecret)
	}
	return a, nil
}

// VLANParent is the name the hand-off gives the boot NIC in a dracut
// initrd when it is on a VLAN (ifname=<VLANParent>:<mac>): dracut's vlan=
// and ip= name interfaces, and the OS's own name for the NIC (ens3,
// enp1s0f0…) is unknown to lunboot. dracut's ifname= renames the NIC with
// that MAC (a udev rule, modules.d/40network/ifname-genrules.sh); the name
// is outside the kernel's eth<N> namespace, as dracut.cmdline(7) asks. The
// VLAN interface is VLANParent.<id>, a name from which dracut reads the id
// (parse-vlan.sh). dracut's own iBFT reader names them ibft<N> and
// ibft<N>.<id> the same way.
const VLANParent = "lunboot0"

// errVLANInitramfsTools is why an initramfs-tools initrd cannot boot over
// a VLAN.
const errVLANInitramfsTools = "the boot NIC is on a VLAN, which an initramfs-tools initrd cannot configure: klibc's ipconfig has no VLANs and iscsistart -N creates no VLAN interface from the iBFT"

// netArgs writes ip= and BOOTIF= for the boot NIC. The device field stays
// empty: dracut's network-legacy and initramfs-tools' _update_ip_param fill
// it from BOOTIF, NetworkManager matches the MAC. On a VLAN (dracut only)
// the NIC is named by ifname= instead, the VLAN created by vlan= and ip=
// configures the VLAN interface:
//
//	ifname=lunboot0:<mac> vlan=lunboot0.<id>:lunboot0 ip=lunboot0.<id>:dhcp
func netArgs(info *Info, g Generator) ([]string, error) {
	n := info.NIC
	dev := ""
	var pre []string
	if n.VLAN != 0 {
		if g != GeneratorDracut {
			return nil, fmt.Errorf("%w: %s", ErrDialect, errVLANInitramfsTools)
		}
		if n.VLAN >= 4095 {
			return nil, fmt.Errorf("%w: VLAN id %d is not 1 to 4094", ErrDialect, n.VLAN)
		}
		dev = fmt.Sprintf("%s.%d", VLANParent, n.VLAN)
		pre = []string{"ifname=" + VLANParent + ":" + strings.ToLower(n.MAC.String()), "vlan=" + dev + ":" + VLANParent}
	}
	bootif := "BOOTIF=01-" + strings.ReplaceAll(strings.ToLower(n.MAC.String()), ":", "-")
	withNIC := func(ip string) []string {
		if dev != "" {
			return append(pre, ip)
		}
		return []string{ip, bootif}
	}
	a := n.Addr.Addr()
	host := n.Hostname
	if n.Origin == ibft.OriginDHCP && !n.HostnameGiven {
		host = "" // the server hands its name out again
	}
	if host != "" {
		if err := checkValue("hostname", host, false); err != nil {
			return nil, err
		}
		if strings.Contains(host, ":") {
			return nil, fmt.Errorf("%w: hostname %q contains ':'", ErrDialect, host)
		}
	}
	if a.Is6() && !a.Is4In6() && g != GeneratorDracut {
		return nil, fmt.Errorf("%w: %w", ErrDialect, ErrInitramfsToolsIPv6)
	}
	if n.Origin == ibft.OriginRouterAdv && a.Is6() && !a.Is4In6() {
		// dracut's auto6 (35network-legacy ifup.sh do_ipv6auto) waits
		// for an autoconfigured address and a default route from a
		// router advertisement, as lunboot got its own.
		if dev != "" {
			return withNIC("ip=" + dev + ":auto6"), nil
		}
		return []string{"ip=auto6", bootif}, nil
	}
	if n.Origin == ibft.OriginDHCP {
		if a.Is6() && !a.Is4In6() {
			if dev != "" {
				return withNIC("ip=" + dev + ":dhcp6"), nil
			}
			return []string{"ip=dhcp6", bootif}, nil
		}
		if host != "" {
			// The kernel form with only the host name and autoconf:
			// "If specified and DHCP is used, the user-provided
			// hostname … will be carried in the DHCP request"
			// (Documentation/admin-guide/nfs/nfsroot.rst), which klibc
			// ipconfig (initramfs-tools) and dracut's ip= parsers
			// follow; the device field stays empty as below.
			return withNIC("ip=::::" + host + ":" + dev + ":dhcp"), nil
		}
		if dev != "" {
			return withNIC("ip=" + dev + ":dhcp"), nil
		}
		return []string{"ip=dhcp", bootif}, nil
	}
	var f []string // ip= fields after the client address
	if a.Is4() {
		mask := netip.AddrFrom4(maskBytes(n.Addr.Bits()))
		gw := ""
		if n.Gateway.IsValid() {
			gw = n.Gateway.String()
		}
		auto := "none"
		if g == GeneratorInitramfsTools {
			auto = "off" // klibc ipconfig's spelling in initramfs-tools' docs
		}
		f = []string{a.String(), "", gw, mask.String(), host, dev, auto}
	} else {
		if g != GeneratorDracut {
			return nil, fmt.Errorf("%w: initramfs-tools' ip= (klibc ipconfig) is IPv4 only", ErrDialect)
		}
		gw := ""
		if n.Gateway.IsValid() {
			gw = "[" + n.Gateway.String() + "]"
		}
		f = []string{"[" + a.String() + "]", "", gw, strconv.Itoa(n.Addr.Bits()), host, dev, "none"}
	}
	for i, d := range n.DNS {
		if i == 2 {
			break
		}
		if d.Is6() && !d.Is4In6() {
			// dracut splits ip= on ':' outside brackets.
			f = append(f, "["+d.String()+"]")
			continue
		}
		f = append(f, d.String())
	}
	return withNIC("ip=" + strings.Join(f, ":")), nil
}

func maskBytes(bits int) [4]byte {
	var m [4]byte
	for i := 0; i < 4; i++ {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// checkParam is checkValue for an open-iscsi node parameter, whose names
// have brackets ("node.conn[0].timeo.noop_out_interval"): a bracket pattern
// that names no file stays as written in the shell, so only the characters
// that split, quote or always expand are refused.
func checkParam(p string) error {
	name, _, ok := strings.Cut(p, "=")
	if !ok || name == "" {
		return fmt.Errorf("%w: iSCSI parameter %q is not <name>=<value>", ErrDialect, p)
	}
	for _, c := range []byte(p) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"'\\`$*?", c) >= 0 {
			// The value is not echoed: node.session.auth.password=… is
			// a CHAP secret.
			return fmt.Errorf("%w: iSCSI parameter %s= contains %q, which the OS initrd scripts split or expand", ErrDialect, name, c)
		}
	}
	return nil
}

// checkValue refuses values the initrd scripts would mangle: both dracut
// (getarg, then unquoted $vars) and open-iscsi's local-top (for x in
// $(cat /proc/cmdline)) split on white space and expand globs, and the
// kernel treats quotes specially. Secrets are never echoed in the error.
func checkValue(what, v string, secret bool) error {
	if v == "" {
		return fmt.Errorf("%w: empty %s", ErrDialect, what)
	}
	for _, c := range []byte(v) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"'\\`$*?[]", c) >= 0 {
			if secret {
				return fmt.Errorf("%w: the %s contains white space, a quote, a backslash or a shell character, which the OS initrd scripts split or expand; use lunboot.handoff=ibft", ErrDialect, what)
			}
			return fmt.Errorf("%w: %s %q contains %q, which the OS initrd scripts split or expand; use lunboot.handoff=ibft", ErrDialect, what, v, c)
		}
	}
	return nil
}
