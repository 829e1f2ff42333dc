package wire

import (
	"bytes"
	"errors"
	"fmt"
)

// KV is one key=value pair of a text or login data segment (RFC 7143 §6.1).
type KV struct{ Key, Value string }

// Text limits. RFC 7143 §6.1 caps keys at 63 bytes; simple values at 255,
// large binary values (CHAP_C, CHAP_R) at 1024 bytes before encoding, which
// is at most 2050 characters in hex. MaxValueLen leaves room for that.
const (
	MaxKeyLen   = 63
	MaxValueLen = 4096
)

// ErrText reports a malformed text data segment.
var ErrText = errors.New("malformed text data")

// ParseText splits a reassembled data segment into pairs. Every pair must be
// key=value and NUL-terminated; empty strings between NULs (seen as
// padding by some targets) are skipped. At most maxPairs pairs are accepted.
func ParseText(data []byte, maxPairs int) ([]KV, error) {
	var kvs []KV
	for len(data) > 0 {
		i := bytes.IndexByte(data, 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: last pair %q is not NUL-terminated", ErrText, trunc(data))
		}
		item := data[:i]
		data = data[i+1:]
		if len(item) == 0 {
			continue
		}
		eq := bytes.IndexByte(item, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: %q has no '='", ErrText, trunc(item))
		}
		key, val := item[:eq], item[eq+1:]
		if err := checkKey(key); err != nil {
			return nil, err
		}
		if len(val) > MaxValueLen {
			return nil, fmt.Errorf("%w: value of %s is %d bytes, limit %d", ErrText, key, len(val), MaxValueLen)
		}
		if len(kvs) >= maxPairs {
			return nil, fmt.Errorf("%w: more than %d key=value pairs", ErrText, maxPairs)
		}
		kvs = append(kvs, KV{string(key), string(val)})
	}
	return kvs, nil
}

// checkKey enforces the key syntax of RFC 7143 §6.1: 1–63 characters from
// letters, digits, '.', '-', '+', '@' and '_'.
func checkKey(k []byte) error {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return fmt.Errorf("%w: key %q must be 1 to %d characters", ErrText, trunc(k), MaxKeyLen)
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '+', c == '@', c == '_':
		default:
			return fmt.Errorf("%w: key %q has character %q", ErrText, trunc(k), c)
		}
	}
	return nil
}

func trunc(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

// AppendText appends NUL-terminated key=value pairs to dst.
func AppendText(dst []byte, kvs ...KV) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}
