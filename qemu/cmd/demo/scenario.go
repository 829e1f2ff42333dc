package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/lunboot/lunboot/qemu/lab"
)

// scenario is one of the lab set-ups -scenario selects (issue 14): how the
// lab is built, what lunboot is told, and which -os disks can boot in it.
// Adding one is adding a row to scenarios.
type scenario struct {
	// about is the one-line description -help shows.
	about string
	// oses are the -os values the scenario works with; why says why the
	// others cannot, for the refusal.
	oses []string
	why  string
	// lab sets the scenario's lab options (the demo fills in name and
	// log folder).
	lab func(*lab.Options)
	// args are lunboot's kernel arguments for the scenario.
	args string
}

// scenarios are the -scenario values; "" is the plain lab (DHCPv4, one
// portal).
var scenarios = map[string]scenario{
	"ipv6": {
		about: "IPv6-only lab: no IPv4 on the bridge, DHCPv6 (root-path as option 59) and router advertisements from dnsmasq, tgtd on the ULA address; lunboot boots with ip=dhcp6",
		oses:  []string{"dracut"},
		why:   "only a dracut initrd can log in over IPv6: initramfs-tools' klibc ipconfig and iscsistart -N are IPv4-only, and the probe OS and the PXE chain configure IPv4",
		lab:   func(o *lab.Options) { o.IPv6Only = true },
		args:  "ip=dhcp6",
	},
}

// scenarioNames lists the -scenario values for the flag's help.
func scenarioNames() string {
	var names []string
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

// pickScenario checks -scenario against -os, -pxe and -ipxe and returns
// the scenario; impossible combinations are refused by name.
func pickScenario(o options) (*scenario, error) {
	if o.scenario == "" {
		return nil, nil
	}
	sc, ok := scenarios[o.scenario]
	if !ok {
		return nil, fmt.Errorf("-scenario %q: want one of %s", o.scenario, scenarioNames())
	}
	switch {
	case o.pxe:
		return nil, fmt.Errorf("-scenario %s cannot be combined with -pxe: %s", o.scenario, sc.why)
	case o.ipxe:
		return nil, fmt.Errorf("-scenario %s cannot be combined with -ipxe: %s", o.scenario, sc.why)
	case !slices.Contains(sc.oses, o.osName):
		return nil, fmt.Errorf("-scenario %s needs -os %s, not -os %s: %s", o.scenario, strings.Join(sc.oses, " or -os "), o.osName, sc.why)
	}
	return &sc, nil
}
