package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/lunboot/lunboot/internal/bytesize"
	"github.com/lunboot/lunboot/pkg/scsi"
)

func init() {
	register(&command{
		name:    "inquiry",
		summary: "show a LUN's INQUIRY data, serial number and identifiers",
		run:     runInquiry,
	})
}

// inquiryReport is `lunboot inquiry --json`.
type inquiryReport struct {
	LUN         uint64             `json:"lun"`
	LUNHex      string             `json:"lun_hex"`
	Standard    *scsi.InquiryData  `json:"standard"`
	Type        string             `json:"type"`
	VPDPages    []string           `json:"vpd_pages,omitempty"`
	Serial      string             `json:"serial,omitempty"`
	Designators []designatorReport `json:"designators,omitempty"`
	Capacity    *capacityReport    `json:"capacity,omitempty"`
	Warnings    []string           `json:"warnings,omitempty"`
	blockLimits *scsi.BlockLimits  // shown in the text form only
	lbp         *scsi.LogicalBlockProvisioning
}

type designatorReport struct {
	Type        string `json:"type"`
	Association string `json:"association"`
	Protocol    int    `json:"protocol,omitempty"`
	Value       string `json:"value"`
}

type capacityReport struct {
	Size              int64  `json:"size"`
	BlockSize         uint32 `json:"block_size"`
	PhysicalBlockSize uint64 `json:"physical_block_size"`
	ThinProvisioned   bool   `json:"thin_provisioned"`
}

func runInquiry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inquiry", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tf := addTargetFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	fs.Usage = usageFunc(fs, "inquiry [options] <target>",
		"Logs in and prints what the target's LUN says about itself: the standard\n"+
			"INQUIRY data, the VPD pages it supports, its unit serial number (VPD 0x80),\n"+
			"its identifiers (VPD 0x83) and, for a disk, its capacity.", true)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: inquiry takes one target", errUsage)
	}
	s, lun, err := tf.login(ctx, pos[0])
	if err != nil {
		return err
	}
	defer tf.logout(s)
	ctx, cancel := context.WithTimeout(ctx, tf.timeout)
	defer cancel()

	rep, err := inquire(ctx, s, lun)
	if err != nil {
		return fmt.Errorf("inquiry %s: %w", tf.shown, lunHint(ctx, s, lun, err, tf.timeout))
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printInquiry(stdout, rep)
	return nil
}

