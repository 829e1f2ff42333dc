// Package interop holds the interoperability suite of lunboot's iSCSI
// initiator (pkg/iscsi, pkg/scsi) against the lab's two targets: tgtd in the
// lab's namespace and LIO, the Linux kernel's target, in its target VM
// (lab.StartLIO). One table of cases runs against both through
// lab.Exporter; where the targets differ, a row asserts each one's
// behaviour. LIO-only rows cover what storage appliances do: the disk at
// LUN 0, ACLs by initiator name, mixed-case target names, each CHAP
// algorithm, the TPG disabled and the target's link down mid-transfer.
//
// The initiator runs on the host but dials from inside the lab's namespace
// (lab.DialContext): the namespace has no route to the host's.
package interop
