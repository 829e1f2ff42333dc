package scsi

import (
	"context"

	"github.com/lunboot/lunboot/pkg/sam"
)

// LUN is an 8-byte SAM-5 logical unit number (SAM-5 §4.7); the type lives
// in pkg/sam so that packages that only name a LUN need not import this one.
type LUN = sam.LUN

// Command is one SCSI command for a transport to carry.
type Command struct {
	LUN LUN
	// CDB is the command descriptor block (6 to 16 bytes; longer CDBs need
	// an extended-CDB AHS, which transports may refuse).
	CDB []byte
	// DataOut is the data the initiator sends (writes); nil for none.
	DataOut []byte
	// DataIn receives the data the target returns (reads); its length is the
	// expected transfer length. nil for none.
	DataIn []byte
}

// Result is what the target answered to a Command that reached it. A
// transport error (connection lost beyond recovery, protocol violation) is
// returned as an error instead.
type Result struct {
	// Status is the SCSI status byte (SAM-5 §5.3): 0x00 GOOD, 0x02 CHECK
	// CONDITION, 0x08 BUSY, 0x18 RESERVATION CONFLICT, 0x28 TASK SET FULL.
	Status byte
	// Sense holds the sense data that came with CHECK CONDITION, if any.
	Sense []byte
	// N is the number of DataIn bytes the target actually filled.
	N int
	// Residual is the underflow (positive) or overflow (negative) the
	// target reported against the expected transfer length.
	Residual int64
}

// Executor carries SCSI commands to a logical unit's device server. An
// iSCSI session implements it; tests use fakes. Execute is safe for
// concurrent use and may have many commands outstanding. Once Execute has
// returned a Result, the Executor no longer reads cmd or its CDB: the
// caller may reuse them.
type Executor interface {
	Execute(ctx context.Context, cmd *Command) (*Result, error)
}