// inquire gathers the report. Only the standard INQUIRY is required; the
// VPD pages are optional (SPC-4 makes 0x00 and 0x83 mandatory, but old
// targets lack them), so their failures become warnings.
func inquire(ctx context.Context, ex scsi.Executor, lun scsi.LUN) (*inquiryReport, error) {
	inq, err := scsi.Inquiry(ctx, ex, lun)
	if err != nil {
		return nil, err
	}
	if !inq.Present() {
		return nil, fmt.Errorf("%w: INQUIRY says no logical unit is at LUN %d (peripheral qualifier %d)", scsi.ErrLUNNotSupported, lun.Linux(), inq.Qualifier)
	}
	rep := &inquiryReport{LUN: lun.Linux(), LUNHex: lun.String(), Standard: inq, Type: inq.Type.String()}
	pages, err := scsi.SupportedVPDPages(ctx, ex, lun)
	if err != nil {
		rep.Warnings = append(rep.Warnings, "VPD page list: "+err.Error())
	}
	has := map[byte]bool{}
	for _, p := range pages {
		has[p] = true
		rep.VPDPages = append(rep.VPDPages, fmt.Sprintf("%#02x", p))
	}
	if has[scsi.VPDUnitSerialNumber] {
		if rep.Serial, err = scsi.UnitSerialNumber(ctx, ex, lun); err != nil {
			rep.Warnings = append(rep.Warnings, "unit serial number: "+err.Error())
		}
	}
	if has[scsi.VPDDeviceIdentification] || pages == nil {
		ids, err := scsi.DeviceIdentification(ctx, ex, lun)
		if err != nil && !(pages == nil && errors.Is(err, scsi.ErrIllegalRequest)) {
			rep.Warnings = append(rep.Warnings, "device identification: "+err.Error())
		}
		for _, d := range ids {
			dr := designatorReport{Type: d.Type.String(), Association: d.Association.String(), Value: d.String()}
			if d.PIV {
				dr.Protocol = int(d.ProtocolID)
			}
			rep.Designators = append(rep.Designators, dr)
		}
	}
	if inq.Type.IsBlockDevice() {
		c, err := scsi.ReadCapacity(ctx, ex, lun, inq.Version >= 5)
		var size int64
		if err == nil {
			size, err = c.Bytes()
		}
		if err != nil {
			rep.Warnings = append(rep.Warnings, "capacity: "+err.Error())
		} else {
			rep.Capacity = &capacityReport{Size: size, BlockSize: c.BlockSize, PhysicalBlockSize: c.PhysicalBlockSize(), ThinProvisioned: c.LBPME}
		}
		if has[scsi.VPDBlockLimits] {
			if rep.blockLimits, err = scsi.ReadBlockLimits(ctx, ex, lun); err != nil {
				rep.Warnings = append(rep.Warnings, "block limits: "+err.Error())
			}
		}
		if has[scsi.VPDLogicalBlockProvisioning] {
			if rep.lbp, err = scsi.ReadLogicalBlockProvisioning(ctx, ex, lun); err != nil {
				rep.Warnings = append(rep.Warnings, "logical block provisioning: "+err.Error())
			}
		}
	}
	return rep, nil
}

func printInquiry(w io.Writer, r *inquiryReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	i := r.Standard
	fmt.Fprintf(tw, "LUN:\t%d (root-path hex %s)\n", r.LUN, r.LUNHex)
	fmt.Fprintf(tw, "type:\t%s\n", r.Type)
	fmt.Fprintf(tw, "vendor:\t%s\n", cmp.Or(i.Vendor, "-"))
	fmt.Fprintf(tw, "product:\t%s\n", cmp.Or(i.Product, "-"))
	fmt.Fprintf(tw, "revision:\t%s\n", cmp.Or(i.Revision, "-"))
	fmt.Fprintf(tw, "SPC version:\t%d\n", i.Version)
	fmt.Fprintf(tw, "removable:\t%v\n", i.Removable)
	fmt.Fprintf(tw, "command queueing:\t%v\n", i.CmdQue)
	if r.Serial != "" {
		fmt.Fprintf(tw, "serial:\t%s\n", r.Serial)
	}
	if len(r.VPDPages) > 0 {
		fmt.Fprintf(tw, "VPD pages:\t%v\n", r.VPDPages)
	}
	if c := r.Capacity; c != nil {
		fmt.Fprintf(tw, "capacity:\t%s (%d bytes, %d-byte blocks, %d-byte physical)\n", bytesize.Format(c.Size), c.Size, c.BlockSize, c.PhysicalBlockSize)
		fmt.Fprintf(tw, "thin provisioned:\t%v\n", c.ThinProvisioned)
	}
	if l := r.blockLimits; l != nil {
		fmt.Fprintf(tw, "max transfer:\t%s\n", blocksOrNone(l.MaxTransferLength))
		fmt.Fprintf(tw, "max unmap:\t%s\n", blocksOrNone(l.MaxUnmapLBACount))
	}
	if l := r.lbp; l != nil {
		fmt.Fprintf(tw, "UNMAP supported:\t%v\n", l.LBPU)
	}
	for _, d := range r.Designators {
		fmt.Fprintf(tw, "id (%s, %s):\t%s\n", d.Type, d.Association, d.Value)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(tw, "warning:\t%s\n", warn)
	}
	tw.Flush()
}

func blocksOrNone(n uint32) string {
	if n == 0 {
		return "not stated"
	}
	return fmt.Sprintf("%d blocks", n)
}
