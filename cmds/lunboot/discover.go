package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/lunboot/lunboot/pkg/iscsi"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

func init() {
	register(&command{
		name:    "discover",
		summary: "list the targets a portal serves (SendTargets)",
		run:     runDiscover,
	})
}

// discoveredTarget is one target in `lunboot discover --json`.
type discoveredTarget struct {
	Target  string          `json:"target"`
	Portals []portalAddress `json:"portals"`
}

type portalAddress struct {
	Portal string `json:"portal"`
	Host   string `json:"host"`
	Port   uint16 `json:"port"`
	TPGT   uint16 `json:"tpgt"`
}

func runDiscover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON instead of a table")
	fs.Usage = usageFunc(fs, "discover [options] <portal>",
		"Asks the portal which targets it serves, with a SendTargets discovery session,\n"+
			"and prints each target with its portals and portal group tags. The portal is\n"+
			"written host, host:port or [IPv6]:port (port 3260 by default), as an iSCSI URL\n"+
			"without target (iscsi://[<user>%<password>@]<host>[:<port>]), or as any target\n"+
			"the other commands take, whose portal and CHAP credentials are then used.", false)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: discover takes one portal", errUsage)
	}
	rp, err := rootpath.ParsePortal(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, w := range rp.Warnings {
		tf.logger().Warn("portal: " + w)
	}
	portal := rp.Portal()
	cfg, err := tf.base(rp.Username, rp.Password, rp.ReverseUsername, rp.ReversePassword)
	if err != nil {
		return err
	}
	cfg.Portal = portal
	ctx, cancel := context.WithTimeout(ctx, tf.timeout)
	defer cancel()
	targets, err := iscsi.Discover(ctx, cfg)
	if err != nil {
		return fmt.Errorf("discover %s: %w", portal, loginHint(err, cfg))
	}

	out := make([]discoveredTarget, 0, len(targets))
	for _, t := range targets {
		d := discoveredTarget{Target: t.Name, Portals: []portalAddress{}}
		for _, a := range t.Addresses {
			d.Portals = append(d.Portals, portalAddress{Portal: a.Portal(), Host: a.Host, Port: a.Port, TPGT: a.TPGT})
		}
		out = append(out, d)
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(out) == 0 {
		fmt.Fprintf(stderr, "lunboot: %s serves no target to initiator %s (check the targets' ACLs)\n", portal, cfg.InitiatorName)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPORTAL\tTPGT")
	for _, t := range out {
		// iscsi.Discover already gives a target listed without a
		// TargetAddress the portal we asked (RFC 7143 §12.3).
		for _, p := range t.Portals {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", t.Target, p.Portal, p.TPGT)
		}
	}
	return tw.Flush()
}
