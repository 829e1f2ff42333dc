package scsi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SenseKey is the 4-bit sense key of sense data (SPC-4 §4.5.6, table 52).
type SenseKey byte

// Sense keys (SPC-4 table 52).
const (
	SenseNoSense        SenseKey = 0x0
	SenseRecoveredError SenseKey = 0x1
	SenseNotReady       SenseKey = 0x2
	SenseMediumError    SenseKey = 0x3
	SenseHardwareError  SenseKey = 0x4
	SenseIllegalRequest SenseKey = 0x5
	SenseUnitAttention  SenseKey = 0x6
	SenseDataProtect    SenseKey = 0x7
	SenseBlankCheck     SenseKey = 0x8
	SenseVendorSpecific SenseKey = 0x9
	SenseCopyAborted    SenseKey = 0xa
	SenseAbortedCommand SenseKey = 0xb
	SenseVolumeOverflow SenseKey = 0xd
	SenseMiscompare     SenseKey = 0xe
	SenseCompleted      SenseKey = 0xf
)

var senseKeyNames = [16]string{
	"NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR",
	"HARDWARE ERROR", "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
	"BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED", "ABORTED COMMAND",
	"RESERVED (0xC)", "VOLUME OVERFLOW", "MISCOMPARE", "COMPLETED",
}

// String returns the SPC-4 name of the sense key.
func (k SenseKey) String() string { return senseKeyNames[k&0xf] }

// Sense data response codes (SPC-4 §4.5.1, table 27).
const (
	senseFixedCurrent      = 0x70
	senseFixedDeferred     = 0x71
	senseDescriptorCurrent = 0x72
	senseDescriptorDefer   = 0x73
)

// ErrSenseFormat is wrapped by ParseSense errors for sense data that is too
// short or has an unknown response code.
var ErrSenseFormat = errors.New("malformed sense data")

// SenseError is a command that completed with CHECK CONDITION, decoded from
// its sense data in fixed (response code 0x70/0x71) or descriptor
// (0x72/0x73) format (SPC-4 §4.5). It matches the Err* sentinels of its
// sense key and of well-known ASC/ASCQ pairs with errors.Is.
type SenseError struct {
	// Key is the sense key.
	Key SenseKey
	// ASC and ASCQ are the additional sense code and qualifier.
	ASC, ASCQ byte
	// Deferred is set for deferred errors (response code 0x71/0x73): the
	// condition belongs to an earlier command, typically a cached write.
	Deferred bool
	// Descriptor is set when the target used descriptor-format sense data.
	Descriptor bool
	// InformationValid reports whether Information holds a value (the VALID
	// bit, or an information descriptor with VALID set). For medium errors it
	// is the first LBA in error.
	InformationValid bool
	Information      uint64
	// CommandSpecific is the command-specific information field.
	CommandSpecific uint64
	// SenseKeySpecificValid reports whether SenseKeySpecific holds a value
	// (SKSV); for ILLEGAL REQUEST it points at the offending CDB field.
	SenseKeySpecificValid bool
	SenseKeySpecific      [3]byte
	// FRU is the field replaceable unit code, 0 if none.
	FRU byte
	// FileMark, EOM and ILI are the stream and block command flags.
	FileMark, EOM, ILI bool
}

// Error describes the condition with its names, for example
// "scsi: CHECK CONDITION: ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (21/00)".
func (e *SenseError) Error() string {
	s := "scsi: CHECK CONDITION: " + e.Key.String()
	if e.Deferred {
		s += " (deferred error)"
	}
	s += ": " + ASCString(e.ASC, e.ASCQ)
	if e.InformationValid && (e.Key == SenseMediumError || e.Key == SenseHardwareError) {
		s += fmt.Sprintf(", at LBA %d", e.Information)
	}
	if e.SenseKeySpecificValid && e.Key == SenseIllegalRequest {
		// SPC-4 §4.5.2.4.2 field pointer: C/D (bit 6) says CDB or data,
		// the next two bytes the byte offset.
		where := "parameter data"
		if e.SenseKeySpecific[0]&0x40 != 0 {
			where = "CDB"
		}
		s += fmt.Sprintf(", %s byte %d", where, binary.BigEndian.Uint16(e.SenseKeySpecific[1:]))
	}
	return s
}

