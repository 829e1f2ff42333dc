package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"github.com/lunboot/lunboot/pkg/overlay"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// eventDisk is an in-memory disk that records its flushes and close in
// a log shared with the test.
type eventDisk struct {
	name   string
	b      []byte
	events *[]string
}

func (e *eventDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(e.b)) {
		return 0, fmt.Errorf("eventDisk: read %d at %d", len(p), off)
	}
	return copy(p, e.b[off:]), nil
}

func (e *eventDisk) WriteAt(p []byte, off int64) (int, error) {
	if e.name == "golden" {
		return 0, errors.New("eventDisk: the golden disk is read-only")
	}
	if off < 0 || off+int64(len(p)) > int64(len(e.b)) {
		return 0, fmt.Errorf("eventDisk: write %d at %d", len(p), off)
	}
	return copy(e.b[off:], p), nil
}

func (e *eventDisk) Flush() error   { *e.events = append(*e.events, "flush "+e.name); return nil }
func (e *eventDisk) Close() error   { *e.events = append(*e.events, "close "+e.name); return nil }
func (e *eventDisk) Size() int64    { return int64(len(e.b)) }
func (e *eventDisk) BlockSize() int { return 512 }

// TestCloseOverlayDevice: at the daemon's shutdown the overlay LUN is
// flushed, then closed, then the golden disk is closed.
func TestCloseOverlayDevice(t *testing.T) {
	var events []string
	golden := &eventDisk{name: "golden", b: make([]byte, 1<<20), events: &events}
	h := overlay.Header{ChunkSize: overlay.LUNChunk, GoldenSize: 1 << 20, GoldenBlockSize: 512}
	ov := &eventDisk{name: "overlay", b: make([]byte, h.RequiredSize()), events: &events}
	id := scsi.Identity{Designators: []scsi.Designator{{CodeSet: 2, Association: scsi.AssocLogicalUnit, Type: scsi.DesigT10VendorID, Value: []byte("IET     golden")}}}
	d, _, err := overlay.OpenLUN(overlay.Golden{Disk: golden, Identity: id, Initiator: "iqn.2026-12.org.lunboot:test"}, ov, overlay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte("written by the OS"), 4096); err != nil {
		t.Fatal(err)
	}
	events = nil
	closeOverlayDevice(slog.New(slog.DiscardHandler), d, ov.Close, golden.Close)
	want := []string{"flush overlay", "close overlay", "close golden"}
	if !slices.Equal(events, want) {
		t.Fatalf("shutdown did %q, want %q", events, want)
	}
}
