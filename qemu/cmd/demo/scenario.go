package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lunboot/lunboot/qemu/handoff"
	"github.com/lunboot/lunboot/qemu/lab"
)

// scenario is one lab network `demo -scenario <name>` boots a Debian disk
// over. Each is one row of scenarios: a new scenario (multipath, IPv6…) is
// a new row, with its own run function when booting it takes more than a
// handoff.Network.
type scenario struct {
	name string
	// about says in one line what the lab is, for the banner and -help.
	about string
	// oses are the -os values the scenario can boot, the first its default.
	oses []string
	// refused says, per -os value the scenario cannot boot, why.
	refused map[string]string
	// network is the lab network for handoff.Start.
	network handoff.Network
	// lab adjusts the lab's options (a VLAN trunk, more taps).
	lab func(*lab.Options)
	// args go on lunboot's command line before -append's.
	args string
	// run boots a scenario that is more than a Debian boot over a
	// handoff.Network (multipath.go); nil means runDebian.
	run func(ctx context.Context, o options, kernel, image string) error
}

// probeRefused is why no scenario boots the probe OS: they prove the
// hand-off to a real initrd.
const probeRefused = "the scenarios boot a Debian disk through a real OS initrd (-os debian or -os dracut), not the probe OS"

var scenarios = []scenario{
	{
		name:    "vlan",
		about:   "the target and DHCP only on VLAN 100 (the guest's port a trunk; untagged frames reach nothing); lunboot gets vlan=eth0.100:eth0 ip=eth0.100:dhcp",
		oses:    []string{"dracut"},
		refused: map[string]string{"debian": "an initramfs-tools initrd cannot boot over a VLAN (klibc's ipconfig has no VLANs, iscsistart -N creates no VLAN interface): lunboot would refuse the hand-off", "probe": probeRefused},
		network: handoff.Network{VLAN: 100},
		lab:     func(o *lab.Options) { o.VLAN = 100 },
	},
	{
		name:    "dns",
		about:   "DHCP option 17 names the portal target." + lab.DNSDomain + ", which the lab's dnsmasq resolves (DNS on)",
		oses:    []string{"debian", "dracut"},
		refused: map[string]string{"probe": probeRefused},
		network: handoff.Network{TargetHost: "target." + lab.DNSDomain},
	},
	{
		name:    "static",
		about:   "no DHCP server at all: lunboot gets a static ip=…:eth0:none and netroot=",
		oses:    []string{"debian", "dracut"},
		refused: map[string]string{"probe": probeRefused},
		network: handoff.Network{Static: true},
	},
	{
		name:    "ipv6",
		about:   "an IPv6-only lab: no IPv4 on the bridge, DHCPv6 (root-path as option 59) and router advertisements from dnsmasq, tgtd on the ULA address; lunboot boots with ip=dhcp6",
		oses:    []string{"dracut"},
		refused: map[string]string{"debian": "an initramfs-tools initrd cannot log in over IPv6 (klibc's ipconfig and iscsistart -N are IPv4-only): lunboot would refuse the hand-off", "probe": probeRefused},
		network: handoff.Network{IPv6Only: true},
		lab:     func(o *lab.Options) { o.IPv6Only = true },
		args:    "ip=dhcp6",
	},
}

// scenarioNames lists the scenarios for -help.
func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

// findScenario returns the scenario and the OS it boots: osName when
// given (osSet), else the scenario's default. Combinations that cannot
// work are refused by name.
func findScenario(name, osName string, osSet bool) (*scenario, string, error) {
	i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
	if i < 0 {
		return nil, "", fmt.Errorf("-scenario %q: want one of %s", name, scenarioNames())
	}
	s := &scenarios[i]
	if !osSet {
		return s, s.oses[0], nil
	}
	if slices.Contains(s.oses, osName) {
		return s, osName, nil
	}
	if why, ok := s.refused[osName]; ok {
		return nil, "", fmt.Errorf("-scenario %s -os %s cannot work: %s; use -os %s", name, osName, why, strings.Join(s.oses, " or -os "))
	}
	return nil, "", fmt.Errorf("-scenario %s: -os %q: want %s", name, osName, strings.Join(s.oses, " or "))
}