// Is matches the sentinel for the sense key and, for well-known ASC/ASCQ
// pairs, the sentinel for the condition (ErrWriteProtected,
// ErrLBAOutOfRange, …). Every SenseError matches ErrCheckCondition.
func (e *SenseError) Is(target error) bool {
	switch target {
	case ErrCheckCondition:
		return true
	case ErrNotReady:
		return e.Key == SenseNotReady
	case ErrMediumError:
		return e.Key == SenseMediumError
	case ErrHardwareError:
		return e.Key == SenseHardwareError
	case ErrIllegalRequest:
		return e.Key == SenseIllegalRequest
	case ErrUnitAttention:
		return e.Key == SenseUnitAttention
	case ErrDataProtect:
		return e.Key == SenseDataProtect
	case ErrAbortedCommand:
		return e.Key == SenseAbortedCommand
	case ErrMiscompare:
		return e.Key == SenseMiscompare
	case ErrBecomingReady:
		return e.Key == SenseNotReady && e.ASC == 0x04 && e.ASCQ == 0x01
	case ErrMediumNotPresent:
		return e.ASC == 0x3a
	case ErrLBAOutOfRange:
		return e.ASC == 0x21 && e.ASCQ == 0x00
	case ErrInvalidOpcode:
		return e.ASC == 0x20 && e.ASCQ == 0x00
	case ErrInvalidField:
		return (e.ASC == 0x24 || e.ASC == 0x26) && e.ASCQ == 0x00
	case ErrLUNNotSupported:
		return e.ASC == 0x25 && e.ASCQ == 0x00
	case ErrWriteProtected:
		return e.ASC == 0x27
	case ErrPowerOnReset:
		return e.ASC == 0x29
	case ErrCapacityChanged:
		return e.ASC == 0x2a && e.ASCQ == 0x09
	}
	return false
}

// ParseSense decodes sense data in fixed or descriptor format (SPC-4
// §4.5.2, §4.5.3). It reads no further than the ADDITIONAL SENSE LENGTH
// says or the buffer holds, whichever is shorter, and accepts data
// truncated after the sense key (targets may cut sense data short, SPC-4
// §4.5.1); fields beyond the end read as zero.
func ParseSense(b []byte) (*SenseError, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrSenseFormat)
	}
	e := &SenseError{}
	switch code := b[0] & 0x7f; code {
	case senseFixedCurrent, senseFixedDeferred:
		if len(b) < 3 {
			return nil, fmt.Errorf("%w: fixed format needs 3 bytes, have %d", ErrSenseFormat, len(b))
		}
		e.Deferred = code == senseFixedDeferred
		// Bytes past 7 count only if ADDITIONAL SENSE LENGTH covers them.
		if len(b) >= 8 {
			b = b[:min(len(b), 8+int(b[7]))]
		}
		e.InformationValid = b[0]&0x80 != 0
		e.FileMark = b[2]&0x80 != 0
		e.EOM = b[2]&0x40 != 0
		e.ILI = b[2]&0x20 != 0
		e.Key = SenseKey(b[2] & 0x0f)
		var f [18]byte
		copy(f[:], b)
		e.Information = uint64(binary.BigEndian.Uint32(f[3:7]))
		e.CommandSpecific = uint64(binary.BigEndian.Uint32(f[8:12]))
		e.ASC, e.ASCQ, e.FRU = f[12], f[13], f[14]
		e.SenseKeySpecificValid = f[15]&0x80 != 0
		if e.SenseKeySpecificValid {
			copy(e.SenseKeySpecific[:], f[15:18])
			e.SenseKeySpecific[0] &= 0x7f
		}
	case senseDescriptorCurrent, senseDescriptorDefer:
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: descriptor format needs 2 bytes, have %d", ErrSenseFormat, len(b))
		}
		e.Deferred = code == senseDescriptorDefer
		e.Descriptor = true
		var h [8]byte
		copy(h[:], b)
		e.Key = SenseKey(h[1] & 0x0f)
		e.ASC, e.ASCQ = h[2], h[3]
		if len(b) <= 8 {
			break
		}
		descs := b[8:min(len(b), 8+int(h[7]))]
		parseSenseDescriptors(e, descs)
	default:
		return nil, fmt.Errorf("%w: response code %#02x", ErrSenseFormat, b[0]&0x7f)
	}
	return e, nil
}

