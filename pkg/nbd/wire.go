package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic numbers of the transmission phase (proto.md "Transmission";
// include/uapi/linux/nbd.h NBD_REQUEST_MAGIC, NBD_REPLY_MAGIC).
const (
	RequestMagic uint32 = 0x25609513
	ReplyMagic   uint32 = 0x67446698
)

// Sizes of the fixed headers on the wire.
const (
	// RequestSize is the size of a request header (struct nbd_request).
	RequestSize = 28
	// ReplySize is the size of a simple reply header (struct nbd_reply).
	ReplySize = 16
)

// Command is the type of an NBD request (proto.md "Request types").
type Command uint16

// The request types. Linux 6.1 sends only Read, Write, Disc, Flush and Trim
// (req_to_nbd_cmd_type in drivers/block/nbd.c).
const (
	CmdRead        Command = 0
	CmdWrite       Command = 1
	CmdDisc        Command = 2
	CmdFlush       Command = 3
	CmdTrim        Command = 4
	CmdCache       Command = 5
	CmdWriteZeroes Command = 6
	CmdBlockStatus Command = 7
)

var commandNames = map[Command]string{
	CmdRead:        "READ",
	CmdWrite:       "WRITE",
	CmdDisc:        "DISC",
	CmdFlush:       "FLUSH",
	CmdTrim:        "TRIM",
	CmdCache:       "CACHE",
	CmdWriteZeroes: "WRITE_ZEROES",
	CmdBlockStatus: "BLOCK_STATUS",
}

// String returns the protocol name of c, or "CMD(n)" for an unknown type.
func (c Command) String() string {
	if s, ok := commandNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CMD(%d)", uint16(c))
}

// CommandFlags are the per-request flags, the high 16 bits of the request's
// type word (proto.md "Command flags"; the kernel's NBD_CMD_FLAG_FUA is
// 1<<16 of that word).
type CommandFlags uint16

// The command flags Serve understands.
const (
	// CmdFlagFUA asks that the write be durable before the reply.
	CmdFlagFUA CommandFlags = 1 << 0
	// CmdFlagNoHole asks WRITE_ZEROES to allocate, not punch a hole.
	CmdFlagNoHole CommandFlags = 1 << 1
)

var commandFlagNames = []string{"FUA", "NO_HOLE", "DF", "REQ_ONE", "FAST_ZERO"}

// String lists the set flags, "FUA|NO_HOLE", or "0" when none are set.
func (f CommandFlags) String() string { return flagString(uint64(f), commandFlagNames) }

// TransmissionFlags describe the export to the client (proto.md
// "Transmission flags"). The kernel takes them in NBD_ATTR_SERVER_FLAGS and
// decides from them which requests it may send (nbd_parse_flags).
type TransmissionFlags uint16

// The transmission flags.
const (
	FlagHasFlags        TransmissionFlags = 1 << 0
	FlagReadOnly        TransmissionFlags = 1 << 1
	FlagSendFlush       TransmissionFlags = 1 << 2
	FlagSendFUA         TransmissionFlags = 1 << 3
	FlagRotational      TransmissionFlags = 1 << 4
	FlagSendTrim        TransmissionFlags = 1 << 5
	FlagSendWriteZeroes TransmissionFlags = 1 << 6
	FlagSendDF          TransmissionFlags = 1 << 7
	// FlagCanMultiConn promises that a FLUSH on one connection covers
	// writes completed on every connection. Linux refuses more than one
	// socket without it ("server does not support multiple connections per
	// device", nbd_start_device).
	FlagCanMultiConn TransmissionFlags = 1 << 8
)

var transmissionFlagNames = []string{
	"HAS_FLAGS", "READ_ONLY", "SEND_FLUSH", "SEND_FUA", "ROTATIONAL",
	"SEND_TRIM", "SEND_WRITE_ZEROES", "SEND_DF", "CAN_MULTI_CONN",
}

// String lists the set flags, "HAS_FLAGS|SEND_FLUSH", or "0".
func (f TransmissionFlags) String() string {
	return flagString(uint64(f), transmissionFlagNames)
}

func flagString(v uint64, names []string) string {
	if v == 0 {
		return "0"
	}
	var parts []string
	for i, n := range names {
		if v&(1<<i) != 0 {
			parts = append(parts, n)
			v &^= 1 << i
		}
	}
	if v != 0 {
		parts = append(parts, fmt.Sprintf("%#x", v))
	}
	return strings.Join(parts, "|")
}

// Errno is the error field of a reply. The protocol fixes the values to the
// Linux errno numbers (proto.md "Error values"), whatever the server's OS.
// Linux turns any non-zero value into BLK_STS_IOERR, so the value matters
// for other clients and for logs, not for the kernel.
type Errno uint32

// The error values the protocol defines.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ENOTSUP   Errno = 95
	ESHUTDOWN Errno = 108
)

