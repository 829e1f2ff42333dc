// Package overlay is the copy-on-write layer of lunboot's golden images
// (lunboot.overlay=, docs/handoff.md "Golden images"): a blockdev.Device
// that reads from a shared golden LUN, which it never writes, and keeps a
// client's writes in a store of its own — RAM (NewRAM: lost at power-off,
// a clean system at every boot) or a per-client LUN (OpenLUN: kept across
// boots, with a header binding it to the golden LUN it was made against).
//
// It is the carried daemon's equal of a device-mapper snapshot (the
// kernel's drivers/md/dm-snap.c): the golden disk is divided into chunks;
// the first write to a chunk copies it into the store (reading the golden
// chunk first unless the write covers it whole) and records where; later
// reads and writes of that chunk go to the store, other reads to the
// golden disk. The NBD device served from it covers the whole disk, so
// every partition is overlaid and the golden LUN never appears as a block
// device in the OS.
package overlay
