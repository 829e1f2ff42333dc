package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// BHSLen is the size of the basic header segment (RFC 7143 §11.2.1).
const BHSLen = 48

// MaxDataSegment is the largest DataSegmentLength the 24-bit field can
// carry and the upper bound of MaxRecvDataSegmentLength (RFC 7143 §13.12).
const MaxDataSegment = 1<<24 - 1

// ReservedTag is the "no task" value of task tags (RFC 7143 §11.2.1.8).
const ReservedTag = 0xffffffff

// Opcode is the 6-bit PDU opcode (RFC 7143 §11.2.1.2).
type Opcode uint8

// Initiator opcodes.
const (
	OpNOPOut      Opcode = 0x00
	OpSCSICommand Opcode = 0x01
	OpTaskMgmt    Opcode = 0x02
	OpLogin       Opcode = 0x03
	OpText        Opcode = 0x04
	OpDataOut     Opcode = 0x05
	OpLogout      Opcode = 0x06
	OpSNACK       Opcode = 0x10
)

// Target opcodes.
const (
	OpNOPIn            Opcode = 0x20
	OpSCSIResponse     Opcode = 0x21
	OpTaskMgmtResponse Opcode = 0x22
	OpLoginResponse    Opcode = 0x23
	OpTextResponse     Opcode = 0x24
	OpDataIn           Opcode = 0x25
	OpLogoutResponse   Opcode = 0x26
	OpR2T              Opcode = 0x31
	OpAsyncMessage     Opcode = 0x32
	OpReject           Opcode = 0x3f
)

var opNames = map[Opcode]string{
	OpNOPOut: "NOP-Out", OpSCSICommand: "SCSI Command", OpTaskMgmt: "Task Management Request",
	OpLogin: "Login Request", OpText: "Text Request", OpDataOut: "Data-Out", OpLogout: "Logout Request",
	OpSNACK: "SNACK", OpNOPIn: "NOP-In", OpSCSIResponse: "SCSI Response",
	OpTaskMgmtResponse: "Task Management Response", OpLoginResponse: "Login Response",
	OpTextResponse: "Text Response", OpDataIn: "Data-In", OpLogoutResponse: "Logout Response",
	OpR2T: "R2T", OpAsyncMessage: "Async Message", OpReject: "Reject",
}

func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("opcode 0x%02x", uint8(o))
}

// Flag bits in byte 0 and byte 1 of the BHS.
const (
	flagImmediate = 0x40 // byte 0
	FlagFinal     = 0x80 // byte 1, most PDUs
)

// BHS is a basic header segment. Field offsets are RFC 7143 §11; all
// integers are big-endian.
type BHS [BHSLen]byte

// Opcode returns the PDU's opcode.
func (b *BHS) Opcode() Opcode { return Opcode(b[0] & 0x3f) }

// Immediate reports the I bit (immediate delivery, §11.2.1.1).
func (b *BHS) Immediate() bool { return b[0]&flagImmediate != 0 }

// SetOpcode sets byte 0.
func (b *BHS) SetOpcode(op Opcode, immediate bool) {
	b[0] = byte(op) & 0x3f
	if immediate {
		b[0] |= flagImmediate
	}
}

// Flags returns byte 1 (the F bit and opcode-specific flags).
func (b *BHS) Flags() byte { return b[1] }

// AHSLen returns TotalAHSLength in bytes (the field counts 4-byte words).
func (b *BHS) AHSLen() int { return int(b[4]) * 4 }

// DataLen returns DataSegmentLength in bytes, without padding.
func (b *BHS) DataLen() int { return int(b[5])<<16 | int(b[6])<<8 | int(b[7]) }

// SetDataLen sets DataSegmentLength; n must fit in 24 bits.
func (b *BHS) SetDataLen(n int) { b[5], b[6], b[7] = byte(n>>16), byte(n>>8), byte(n) }