// parseSenseDescriptors reads the descriptors SPC-4 §4.5.2.1 lists after
// the descriptor-format header. A descriptor running past the end stops the
// walk; unknown types are skipped by their ADDITIONAL LENGTH.
func parseSenseDescriptors(e *SenseError, d []byte) {
	for len(d) >= 2 {
		typ, n := d[0], int(d[1])
		if 2+n > len(d) {
			return
		}
		v := d[:2+n]
		d = d[2+n:]
		switch typ {
		case 0x00: // Information (SPC-4 §4.5.2.2): VALID bit, 8-byte field.
			if len(v) >= 12 {
				e.InformationValid = v[2]&0x80 != 0
				e.Information = binary.BigEndian.Uint64(v[4:12])
			}
		case 0x01: // Command-specific information (§4.5.2.3).
			if len(v) >= 12 {
				e.CommandSpecific = binary.BigEndian.Uint64(v[4:12])
			}
		case 0x02: // Sense key specific (§4.5.2.4).
			if len(v) >= 7 && v[4]&0x80 != 0 {
				e.SenseKeySpecificValid = true
				copy(e.SenseKeySpecific[:], v[4:7])
				e.SenseKeySpecific[0] &= 0x7f
			}
		case 0x03: // Field replaceable unit (§4.5.2.5).
			if len(v) >= 4 {
				e.FRU = v[3]
			}
		case 0x04: // Stream commands (SSC-4): FILEMARK, EOM, ILI.
			if len(v) >= 4 {
				e.FileMark = v[3]&0x80 != 0
				e.EOM = v[3]&0x40 != 0
				e.ILI = v[3]&0x20 != 0
			}
		case 0x05: // Block commands (SBC-4 §4.18.2): ILI.
			if len(v) >= 4 {
				e.ILI = v[3]&0x20 != 0
			}
		}
	}
}

// Marshal encodes the sense data in fixed format, or in descriptor format
// when e.Descriptor is set (then with the information, command-specific,
// sense-key-specific, FRU and flag descriptors that carry a value). It is
// the inverse of ParseSense, for targets and tests.
func (e *SenseError) Marshal() []byte {
	if !e.Descriptor {
		b := make([]byte, 18)
		b[0] = senseFixedCurrent
		if e.Deferred {
			b[0] = senseFixedDeferred
		}
		if e.InformationValid {
			b[0] |= 0x80
		}
		b[2] = byte(e.Key & 0x0f)
		if e.FileMark {
			b[2] |= 0x80
		}
		if e.EOM {
			b[2] |= 0x40
		}
		if e.ILI {
			b[2] |= 0x20
		}
		binary.BigEndian.PutUint32(b[3:], uint32(e.Information))
		b[7] = 10
		binary.BigEndian.PutUint32(b[8:], uint32(e.CommandSpecific))
		b[12], b[13], b[14] = e.ASC, e.ASCQ, e.FRU
		if e.SenseKeySpecificValid {
			copy(b[15:], e.SenseKeySpecific[:])
			b[15] |= 0x80
		}
		return b
	}
	b := make([]byte, 8, 8+12+12+8+4+4)
	b[0] = senseDescriptorCurrent
	if e.Deferred {
		b[0] = senseDescriptorDefer
	}
	b[1] = byte(e.Key & 0x0f)
	b[2], b[3] = e.ASC, e.ASCQ
	if e.InformationValid || e.Information != 0 {
		d := make([]byte, 12)
		d[0], d[1] = 0x00, 0x0a
		if e.InformationValid {
			d[2] = 0x80
		}
		binary.BigEndian.PutUint64(d[4:], e.Information)
		b = append(b, d...)
	}
	if e.CommandSpecific != 0 {
		d := make([]byte, 12)
		d[0], d[1] = 0x01, 0x0a
		binary.BigEndian.PutUint64(d[4:], e.CommandSpecific)
		b = append(b, d...)
	}
	if e.SenseKeySpecificValid {
		d := make([]byte, 8)
		d[0], d[1] = 0x02, 0x06
		copy(d[4:], e.SenseKeySpecific[:])
		d[4] |= 0x80
		b = append(b, d...)
	}
	if e.FRU != 0 {
		b = append(b, 0x03, 0x02, 0, e.FRU)
	}
	if e.FileMark || e.EOM {
		var f byte
		if e.FileMark {
			f |= 0x80
		}
		if e.EOM {
			f |= 0x40
		}
		if e.ILI {
			f |= 0x20
		}
		b = append(b, 0x04, 0x02, 0, f)
	} else if e.ILI {
		b = append(b, 0x05, 0x02, 0, 0x20)
	}
	b[7] = byte(len(b) - 8)
	return b
}

