// Package iscsi is lunboot's userspace iSCSI initiator (RFC 7143): login
// with security and operational negotiation, CHAP (one-way and mutual,
// MD5/SHA-1/SHA-256/SHA3-256), SendTargets discovery, and a full-feature
// session that carries many SCSI commands at once inside the target's
// command window, with immediate and unsolicited data, R2T-driven writes,
// CRC32C digests, NOP keepalives, asynchronous events, clean logout and
// error-recovery level 0 (session reinstatement with the same ISID and
// re-issue of every outstanding command).
//
// A Session implements scsi.Executor: the package carries CDBs and data and
// knows nothing of their meaning beyond the transfer direction and length.
//
//	s, err := iscsi.Login(ctx, iscsi.Config{
//		Portal:        "192.0.2.1:3260",
//		TargetName:    "iqn.2001-04.com.example:disk",
//		InitiatorName: "iqn.2026-01.org.lunboot:host",
//	})
//	...
//	res, err := s.Execute(ctx, &scsi.Command{CDB: cdb, DataIn: buf})
//	...
//	err = s.Logout(ctx)
//
// Errors state facts callers branch on: a *LoginError carries the login
// status (RFC 7143 §11.13.5) and matches the sentinels of its class and
// detail; an *AuthError says which CHAP side failed (FailedCHAPSide); a
// *DigestError names the digest a target refused that Config requires.
// What the operator should do about them is lunboot's pkg/advice's to say,
// in the words of wherever the configuration came from.
//
// Secrets given in CHAP never appear in logs or errors, and no formatting
// of a CHAP value shows them.
package iscsi
