package rootpath

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lunboot/lunboot/pkg/sam"
)

// ParseLUN parses a LUN written as RFC 4173 writes it: hexadecimal, one to
// four '-'-separated groups of one to four hex digits. Each group is one
// big-endian 16-bit word of the 8-byte SAM LUN (SAM-5 §4.7), the first group
// being bytes 0–1; missing groups are zero. This is how iPXE
// (scsi_parse_lun) and EDK2 (IScsiAsciiStrToLun) read it. The empty string
// is LUN 0.
//
// Unlike iPXE, a group with more than four digits is an error rather than
// silently truncated, and neither a "0x" prefix nor a sign is accepted:
// a root-path LUN is always hex, so "0x1a" can only be a misunderstanding.
//
// Examples: "1" is Linux LUN 1, "1a" is Linux LUN 26, "40" is Linux LUN 64,
// "4000-0001" is SAM 40 00 00 01 00 00 00 00.
func ParseLUN(s string) (sam.LUN, error) {
	lun, err := parseLUN(s)
	if err != nil {
		return sam.LUN{}, &Error{Field: FieldLUN, Value: echo(s), Err: err}
	}
	return lun, nil
}

func parseLUN(s string) (sam.LUN, error) {
	var lun sam.LUN
	if s == "" {
		return lun, nil
	}
	groups := strings.Split(s, "-")
	if len(groups) > 4 {
		return lun, fmt.Errorf("%d groups; a LUN has at most 4 '-'-separated groups of hex digits", len(groups))
	}
	for i, g := range groups {
		if g == "" {
			return lun, errors.New("empty group: '-' only separates groups of hex digits (there are no negative LUNs)")
		}
		if len(g) >= 2 && g[0] == '0' && (g[1] == 'x' || g[1] == 'X') {
			return lun, fmt.Errorf("group %q: write the hex digits without \"0x\"; a root-path LUN is always hexadecimal", echo(g))
		}
		for j := 0; j < len(g); j++ {
			if hexVal(g[j]) < 0 {
				return lun, fmt.Errorf("group %q: %q is not a hex digit", echo(g), charAt(g, j))
			}
		}
		if len(g) > 4 {
			return lun, fmt.Errorf("group %q has more than 4 hex digits", echo(g))
		}
		var v int
		for j := 0; j < len(g); j++ {
			v = v<<4 | hexVal(g[j])
		}
		lun[2*i] = byte(v >> 8)
		lun[2*i+1] = byte(v)
	}
	return lun, nil
}
