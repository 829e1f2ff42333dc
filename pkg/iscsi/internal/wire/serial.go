package wire

// Sequence numbers (CmdSN, StatSN, DataSN, R2TSN) are compared with RFC
// 1982 serial number arithmetic over 32 bits (RFC 7143 §4.2.2): a is
// "less than" b when b is ahead of a by less than 2^31.

// SerialLess reports a < b in serial arithmetic.
func SerialLess(a, b uint32) bool { return a != b && int32(a-b) < 0 }

// SerialLessEq reports a <= b in serial arithmetic.
func SerialLessEq(a, b uint32) bool { return a == b || int32(a-b) < 0 }

// SerialGreater reports a > b in serial arithmetic.
func SerialGreater(a, b uint32) bool { return SerialLess(b, a) }
