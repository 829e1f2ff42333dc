package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// AcceptISCSI is the default root-path check: a root-path is usable when it
// has the "iscsi:" scheme of RFC 4173 §5 (case-insensitive). The boot flow
// passes a stricter check (pkg/rootpath's parser) in [Options].AcceptRootPath.
func AcceptISCSI(rootPath string) error {
	if len(rootPath) < 6 || !strings.EqualFold(rootPath[:6], "iscsi:") {
		return errors.New(`not an iSCSI root-path (RFC 4173: "iscsi:<server>:<protocol>:<port>:<LUN>:<target>")`)
	}
	return nil
}

// configFromACK decodes the options of a DHCPACK into a Config for link.
// Only a missing or unusable client address is an error; options that do
// not decode are skipped and named in Config.Warnings, because a lease with
// a broken hostname option still reaches the target.
func configFromACK(link Link, ack *dhcpv4.DHCPv4, accept func(string) error) (*Config, error) {
	yi, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || yi.IsUnspecified() || yi.IsMulticast() || yi == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return nil, fmt.Errorf("DHCPACK assigns no usable address (yiaddr %v)", ack.YourIPAddr)
	}
	c := &Config{Link: link, Origin: OriginDHCP, Options: RawOptions{}}
	for code, v := range ack.Options {
		c.Options[code] = slices.Clone(v)
	}
	get := func(code uint8) ([]byte, bool) {
		v, ok := c.Options[code]
		return v, ok
	}

	bits, ok := decodeOption(c, optSubnetMask, "subnet mask", decodeMask)
	if !ok {
		bits = classfulBits(yi)
		c.Warnings = append(c.Warnings, fmt.Sprintf("no usable subnet mask (option 1): assumed /%d from the address class", bits))
	}
	c.Address = netip.PrefixFrom(yi, bits)

	// RFC 3442 §1: a client that receives option 121 ignores option 3.
	rs, _ := decodeOption(c, optClasslessRoutes, "classless static routes", decodeClasslessRoutes)
	for _, r := range rs {
		if r.Dst.Bits() == 0 {
			c.Gateway = r.Gateway
			continue
		}
		c.Routes = append(c.Routes, r)
	}
	if _, has121 := get(optClasslessRoutes); !has121 || (!c.Gateway.IsValid() && len(c.Routes) == 0) {
		routers, _ := decodeOption(c, optRouter, "router", decodeIPv4s)
		if i := slices.IndexFunc(routers, func(a netip.Addr) bool { return !a.IsUnspecified() }); i >= 0 {
			c.Gateway = routers[i]
		}
	}
	if c.Gateway.IsValid() && c.Gateway.IsUnspecified() {
		// "0.0.0.0/0 via 0.0.0.0" in option 121: an on-link default route.
		c.Routes = append(c.Routes, Route{Dst: netip.PrefixFrom(c.Gateway, 0), Gateway: c.Gateway})
		c.Gateway = netip.Addr{}
	}

	// An option that does not decode leaves its field zero.
	c.DNS, _ = decodeOption(c, optDNS, "DNS servers", decodeIPv4s)
	c.Hostname, _ = decodeOption(c, optHostname, "host name", decodeText)
	c.Domain, _ = decodeOption(c, optDomainName, "domain name", decodeText)
	c.MTU, _ = decodeOption(c, optMTU, "MTU", decodeMTU)
	c.Server, _ = decodeOption(c, optServerID, "server identifier", decodeIPv4)
	c.LeaseTime, _ = decodeOption(c, optLeaseTime, "lease time", decodeLeaseTime)
	c.LeaseHostname = c.Hostname
	if v, ok := get(optIPXEEncap); ok {
		if w := ipxeCHAPWarning(v); w != "" {
			c.Warnings = append(c.Warnings, w)
		}
	}
	vendor, _ := decodeOption(c, optVendorSpecific, "vendor-specific information", decodeVendorOptions)

	// Root-path: option 17 first (what iPXE, dracut and RFC 4173 §5 use),
	// then 43.201 (HBA ROMs). An unusable candidate falls through to the
	// next, so a server that hands NFS roots in 17 and iSCSI in 43.201 works.
	type candidate struct {
		data []byte
		ok   bool
		src  Source
	}
	rpv17, ok17 := get(optRootPath)
	rpv43, ok43 := vendor.get(subRootPath)
	for _, cand := range []candidate{{rpv17, ok17, SourceOption17}, {rpv43, ok43, SourceOption43Sub201}} {
		if !cand.ok {
			continue
		}
		s, err := decodeText(cand.data)
		if err == nil && accept != nil {
			err = accept(s)
			if err != nil {
				err = fmt.Errorf("%q: %w", s, err)
			}
		}
		if err != nil {
			c.Warnings = append(c.Warnings, fmt.Sprintf("root-path from %s not usable: %v", cand.src, err))
			continue
		}
		c.RootPath = Sourced{Value: s, Source: cand.src}
		break
	}

	iqn203, ok203 := get(optInitiatorIQN)
	iqn43, ok43i := vendor.get(subInitiatorIQN)
	for _, cand := range []candidate{{iqn203, ok203, SourceOption203}, {iqn43, ok43i, SourceOption43Sub203}} {
		if !cand.ok {
			continue
		}
		s, err := decodeText(cand.data)
		if err != nil {
			c.Warnings = append(c.Warnings, fmt.Sprintf("initiator IQN from %s not usable: %v", cand.src, err))
			continue
		}
		c.InitiatorIQN = Sourced{Value: s, Source: cand.src}
		break
	}
	return c, nil
}

// decodeOption decodes option code of the lease with decode. It reports
// false when the lease does not carry the option, or when the option does
// not decode: then the option is ignored and named, with decode's error, in
// c.Warnings (the boot logs them), because one broken option must not cost
// a lease that still reaches the target.
func decodeOption[T any](c *Config, code uint8, what string, decode func([]byte) (T, error)) (T, bool) {
	var zero T
	v, ok := c.Options[code]
	if !ok {
		return zero, false
	}
	x, err := decode(v)
	if err != nil {
		c.Warnings = append(c.Warnings, fmt.Sprintf("option %d (%s) ignored: %v", code, what, err))
		return zero, false
	}
	return x, true
}

// classfulBits is the prefix length of the address's class (RFC 791 §3.2),
// the traditional guess when a server sends no subnet mask.
func classfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	default:
		return 24
	}
}
