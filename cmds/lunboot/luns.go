package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func init() {
	register(&command{
		name:    "luns",
		summary: "list a target's logical units with type, product and size",
		run:     runLUNs,
	})
}

// lunInfo is one logical unit in `lunboot luns --json`.
type lunInfo struct {
	LUN       uint64 `json:"lun"`     // Linux (decimal) numbering
	LUNHex    string `json:"lun_hex"` // RFC 4173 root-path form
	Type      string `json:"type"`
	Vendor    string `json:"vendor"`
	Product   string `json:"product"`
	Revision  string `json:"revision"`
	Size      int64  `json:"size,omitempty"`
	BlockSize uint32 `json:"block_size,omitempty"`
	Error     string `json:"error,omitempty"`
}

func runLUNs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("luns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	tf.lunOptional = true
	jsonOut := fs.Bool("json", false, "print JSON instead of a table")
	fs.Usage = usageFunc(fs, "luns [options] <target>",
		"Logs in to the target, lists its logical units (REPORT LUNS) and prints\n"+
			"each one's type, vendor, product and capacity. The target's own LUN field is\n"+
			"ignored (an iSCSI URL may leave it out).", true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: luns takes one target", errUsage)
	}
	s, _, err := tf.login(ctx, pos[0])
	if err != nil {
		return err
	}
	defer tf.logout(s)

	cctx, cancel := context.WithTimeout(ctx, tf.timeout)
	luns, err := scsi.ReportLUNs(cctx, s, scsi.LUN{})
	cancel()
	if err != nil {
		return fmt.Errorf("list LUNs of %s: %w", tf.shown, err)
	}
	infos := make([]lunInfo, 0, len(luns))
	for _, l := range luns {
		infos = append(infos, describeLUN(ctx, tf, s, l))
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	}
	// The LUN columns read as every lunboot message writes a LUN
	// (sam.FormatLUNs): the root-path form, then the Linux number.
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LUN\tLINUX\tTYPE\tVENDOR\tPRODUCT\tREV\tSIZE")
	for _, i := range infos {
		size := "-"
		if i.Size > 0 {
			size = fmt.Sprintf("%s (%d-byte blocks)", bytesize.Format(i.Size), i.BlockSize)
		}
		if i.Error != "" {
			size = "error: " + i.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", i.LUNHex, i.LUN, i.Type, cmp.Or(i.Vendor, "-"), cmp.Or(i.Product, "-"), cmp.Or(i.Revision, "-"), size)
	}
	return tw.Flush()
}

// describeLUN reads a logical unit's INQUIRY data and, for disks, its
// capacity. A failure is reported in the entry, not for the whole listing.
func describeLUN(ctx context.Context, tf *targetFlags, ex scsi.Executor, l scsi.LUN) lunInfo {
	info := lunInfo{LUN: l.Linux(), LUNHex: l.String()}
	ctx, cancel := context.WithTimeout(ctx, tf.timeout)
	defer cancel()
	inq, err := scsi.Inquiry(ctx, ex, l)
	if err != nil {
		info.Type, info.Error = "?", err.Error()
		return info
	}
	info.Type, info.Vendor, info.Product, info.Revision = inq.Type.String(), inq.Vendor, inq.Product, inq.Revision
	if !inq.Present() {
		info.Type = "absent"
		return info
	}
	if !inq.Type.IsBlockDevice() {
		return info
	}
	c, err := scsi.ReadCapacity(ctx, ex, l, false)
	if err == nil {
		info.Size, err = c.Bytes()
		info.BlockSize = c.BlockSize
	}
	if err != nil {
		info.Error = err.Error()
	}
	return info
}

// sizeValue is a byte count flag that takes a K, M, G or T suffix (powers
// of 1024), for --offset and --length.
type sizeValue struct{ n *int64 }

func (v sizeValue) String() string {
	if v.n == nil || *v.n <= 0 {
		return "0" // also "unset" (-1): flag then prints no default
	}
	n := *v.n
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (v sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.n = n
	return nil
}

func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		case 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("bad size %q (use a byte count, optionally with K, M, G or T)", s)
	}
	return n << shift, nil
}
