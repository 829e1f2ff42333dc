// Package rootpath parses and formats the three ways a user or a DHCP
// server names an iSCSI boot target:
//
//   - the RFC 4173 root-path that DHCP option 17 (or option 43 sub-option
//     201) delivers, iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>,
//     parsed strictly by [Parse];
//   - the dracut command-line form of the same string, which may add CHAP
//     credentials and an open-iscsi iface/netdev pair
//     (iscsi:[user:pass[:ruser:rpass]@]server:proto:port[:iface:netdev]:LUN:target),
//     parsed by [ParseCmdline];
//   - the libiscsi URL iscsi://[user[%password]@]host[:port]/<target>/<lun>
//     that host tools use, parsed by [ParseURL].
//
// [ParseTarget] picks between the last two. [ParsePortal] reads a target
// portal alone (host[:port], or an iscsi:// URL without target and LUN) as
// well as either target form, for discovery.
//
// Strictness is deliberate. The parsers in boot ROMs and OS initrds accept
// garbage and then fail far from the cause (iPXE silently truncates a
// five-digit LUN group and turns a bad port into 3260; u-root turns a host
// name into a nil IP that dials the local host; dracut anchors the target on
// the last ":iqn." it finds). Here every field is validated and a failure is
// an [*Error] that names the field and echoes the input with any password
// masked.
//
// Choices made where the sources disagree, all documented in
// docs/configuration.md:
//
//   - The scheme is matched case-insensitively, as iPXE does; a scheme not
//     written "iscsi:" is reported as a warning because dracut would not
//     recognise it.
//   - IPv6 literals must be bracketed; a zone (link-local scope) may follow
//     the address as %<Linux interface name>. An empty server would ask for
//     RFC 4173 discovery (iSNS/SLP), which lunboot does not implement.
//   - The LUN is hexadecimal, as RFC 4173 and the iPXE and EDK2 parsers read
//     it: one to four '-'-separated groups of one to four hex digits, each
//     group one big-endian 16-bit word of the 8-byte SAM LUN, first group
//     first. "1a" is SAM 00 1a 00 00 00 00 00 00, Linux LUN 26.
//   - The target name is everything after the fourth separator (IQNs
//     contain colons) and must be a valid iSCSI name (RFC 7143 §4.2.7):
//     iqn.yyyy-mm.<reversed domain>[:<anything>], eui.<16 hex digits> or
//     naa.<16 or 32 hex digits>, at most 223 bytes, ASCII only. Its case is
//     kept: RFC 3722 folds names to lower case, but LIO and tgtd compare the
//     name as configured, byte for byte, and appliances use mixed case.
//   - Credentials are never accepted from DHCP: RFC 4173 has no field for
//     them, and a root-path is visible to anything on the segment.
//   - Trailing NUL bytes and white space are removed before parsing: some
//     DHCP servers count a C string's terminator in the option length.
package rootpath