// ITT returns the Initiator Task Tag (bytes 16–19 in every PDU).
func (b *BHS) ITT() uint32 { return b.u32(16) }

func (b *BHS) u32(off int) uint32      { return binary.BigEndian.Uint32(b[off:]) }
func (b *BHS) put32(off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
func (b *BHS) u16(off int) uint16      { return binary.BigEndian.Uint16(b[off:]) }
func (b *BHS) put16(off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }
func (b *BHS) lun() (l [8]byte)        { copy(l[:], b[8:16]); return l }
func (b *BHS) putLUN(l [8]byte)        { copy(b[8:16], l[:]) }
func (b *BHS) flag(mask byte) bool     { return b[1]&mask != 0 }
func (b *BHS) setFlag(mask byte, v bool) {
	if v {
		b[1] |= mask
	}
}

// header starts an encoding: it clears b and sets the opcode, I bit and
// data length.
func (b *BHS) header(op Opcode, immediate bool, dataLen int) {
	*b = BHS{}
	b.SetOpcode(op, immediate)
	b.SetDataLen(dataLen)
}

// ErrOpcode is returned by the typed decoders when the BHS carries another
// opcode than the one asked for.
var ErrOpcode = errors.New("unexpected opcode")

func (b *BHS) expect(op Opcode) error {
	if got := b.Opcode(); got != op {
		return fmt.Errorf("%w: got %v, want %v", ErrOpcode, got, op)
	}
	return nil
}

// Stage is a login stage (CSG/NSG, RFC 7143 §11.12.3).
type Stage uint8

// Login stages.
const (
	StageSecurity    Stage = 0
	StageOperational Stage = 1
	StageFullFeature Stage = 3
)

func (s Stage) String() string {
	switch s {
	case StageSecurity:
		return "SecurityNegotiation"
	case StageOperational:
		return "LoginOperationalNegotiation"
	case StageFullFeature:
		return "FullFeaturePhase"
	}
	return fmt.Sprintf("reserved stage %d", uint8(s))
}

// Login flags (byte 1).
const (
	loginTransit  = 0x80
	loginContinue = 0x40
)

// LoginRequest is the Login Request PDU (RFC 7143 §11.12). It is always
// sent with the I bit set.
type LoginRequest struct {
	Transit, Continue      bool
	CSG, NSG               Stage
	VersionMax, VersionMin uint8
	ISID                   [6]byte
	TSIH                   uint16
	ITT                    uint32
	CID                    uint16
	CmdSN, ExpStatSN       uint32
	DataLen                int
}

// Encode writes p into b.
func (p *LoginRequest) Encode(b *BHS) {
	b.header(OpLogin, true, p.DataLen)
	b.setFlag(loginTransit, p.Transit)
	b.setFlag(loginContinue, p.Continue)
	b[1] |= byte(p.CSG&3)<<2 | byte(p.NSG&3)
	b[2], b[3] = p.VersionMax, p.VersionMin
	copy(b[8:14], p.ISID[:])
	b.put16(14, p.TSIH)
	b.put32(16, p.ITT)
	b.put16(20, p.CID)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
}

// DecodeLoginRequest decodes a Login Request.
func DecodeLoginRequest(b *BHS) (p LoginRequest, err error) {
	if err := b.expect(OpLogin); err != nil {
		return p, err
	}
	p.Transit, p.Continue = b.flag(loginTransit), b.flag(loginContinue)
	p.CSG, p.NSG = Stage(b[1]>>2&3), Stage(b[1]&3)
	p.VersionMax, p.VersionMin = b[2], b[3]
	copy(p.ISID[:], b[8:14])
	p.TSIH, p.ITT, p.CID = b.u16(14), b.u32(16), b.u16(20)
	p.CmdSN, p.ExpStatSN, p.DataLen = b.u32(24), b.u32(28), b.DataLen()
	return p, nil
}

// LoginResponse is the Login Response PDU (RFC 7143 §11.13).
type LoginResponse struct {
	Transit, Continue          bool
	CSG, NSG                   Stage
	VersionMax, VersionActive  uint8
	ISID                       [6]byte
	TSIH                       uint16
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	StatusClass, StatusDetail  uint8
	DataLen                    int
}

// Encode writes p into b.
func (p *LoginResponse) Encode(b *BHS) {
	b.header(OpLoginResponse, false, p.DataLen)
	b.setFlag(loginTransit, p.Transit)
	b.setFlag(loginContinue, p.Continue)
	b[1] |= byte(p.CSG&3)<<2 | byte(p.NSG&3)
	b[2], b[3] = p.VersionMax, p.VersionActive
	copy(b[8:14], p.ISID[:])
	b.put16(14, p.TSIH)
	b.put32(16, p.ITT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b[36], b[37] = p.StatusClass, p.StatusDetail
}

// DecodeLoginResponse decodes a Login Response.
func DecodeLoginResponse(b *BHS) (p LoginResponse, err error) {
	if err := b.expect(OpLoginResponse); err != nil {
		return p, err
	}
	p.Transit, p.Continue = b.flag(loginTransit), b.flag(loginContinue)
	p.CSG, p.NSG = Stage(b[1]>>2&3), Stage(b[1]&3)
	p.VersionMax, p.VersionActive = b[2], b[3]
	copy(p.ISID[:], b[8:14])
	p.TSIH, p.ITT = b.u16(14), b.u32(16)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.StatusClass, p.StatusDetail = b[36], b[37]
	p.DataLen = b.DataLen()
	return p, nil
}

// SCSI Command flags (RFC 7143 §11.3.1).
const (
	cmdRead  = 0x40
	cmdWrite = 0x20
)

// Task attributes (RFC 7143 §11.3.1; SAM-5).
const (
	AttrUntagged = 0
	AttrSimple   = 1
	AttrOrdered  = 2
	AttrHead     = 3
	AttrACA      = 4
)

// SCSICommand is the SCSI Command PDU (RFC 7143 §11.3) with a CDB of at
// most 16 bytes (longer CDBs need an extended-CDB AHS, not supported).
type SCSICommand struct {
	Immediate                  bool
	Final, Read, Write         bool
	Attr                       uint8
	LUN                        [8]byte
	ITT                        uint32
	ExpectedDataTransferLength uint32
	CmdSN, ExpStatSN           uint32
	CDB                        [16]byte
	DataLen                    int
}

// Encode writes p into b.
func (p *SCSICommand) Encode(b *BHS) {
	b.header(OpSCSICommand, p.Immediate, p.DataLen)
	b.setFlag(FlagFinal, p.Final)
	b.setFlag(cmdRead, p.Read)
	b.setFlag(cmdWrite, p.Write)
	b[1] |= p.Attr & 7
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.ExpectedDataTransferLength)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
	copy(b[32:48], p.CDB[:])
}

// DecodeSCSICommand decodes a SCSI Command.
func DecodeSCSICommand(b *BHS) (p SCSICommand, err error) {
	if err := b.expect(OpSCSICommand); err != nil {
		return p, err
	}
	p.Immediate = b.Immediate()
	p.Final, p.Read, p.Write = b.flag(FlagFinal), b.flag(cmdRead), b.flag(cmdWrite)
	p.Attr = b[1] & 7
	p.LUN, p.ITT = b.lun(), b.u32(16)
	p.ExpectedDataTransferLength, p.CmdSN, p.ExpStatSN = b.u32(20), b.u32(24), b.u32(28)
	copy(p.CDB[:], b[32:48])
	p.DataLen = b.DataLen()
	return p, nil
}

// SCSI Response flags (RFC 7143 §11.4.1), also used by Data-In.
const (
	rspBidiOverflow  = 0x10
	rspBidiUnderflow = 0x08
	rspOverflow      = 0x04
	rspUnderflow     = 0x02
)

// SCSI Response codes (RFC 7143 §11.4.3).
const (
	ResponseCompleted     = 0x00
	ResponseTargetFailure = 0x01
)

// SCSIResponse is the SCSI Response PDU (RFC 7143 §11.4).
type SCSIResponse struct {
	BidiOverflow, BidiUnderflow bool
	Overflow, Underflow         bool
	Response, Status            uint8
	ITT                         uint32
	SNACKTag                    uint32
	StatSN, ExpCmdSN, MaxCmdSN  uint32
	ExpDataSN                   uint32
	BidiResidual, Residual      uint32
	DataLen                     int
}

// Encode writes p into b.
func (p *SCSIResponse) Encode(b *BHS) {
	b.header(OpSCSIResponse, false, p.DataLen)
	b[1] = FlagFinal
	b.setFlag(rspBidiOverflow, p.BidiOverflow)
	b.setFlag(rspBidiUnderflow, p.BidiUnderflow)
	b.setFlag(rspOverflow, p.Overflow)
	b.setFlag(rspUnderflow, p.Underflow)
	b[2], b[3] = p.Response, p.Status
	b.put32(16, p.ITT)
	b.put32(20, p.SNACKTag)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b.put32(36, p.ExpDataSN)
	b.put32(40, p.BidiResidual)
	b.put32(44, p.Residual)
}

// DecodeSCSIResponse decodes a SCSI Response.
func DecodeSCSIResponse(b *BHS) (p SCSIResponse, err error) {
	if err := b.expect(OpSCSIResponse); err != nil {
		return p, err
	}
	p.BidiOverflow, p.BidiUnderflow = b.flag(rspBidiOverflow), b.flag(rspBidiUnderflow)
	p.Overflow, p.Underflow = b.flag(rspOverflow), b.flag(rspUnderflow)
	p.Response, p.Status = b[2], b[3]
	p.ITT, p.SNACKTag = b.u32(16), b.u32(20)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.ExpDataSN, p.BidiResidual, p.Residual = b.u32(36), b.u32(40), b.u32(44)
	p.DataLen = b.DataLen()
	return p, nil
}

// DataOut is the SCSI Data-Out PDU (RFC 7143 §11.7).
type DataOut struct {
	Final        bool
	LUN          [8]byte
	ITT, TTT     uint32
	ExpStatSN    uint32
	DataSN       uint32
	BufferOffset uint32
	DataLen      int
}

// Encode writes p into b.
func (p *DataOut) Encode(b *BHS) {
	b.header(OpDataOut, false, p.DataLen)
	b.setFlag(FlagFinal, p.Final)
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(28, p.ExpStatSN)
	b.put32(36, p.DataSN)
	b.put32(40, p.BufferOffset)
}

// DecodeDataOut decodes a Data-Out.
func DecodeDataOut(b *BHS) (p DataOut, err error) {
	if err := b.expect(OpDataOut); err != nil {
		return p, err
	}
	p.Final, p.LUN = b.flag(FlagFinal), b.lun()
	p.ITT, p.TTT, p.ExpStatSN = b.u32(16), b.u32(20), b.u32(28)
	p.DataSN, p.BufferOffset, p.DataLen = b.u32(36), b.u32(40), b.DataLen()
	return p, nil
}

// Data-In flags (RFC 7143 §11.7.1).
const (
	dataAck    = 0x40
	dataStatus = 0x01
)

// DataIn is the SCSI Data-In PDU (RFC 7143 §11.7). HasStatus is the S bit:
// the PDU then also carries the command's status and residuals (phase
// collapse) and no SCSI Response follows.
type DataIn struct {
	Final, Ack                 bool
	Overflow, Underflow        bool
	HasStatus                  bool
	Status                     uint8
	LUN                        [8]byte
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	DataSN                     uint32
	BufferOffset               uint32
	Residual                   uint32
	DataLen                    int
}

// Encode writes p into b.
func (p *DataIn) Encode(b *BHS) {
	b.header(OpDataIn, false, p.DataLen)
	b.setFlag(FlagFinal, p.Final)
	b.setFlag(dataAck, p.Ack)
	b.setFlag(rspOverflow, p.Overflow)
	b.setFlag(rspUnderflow, p.Underflow)
	b.setFlag(dataStatus, p.HasStatus)
	b[3] = p.Status
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b.put32(36, p.DataSN)
	b.put32(40, p.BufferOffset)
	b.put32(44, p.Residual)
}

// DecodeDataIn decodes a Data-In.
func DecodeDataIn(b *BHS) (p DataIn, err error) {
	if err := b.expect(OpDataIn); err != nil {
		return p, err
	}
	p.Final, p.Ack = b.flag(FlagFinal), b.flag(dataAck)
	p.Overflow, p.Underflow, p.HasStatus = b.flag(rspOverflow), b.flag(rspUnderflow), b.flag(dataStatus)
	p.Status, p.LUN = b[3], b.lun()
	p.ITT, p.TTT = b.u32(16), b.u32(20)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.DataSN, p.BufferOffset, p.Residual = b.u32(36), b.u32(40), b.u32(44)
	p.DataLen = b.DataLen()
	return p, nil
}

// R2T is the Ready To Transfer PDU (RFC 7143 §11.8).
type R2T struct {
	LUN                        [8]byte
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	R2TSN                      uint32
	BufferOffset               uint32
	DesiredLength              uint32
	DataLen                    int // must be 0; kept so a hostile value is visible
}

// Encode writes p into b.
func (p *R2T) Encode(b *BHS) {
	b.header(OpR2T, false, p.DataLen)
	b[1] = FlagFinal
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b.put32(36, p.R2TSN)
	b.put32(40, p.BufferOffset)
	b.put32(44, p.DesiredLength)
}

// DecodeR2T decodes an R2T.
func DecodeR2T(b *BHS) (p R2T, err error) {
	if err := b.expect(OpR2T); err != nil {
		return p, err
	}
	p.LUN, p.ITT, p.TTT = b.lun(), b.u32(16), b.u32(20)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.R2TSN, p.BufferOffset, p.DesiredLength = b.u32(36), b.u32(40), b.u32(44)
	p.DataLen = b.DataLen()
	return p, nil
}

// NOPOut is the NOP-Out PDU (RFC 7143 §11.18).
type NOPOut struct {
	Immediate        bool
	LUN              [8]byte
	ITT, TTT         uint32
	CmdSN, ExpStatSN uint32
	DataLen          int
}

// Encode writes p into b.
func (p *NOPOut) Encode(b *BHS) {
	b.header(OpNOPOut, p.Immediate, p.DataLen)
	b[1] = FlagFinal
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
}

// DecodeNOPOut decodes a NOP-Out.
func DecodeNOPOut(b *BHS) (p NOPOut, err error) {
	if err := b.expect(OpNOPOut); err != nil {
		return p, err
	}
	p.Immediate, p.LUN = b.Immediate(), b.lun()
	p.ITT, p.TTT, p.CmdSN, p.ExpStatSN = b.u32(16), b.u32(20), b.u32(24), b.u32(28)
	p.DataLen = b.DataLen()
	return p, nil
}

// NOPIn is the NOP-In PDU (RFC 7143 §11.19). A TTT other than ReservedTag
// is a ping the initiator must answer.
type NOPIn struct {
	LUN                        [8]byte
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	DataLen                    int
}

// Encode writes p into b.
func (p *NOPIn) Encode(b *BHS) {
	b.header(OpNOPIn, false, p.DataLen)
	b[1] = FlagFinal
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
}

// DecodeNOPIn decodes a NOP-In.
func DecodeNOPIn(b *BHS) (p NOPIn, err error) {
	if err := b.expect(OpNOPIn); err != nil {
		return p, err
	}
	p.LUN, p.ITT, p.TTT = b.lun(), b.u32(16), b.u32(20)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.DataLen = b.DataLen()
	return p, nil
}

const textContinue = 0x40

// TextRequest is the Text Request PDU (RFC 7143 §11.10).
type TextRequest struct {
	Immediate        bool
	Final, Continue  bool
	LUN              [8]byte
	ITT, TTT         uint32
	CmdSN, ExpStatSN uint32
	DataLen          int
}

// Encode writes p into b.
func (p *TextRequest) Encode(b *BHS) {
	b.header(OpText, p.Immediate, p.DataLen)
	b.setFlag(FlagFinal, p.Final)
	b.setFlag(textContinue, p.Continue)
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
}

// DecodeTextRequest decodes a Text Request.
func DecodeTextRequest(b *BHS) (p TextRequest, err error) {
	if err := b.expect(OpText); err != nil {
		return p, err
	}
	p.Immediate, p.Final, p.Continue = b.Immediate(), b.flag(FlagFinal), b.flag(textContinue)
	p.LUN, p.ITT, p.TTT = b.lun(), b.u32(16), b.u32(20)
	p.CmdSN, p.ExpStatSN, p.DataLen = b.u32(24), b.u32(28), b.DataLen()
	return p, nil
}

// TextResponse is the Text Response PDU (RFC 7143 §11.11).
type TextResponse struct {
	Final, Continue            bool
	LUN                        [8]byte
	ITT, TTT                   uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	DataLen                    int
}

// Encode writes p into b.
func (p *TextResponse) Encode(b *BHS) {
	b.header(OpTextResponse, false, p.DataLen)
	b.setFlag(FlagFinal, p.Final)
	b.setFlag(textContinue, p.Continue)
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.TTT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
}

// DecodeTextResponse decodes a Text Response.
func DecodeTextResponse(b *BHS) (p TextResponse, err error) {
	if err := b.expect(OpTextResponse); err != nil {
		return p, err
	}
	p.Final, p.Continue = b.flag(FlagFinal), b.flag(textContinue)
	p.LUN, p.ITT, p.TTT = b.lun(), b.u32(16), b.u32(20)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.DataLen = b.DataLen()
	return p, nil
}

// Logout reason codes (RFC 7143 §11.14.1).
const (
	LogoutCloseSession    = 0
	LogoutCloseConnection = 1
	LogoutRecovery        = 2
)

// LogoutRequest is the Logout Request PDU (RFC 7143 §11.14).
type LogoutRequest struct {
	Immediate        bool
	Reason           uint8
	ITT              uint32
	CID              uint16
	CmdSN, ExpStatSN uint32
}

// Encode writes p into b.
func (p *LogoutRequest) Encode(b *BHS) {
	b.header(OpLogout, p.Immediate, 0)
	b[1] = FlagFinal | p.Reason&0x7f
	b.put32(16, p.ITT)
	b.put16(20, p.CID)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
}

// DecodeLogoutRequest decodes a Logout Request.
func DecodeLogoutRequest(b *BHS) (p LogoutRequest, err error) {
	if err := b.expect(OpLogout); err != nil {
		return p, err
	}
	p.Immediate, p.Reason = b.Immediate(), b[1]&0x7f
	p.ITT, p.CID, p.CmdSN, p.ExpStatSN = b.u32(16), b.u16(20), b.u32(24), b.u32(28)
	return p, nil
}

// LogoutResponse is the Logout Response PDU (RFC 7143 §11.15).
type LogoutResponse struct {
	Response                   uint8
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Time2Wait, Time2Retain     uint16
}

// Encode writes p into b.
func (p *LogoutResponse) Encode(b *BHS) {
	b.header(OpLogoutResponse, false, 0)
	b[1] = FlagFinal
	b[2] = p.Response
	b.put32(16, p.ITT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b.put16(40, p.Time2Wait)
	b.put16(42, p.Time2Retain)
}

// DecodeLogoutResponse decodes a Logout Response.
func DecodeLogoutResponse(b *BHS) (p LogoutResponse, err error) {
	if err := b.expect(OpLogoutResponse); err != nil {
		return p, err
	}
	p.Response, p.ITT = b[2], b.u32(16)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.Time2Wait, p.Time2Retain = b.u16(40), b.u16(42)
	return p, nil
}

// Async events (RFC 7143 §11.9.1).
const (
	AsyncSCSIEvent      = 0
	AsyncLogoutRequest  = 1
	AsyncDropConnection = 2
	AsyncDropAll        = 3
	AsyncRenegotiate    = 4
	AsyncVendor         = 255
)

// AsyncMessage is the Asynchronous Message PDU (RFC 7143 §11.9).
type AsyncMessage struct {
	LUN                        [8]byte
	StatSN, ExpCmdSN, MaxCmdSN uint32
	Event, VCode               uint8
	Param1, Param2, Param3     uint16
	DataLen                    int
}

// Encode writes p into b. The ITT field is always the reserved tag.
func (p *AsyncMessage) Encode(b *BHS) {
	b.header(OpAsyncMessage, false, p.DataLen)
	b[1] = FlagFinal
	b.putLUN(p.LUN)
	b.put32(16, ReservedTag)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b[36], b[37] = p.Event, p.VCode
	b.put16(38, p.Param1)
	b.put16(40, p.Param2)
	b.put16(42, p.Param3)
}

// DecodeAsyncMessage decodes an Asynchronous Message.
func DecodeAsyncMessage(b *BHS) (p AsyncMessage, err error) {
	if err := b.expect(OpAsyncMessage); err != nil {
		return p, err
	}
	p.LUN = b.lun()
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.Event, p.VCode = b[36], b[37]
	p.Param1, p.Param2, p.Param3 = b.u16(38), b.u16(40), b.u16(42)
	p.DataLen = b.DataLen()
	return p, nil
}

// Reject reasons (RFC 7143 §11.17.1).
const (
	RejectDataDigest       = 0x02
	RejectSNACK            = 0x03
	RejectProtocolError    = 0x04
	RejectNotSupported     = 0x05
	RejectImmediate        = 0x06
	RejectTaskInProgress   = 0x07
	RejectInvalidDataAck   = 0x08
	RejectInvalidField     = 0x09
	RejectLongOp           = 0x0a
	RejectNegotiationReset = 0x0b
	RejectWaitingLogout    = 0x0c
)

// RejectReasonString names a Reject reason code.
func RejectReasonString(r uint8) string {
	switch r {
	case RejectDataDigest:
		return "data digest error"
	case RejectSNACK:
		return "SNACK reject"
	case RejectProtocolError:
		return "protocol error"
	case RejectNotSupported:
		return "command not supported"
	case RejectImmediate:
		return "immediate command reject (too many)"
	case RejectTaskInProgress:
		return "task in progress"
	case RejectInvalidDataAck:
		return "invalid data ack"
	case RejectInvalidField:
		return "invalid PDU field"
	case RejectLongOp:
		return "long operation reject (out of resources)"
	case RejectNegotiationReset:
		return "negotiation reset"
	case RejectWaitingLogout:
		return "waiting for logout"
	}
	return fmt.Sprintf("reason 0x%02x", r)
}

// Reject is the Reject PDU (RFC 7143 §11.17). Its data segment holds the
// rejected PDU's BHS.
type Reject struct {
	Reason                     uint8
	StatSN, ExpCmdSN, MaxCmdSN uint32
	DataSN                     uint32
	DataLen                    int
}

// Encode writes p into b.
func (p *Reject) Encode(b *BHS) {
	b.header(OpReject, false, p.DataLen)
	b[1] = FlagFinal
	b[2] = p.Reason
	b.put32(16, ReservedTag)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
	b.put32(36, p.DataSN)
}

// DecodeReject decodes a Reject.
func DecodeReject(b *BHS) (p Reject, err error) {
	if err := b.expect(OpReject); err != nil {
		return p, err
	}
	p.Reason = b[2]
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	p.DataSN, p.DataLen = b.u32(36), b.DataLen()
	return p, nil
}

// Task management functions (RFC 7143 §11.5.1).
const (
	TMFAbortTask        = 1
	TMFAbortTaskSet     = 2
	TMFLogicalUnitReset = 5
)

// TaskMgmtRequest is the Task Management Function Request (RFC 7143 §11.5).
type TaskMgmtRequest struct {
	Immediate           bool
	Function            uint8
	LUN                 [8]byte
	ITT, RTT            uint32
	CmdSN, ExpStatSN    uint32
	RefCmdSN, ExpDataSN uint32
}

// Encode writes p into b.
func (p *TaskMgmtRequest) Encode(b *BHS) {
	b.header(OpTaskMgmt, p.Immediate, 0)
	b[1] = FlagFinal | p.Function&0x7f
	b.putLUN(p.LUN)
	b.put32(16, p.ITT)
	b.put32(20, p.RTT)
	b.put32(24, p.CmdSN)
	b.put32(28, p.ExpStatSN)
	b.put32(32, p.RefCmdSN)
	b.put32(36, p.ExpDataSN)
}

// DecodeTaskMgmtRequest decodes a Task Management Function Request.
func DecodeTaskMgmtRequest(b *BHS) (p TaskMgmtRequest, err error) {
	if err := b.expect(OpTaskMgmt); err != nil {
		return p, err
	}
	p.Immediate, p.Function, p.LUN = b.Immediate(), b[1]&0x7f, b.lun()
	p.ITT, p.RTT, p.CmdSN, p.ExpStatSN = b.u32(16), b.u32(20), b.u32(24), b.u32(28)
	p.RefCmdSN, p.ExpDataSN = b.u32(32), b.u32(36)
	return p, nil
}

// TaskMgmtResponse is the Task Management Function Response (RFC 7143 §11.6).
type TaskMgmtResponse struct {
	Response                   uint8
	ITT                        uint32
	StatSN, ExpCmdSN, MaxCmdSN uint32
}

// Encode writes p into b.
func (p *TaskMgmtResponse) Encode(b *BHS) {
	b.header(OpTaskMgmtResponse, false, 0)
	b[1] = FlagFinal
	b[2] = p.Response
	b.put32(16, p.ITT)
	b.put32(24, p.StatSN)
	b.put32(28, p.ExpCmdSN)
	b.put32(32, p.MaxCmdSN)
}

// DecodeTaskMgmtResponse decodes a Task Management Function Response.
func DecodeTaskMgmtResponse(b *BHS) (p TaskMgmtResponse, err error) {
	if err := b.expect(OpTaskMgmtResponse); err != nil {
		return p, err
	}
	p.Response, p.ITT = b[2], b.u32(16)
	p.StatSN, p.ExpCmdSN, p.MaxCmdSN = b.u32(24), b.u32(28), b.u32(32)
	return p, nil
}

// StatusSeq returns the StatSN, ExpCmdSN and MaxCmdSN fields of a target
// PDU and whether that opcode carries them (RFC 7143 §11: bytes 24–35 of
// every target PDU except Login Response during login are the same three
// fields). valid is false for initiator opcodes.
func (b *BHS) StatusSeq() (statSN, expCmdSN, maxCmdSN uint32, valid bool) {
	switch b.Opcode() {
	case OpNOPIn, OpSCSIResponse, OpTaskMgmtResponse, OpLoginResponse, OpTextResponse,
		OpDataIn, OpLogoutResponse, OpR2T, OpAsyncMessage, OpReject:
		return b.u32(24), b.u32(28), b.u32(32), true
	}
	return 0, 0, 0, false
}
