package overlay

import (
	"encoding/binary"
	"hash/crc32"
)

func fixCRC(b []byte) {
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[:offCRC], castagnoli))
}
