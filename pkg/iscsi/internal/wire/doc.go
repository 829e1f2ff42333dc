// Package wire is the iSCSI byte layer shared by lunboot's initiator
// (pkg/iscsi) and its test target (pkg/iscsi/iscsitest): the 48-byte basic
// header segment and the typed PDUs built on it (RFC 7143 §11), PDU framing
// with padding and CRC32C digests (§11.2, appendix B.4 of RFC 3720), text
// key=value data (§6), RFC 1982 serial arithmetic for sequence numbers
// (§4.2.2) and the CHAP value encodings and digests (§12.1.3, RFC 1994).
//
// Every decoder here takes hostile input: it returns an error instead of
// panicking and never allocates more than the caller's stated limit.
package wire
