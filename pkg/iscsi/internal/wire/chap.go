package wire

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// MaxBinaryLen bounds decoded large binary values such as CHAP_C and
// CHAP_R (RFC 7143 §12.1.3: challenges of at most 1024 bytes).
const MaxBinaryLen = 1024

// ErrBinary reports a malformed large binary value.
var ErrBinary = errors.New("malformed binary value")

// DecodeBinary decodes a binary value written as "0x" hex or "0b" base64
// (RFC 7143 §6.1; either case of the x/b). An odd number of hex digits has
// an implied leading zero. Values longer than MaxBinaryLen bytes fail
// before decoding.
func DecodeBinary(s string) ([]byte, error) {
	if len(s) < 3 || s[0] != '0' {
		return nil, fmt.Errorf("%w: %q must start with 0x or 0b", ErrBinary, clip(s))
	}
	body := s[2:]
	switch s[1] {
	case 'x', 'X':
		if (len(body)+1)/2 > MaxBinaryLen {
			return nil, fmt.Errorf("%w: %d hex digits exceed %d bytes", ErrBinary, len(body), MaxBinaryLen)
		}
		if len(body)%2 == 1 {
			body = "0" + body
		}
		b, err := hex.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: bad hex", ErrBinary, clip(s))
		}
		return b, nil
	case 'b', 'B':
		if base64.StdEncoding.DecodedLen(len(body)) > MaxBinaryLen+2 {
			return nil, fmt.Errorf("%w: %d base64 characters exceed %d bytes", ErrBinary, len(body), MaxBinaryLen)
		}
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: bad base64", ErrBinary, clip(s))
		}
		if len(b) > MaxBinaryLen || len(b) == 0 {
			return nil, fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBinary, len(b), MaxBinaryLen)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %q must start with 0x or 0b", ErrBinary, clip(s))
}

// EncodeHex writes b as a "0x" hex value.
func EncodeHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

// EncodeBase64 writes b as a "0b" base64 value.
func EncodeBase64(b []byte) string { return "0b" + base64.StdEncoding.EncodeToString(b) }

// ParseNumber parses a numerical value (RFC 7143 §6.1: decimal, or hex with
// 0x) no larger than max.
func ParseNumber(s string, max uint64) (uint64, error) {
	var v uint64
	var err error
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		if len(s) > 2+16 {
			return 0, fmt.Errorf("number %q too long", clip(s))
		}
		v, err = strconv.ParseUint(s[2:], 16, 64)
	} else {
		if len(s) == 0 || len(s) > 20 || s[0] == '+' || s[0] == '-' {
			return 0, fmt.Errorf("number %q is not a decimal constant", clip(s))
		}
		v, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("number %q: %w", clip(s), errors.Unwrap(err))
	}
	if v > max {
		return 0, fmt.Errorf("number %d out of range (max %d)", v, max)
	}
	return v, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// CHAP digest algorithms, numbered as the IANA "PPP Authentication
// Algorithms" registry that RFC 7143 §12.1.3 refers to (and as Linux LIO
// and open-iscsi use them).
const (
	CHAPMD5     = 5
	CHAPSHA1    = 6
	CHAPSHA256  = 7
	CHAPSHA3256 = 8
)

// CHAPHash returns a new hash for a CHAP algorithm, or nil if unknown.
func CHAPHash(alg int) hash.Hash {
	switch alg {
	case CHAPMD5:
		return md5.New()
	case CHAPSHA1:
		return sha1.New()
	case CHAPSHA256:
		return sha256.New()
	case CHAPSHA3256:
		return sha3.New256()
	}
	return nil
}

// CHAPResponse computes H(id ‖ secret ‖ challenge), the CHAP response of
// RFC 1994 §4.1 with the algorithm's hash. It returns nil for an unknown
// algorithm.
func CHAPResponse(alg int, id uint8, secret, challenge []byte) []byte {
	h := CHAPHash(alg)
	if h == nil {
		return nil
	}
	h.Write([]byte{id})
	h.Write(secret)
	h.Write(challenge)
	return h.Sum(nil)
}
