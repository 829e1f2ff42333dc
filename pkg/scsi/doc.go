// Package scsi builds SCSI command descriptor blocks, decodes what targets
// return (sense data, INQUIRY and VPD pages, READ CAPACITY, REPORT LUNS) and
// offers a block-device view of a logical unit on top of any Executor, such
// as an iSCSI session. References: SPC-4 (primary commands, sense), SBC-3/4
// (block commands), SAM-5 (LUN format, status codes).
package scsi