// ascNames names the additional sense codes a block initiator meets (SPC-4
// Annex D, table D.1), keyed by ASC<<8|ASCQ.
var ascNames = map[uint16]string{
	0x0000: "NO ADDITIONAL SENSE INFORMATION",
	0x0006: "I/O PROCESS TERMINATED",
	0x0400: "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
	0x0401: "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
	0x0402: "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
	0x0403: "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
	0x0404: "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS",
	0x0407: "LOGICAL UNIT NOT READY, OPERATION IN PROGRESS",
	0x0409: "LOGICAL UNIT NOT READY, SELF-TEST IN PROGRESS",
	0x040a: "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION",
	0x040b: "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE",
	0x040c: "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE",
	0x0411: "LOGICAL UNIT NOT READY, NOTIFY (ENABLE SPINUP) REQUIRED",
	0x0500: "LOGICAL UNIT DOES NOT RESPOND TO SELECTION",
	0x0800: "LOGICAL UNIT COMMUNICATION FAILURE",
	0x0c00: "WRITE ERROR",
	0x0c02: "WRITE ERROR - AUTO REALLOCATION FAILED",
	0x1001: "LOGICAL BLOCK GUARD CHECK FAILED",
	0x1100: "UNRECOVERED READ ERROR",
	0x1401: "RECORD NOT FOUND",
	0x1a00: "PARAMETER LIST LENGTH ERROR",
	0x2000: "INVALID COMMAND OPERATION CODE",
	0x2100: "LOGICAL BLOCK ADDRESS OUT OF RANGE",
	0x2400: "INVALID FIELD IN CDB",
	0x2500: "LOGICAL UNIT NOT SUPPORTED",
	0x2600: "INVALID FIELD IN PARAMETER LIST",
	0x2700: "WRITE PROTECTED",
	0x2701: "HARDWARE WRITE PROTECTED",
	0x2702: "LOGICAL UNIT SOFTWARE WRITE PROTECTED",
	0x2707: "SPACE ALLOCATION FAILED WRITE PROTECT",
	0x2800: "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
	0x2900: "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
	0x2901: "POWER ON OCCURRED",
	0x2902: "SCSI BUS RESET OCCURRED",
	0x2903: "BUS DEVICE RESET FUNCTION OCCURRED",
	0x2904: "DEVICE INTERNAL RESET",
	0x2907: "I_T NEXUS LOSS OCCURRED",
	0x2a01: "MODE PARAMETERS CHANGED",
	0x2a03: "RESERVATIONS PREEMPTED",
	0x2a06: "ASYMMETRIC ACCESS STATE CHANGED",
	0x2a09: "CAPACITY DATA HAS CHANGED",
	0x2c00: "COMMAND SEQUENCE ERROR",
	0x2f00: "COMMANDS CLEARED BY ANOTHER INITIATOR",
	0x3100: "MEDIUM FORMAT CORRUPTED",
	0x3807: "THIN PROVISIONING SOFT THRESHOLD REACHED",
	0x3a00: "MEDIUM NOT PRESENT",
	0x3e03: "LOGICAL UNIT FAILED SELF-TEST",
	0x3f01: "MICROCODE HAS BEEN CHANGED",
	0x3f03: "INQUIRY DATA HAS CHANGED",
	0x3f0e: "REPORTED LUNS DATA HAS CHANGED",
	0x4400: "INTERNAL TARGET FAILURE",
	0x4700: "SCSI PARITY ERROR",
	0x4b00: "DATA PHASE ERROR",
	0x4e00: "OVERLAPPED COMMANDS ATTEMPTED",
	0x5503: "INSUFFICIENT RESOURCES",
	0x5d00: "FAILURE PREDICTION THRESHOLD EXCEEDED",
}

// ASCString names an ASC/ASCQ pair with its hex value, "WRITE PROTECTED
// (27/00)"; pairs missing from the table print as "ASC/ASCQ 5e/01".
func ASCString(asc, ascq byte) string {
	if n, ok := ascNames[uint16(asc)<<8|uint16(ascq)]; ok {
		return fmt.Sprintf("%s (%02x/%02x)", n, asc, ascq)
	}
	return fmt.Sprintf("ASC/ASCQ %02x/%02x", asc, ascq)
}