var errnoNames = map[Errno]string{
	EPERM:     "EPERM",
	EIO:       "EIO",
	ENOMEM:    "ENOMEM",
	EINVAL:    "EINVAL",
	ENOSPC:    "ENOSPC",
	EOVERFLOW: "EOVERFLOW",
	ENOTSUP:   "ENOTSUP",
	ESHUTDOWN: "ESHUTDOWN",
}

// String returns the symbolic name, or "errno(n)".
func (e Errno) String() string {
	if s, ok := errnoNames[e]; ok {
		return s
	}
	return fmt.Sprintf("errno(%d)", uint32(e))
}

// Error makes Errno usable as an error; a blockdev.Device may return one
// (wrapped or not) to choose the reply's error value.
func (e Errno) Error() string { return "nbd: " + e.String() }

// Decoding errors.
var (
	// ErrBadMagic means a header did not start with the expected magic:
	// the stream is out of step and cannot be resynchronised.
	ErrBadMagic = errors.New("nbd: bad magic")
	// ErrShortHeader means fewer bytes than a header were given.
	ErrShortHeader = errors.New("nbd: short header")
)

// Request is a request header (proto.md "Request message"; struct
// nbd_request). A WRITE's payload of Length bytes follows it on the wire.
type Request struct {
	Flags CommandFlags
	Type  Command
	// Handle is opaque to the server and echoed in the reply. Linux packs
	// a tag and a reuse counter into it in host byte order
	// (nbd_cmd_handle); it is decoded big-endian here, so re-encoding
	// yields the same eight bytes.
	Handle uint64
	Offset uint64
	Length uint32
}

// AppendBinary appends the 28-byte wire form of r to b.
func (r Request) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, RequestMagic)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Flags))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Type))
	b = binary.BigEndian.AppendUint64(b, r.Handle)
	b = binary.BigEndian.AppendUint64(b, r.Offset)
	b = binary.BigEndian.AppendUint32(b, r.Length)
	return b, nil
}

// MarshalBinary returns the 28-byte wire form of r.
func (r Request) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, RequestSize))
}

// UnmarshalBinary decodes a request header from exactly RequestSize bytes.
func (r *Request) UnmarshalBinary(b []byte) error {
	if len(b) != RequestSize {
		return fmt.Errorf("%w: request header is %d bytes, want %d", ErrShortHeader, len(b), RequestSize)
	}
	if m := binary.BigEndian.Uint32(b); m != RequestMagic {
		return fmt.Errorf("%w: request magic %#08x, want %#08x", ErrBadMagic, m, RequestMagic)
	}
	*r = Request{
		Flags:  CommandFlags(binary.BigEndian.Uint16(b[4:])),
		Type:   Command(binary.BigEndian.Uint16(b[6:])),
		Handle: binary.BigEndian.Uint64(b[8:]),
		Offset: binary.BigEndian.Uint64(b[16:]),
		Length: binary.BigEndian.Uint32(b[24:]),
	}
	return nil
}

// String describes r for logs: "WRITE|FUA off=4096 len=512 handle=0x…".
func (r Request) String() string {
	t := r.Type.String()
	if r.Flags != 0 {
		t += "|" + r.Flags.String()
	}
	return fmt.Sprintf("%s off=%d len=%d handle=%#016x", t, r.Offset, r.Length, r.Handle)
}

// Reply is a simple reply header (proto.md "Simple reply message"; struct
// nbd_reply). A successful READ's payload follows it; an error reply never
// carries a payload (nbd_read_stat stops reading after a non-zero error).
type Reply struct {
	Error  Errno
	Handle uint64
}

// AppendBinary appends the 16-byte wire form of r to b.
func (r Reply) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, ReplyMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Error))
	b = binary.BigEndian.AppendUint64(b, r.Handle)
	return b, nil
}

// MarshalBinary returns the 16-byte wire form of r.
func (r Reply) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, ReplySize))
}

// UnmarshalBinary decodes a reply header from exactly ReplySize bytes.
func (r *Reply) UnmarshalBinary(b []byte) error {
	if len(b) != ReplySize {
		return fmt.Errorf("%w: reply header is %d bytes, want %d", ErrShortHeader, len(b), ReplySize)
	}
	if m := binary.BigEndian.Uint32(b); m != ReplyMagic {
		return fmt.Errorf("%w: reply magic %#08x, want %#08x", ErrBadMagic, m, ReplyMagic)
	}
	*r = Reply{
		Error:  Errno(binary.BigEndian.Uint32(b[4:])),
		Handle: binary.BigEndian.Uint64(b[8:]),
	}
	return nil
}

// putReply writes r into b[:ReplySize] without allocating.
func putReply(b []byte, r Reply) {
	binary.BigEndian.PutUint32(b, ReplyMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(r.Error))
	binary.BigEndian.PutUint64(b[8:], r.Handle)
}
