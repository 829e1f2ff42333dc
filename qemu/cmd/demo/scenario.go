package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// scenario is one -scenario of the demo: a lab set up the way a real SAN
// network is (issue 14), booted to the OS's proof.
type scenario struct {
	// about is the one-line description -help shows.
	about string
	// oses are the -os values the scenario can boot, the default first;
	// any other is refused by name.
	oses []string
	// run boots it; o.osName is one of oses.
	run func(ctx context.Context, o options, kernel, image string) error
}

// scenarios are filled in by each scenario's file (multipath.go, …), so
// that adding one touches no shared switch.
var scenarios = map[string]scenario{}

// scenarioNames lists the scenarios for the flag's help.
func scenarioNames() string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

// runScenario runs -scenario name with the -os the user gave (osSet) or
// the scenario's default.
func runScenario(ctx context.Context, name string, o options, osSet bool, kernel, image string) error {
	sc, ok := scenarios[name]
	if !ok {
		return fmt.Errorf("-scenario %q: want one of %s", name, scenarioNames())
	}
	if !osSet {
		o.osName = sc.oses[0]
	}
	if !slices.Contains(sc.oses, o.osName) {
		return fmt.Errorf("-scenario %s cannot boot -os %s: it boots %s", name, o.osName, strings.Join(sc.oses, " or "))
	}
	if o.ipxe || o.pxe {
		return fmt.Errorf("-scenario %s boots through lunboot alone: it takes neither -ipxe nor -pxe", name)
	}
	return sc.run(ctx, o, kernel, image)
}
