package scsi

import (
	"errors"
	"fmt"
)

// Status is a SCSI status byte (SAM-5 §5.3.1, table 38).
type Status byte

// Status codes a device server returns (SAM-5 §5.3.1).
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusReservationConflict Status = 0x18
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

// String returns the SAM-5 name of the status, or its hex value.
func (s Status) String() string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("status %#02x", byte(s))
}

// Sentinel errors for the conditions callers branch on. A *SenseError or
// *StatusError matches them with errors.Is; the error itself carries the
// details (sense key, ASC/ASCQ, status).
var (
	// ErrBusy matches status BUSY: the logical unit cannot accept the
	// command now; retry later (SAM-5 §5.3.1).
	ErrBusy = errors.New("scsi: logical unit busy")
	// ErrReservationConflict matches status RESERVATION CONFLICT: another
	// initiator holds a reservation on the logical unit.
	ErrReservationConflict = errors.New("scsi: reservation conflict")
	// ErrTaskSetFull matches status TASK SET FULL: the target's command
	// queue is full; retry after an outstanding command completes.
	ErrTaskSetFull = errors.New("scsi: task set full")
	// ErrTaskAborted matches status TASK ABORTED.
	ErrTaskAborted = errors.New("scsi: task aborted")
	// ErrCheckCondition matches every CHECK CONDITION, with or without
	// sense data.
	ErrCheckCondition = errors.New("scsi: check condition")

	// ErrNotReady matches sense key NOT READY.
	ErrNotReady = errors.New("scsi: logical unit not ready")
	// ErrMediumError matches sense key MEDIUM ERROR.
	ErrMediumError = errors.New("scsi: medium error")
	// ErrHardwareError matches sense key HARDWARE ERROR.
	ErrHardwareError = errors.New("scsi: hardware error")
	// ErrIllegalRequest matches sense key ILLEGAL REQUEST.
	ErrIllegalRequest = errors.New("scsi: illegal request")
	// ErrUnitAttention matches sense key UNIT ATTENTION: the device server
	// reports an event (power on, reset, capacity or mode change) and did
	// not run the command; reissuing it is correct (SAM-5 §5.14).
	ErrUnitAttention = errors.New("scsi: unit attention")
	// ErrDataProtect matches sense key DATA PROTECT.
	ErrDataProtect = errors.New("scsi: data protect")
	// ErrAbortedCommand matches sense key ABORTED COMMAND.
	ErrAbortedCommand = errors.New("scsi: aborted command")
	// ErrMiscompare matches sense key MISCOMPARE.
	ErrMiscompare = errors.New("scsi: miscompare")

	// ErrBecomingReady matches NOT READY with ASC/ASCQ 04/01 (logical unit
	// is in process of becoming ready): worth waiting for.
	ErrBecomingReady = errors.New("scsi: logical unit becoming ready")
	// ErrMediumNotPresent matches ASC 3A (medium not present).
	ErrMediumNotPresent = errors.New("scsi: medium not present")
	// ErrLBAOutOfRange matches ASC/ASCQ 21/00 (logical block address out
	// of range).
	ErrLBAOutOfRange = errors.New("scsi: logical block address out of range")
	// ErrInvalidOpcode matches ASC/ASCQ 20/00 (invalid command operation
	// code): the device does not implement the command.
	ErrInvalidOpcode = errors.New("scsi: command not supported")
	// ErrInvalidField matches ASC 24/00 (invalid field in CDB) and 26/00
	// (invalid field in parameter list): the device rejects an option.
	ErrInvalidField = errors.New("scsi: invalid field in command")
	// ErrLUNNotSupported matches ASC/ASCQ 25/00: no logical unit with this
	// number exists behind the target.
	ErrLUNNotSupported = errors.New("scsi: logical unit not supported")
	// ErrWriteProtected matches ASC 27 (write protected, any qualifier).
	ErrWriteProtected = errors.New("scsi: write protected")
	// ErrPowerOnReset matches ASC 29 (power on, reset or I_T nexus loss).
	ErrPowerOnReset = errors.New("scsi: power on or reset occurred")
	// ErrCapacityChanged matches ASC/ASCQ 2A/09 (capacity data has changed).
	ErrCapacityChanged = errors.New("scsi: capacity data has changed")
)

// StatusError is a command that completed with a status other than GOOD
// and without usable sense data: BUSY, RESERVATION CONFLICT, TASK SET FULL,
// TASK ABORTED, ACA ACTIVE, or CHECK CONDITION whose sense data was missing
// or malformed.
type StatusError struct {
	Status Status
	// Sense holds the raw sense bytes when CHECK CONDITION came with sense
	// data that could not be decoded; nil otherwise.
	Sense []byte
	// SenseErr explains why Sense could not be decoded.
	SenseErr error
}

// Error describes the status.
func (e *StatusError) Error() string {
	switch {
	case e.Status == StatusCheckCondition && e.SenseErr != nil:
		return fmt.Sprintf("scsi: CHECK CONDITION with undecodable sense data (% x): %v", clip(e.Sense, 32), e.SenseErr)
	case e.Status == StatusCheckCondition:
		return "scsi: CHECK CONDITION without sense data"
	}
	return "scsi: status " + e.Status.String()
}

// Is matches the sentinel for the status.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrBusy:
		return e.Status == StatusBusy
	case ErrReservationConflict:
		return e.Status == StatusReservationConflict
	case ErrTaskSetFull:
		return e.Status == StatusTaskSetFull
	case ErrTaskAborted:
		return e.Status == StatusTaskAborted
	case ErrCheckCondition:
		return e.Status == StatusCheckCondition
	}
	return false
}

// Err converts a completed command's status and sense data into an error:
// nil for GOOD and CONDITION MET, a *SenseError for CHECK CONDITION with
// decodable sense data, a *StatusError otherwise. A CHECK CONDITION whose
// sense key is RECOVERED ERROR is success: SPC-4 §4.5.6 says the command
// completed after recovery action by the device server.
func (r *Result) Err() error {
	switch Status(r.Status) {
	case StatusGood, StatusConditionMet:
		return nil
	case StatusCheckCondition:
		if len(r.Sense) == 0 {
			return &StatusError{Status: StatusCheckCondition}
		}
		se, err := ParseSense(r.Sense)
		if err != nil {
			return &StatusError{Status: StatusCheckCondition, Sense: append([]byte(nil), clip(r.Sense, 252)...), SenseErr: err}
		}
		if se.Key == SenseRecoveredError {
			return nil
		}
		return se
	}
	return &StatusError{Status: Status(r.Status)}
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
