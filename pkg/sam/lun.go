// Package sam holds the SCSI Architecture Model's logical unit number
// (SAM-5 §4.7) on its own, with its Linux and RFC 4173 spellings, so that
// what only names a LUN (a root-path, an iBFT, the boot configuration)
// need not import the SCSI disk layer (pkg/scsi) that addresses one.
package sam

import (
	"fmt"
	"strings"
)

// LUN is an 8-byte SAM-5 logical unit number as it travels on the wire
// (SAM-5 §4.7), for example in an iSCSI SCSI Command PDU or a REPORT LUNS list.
type LUN [8]byte

// Linux returns the LUN as the Linux SCSI midlayer numbers it (the integer in
// /sys/class/scsi_device/H:C:T:L, /dev/disk/by-path/*-lun-L and what OS
// scripts such as dracut expect). The mapping swaps each 16-bit addressing
// level into place so that a single-level LUN n (bytes 00 0n 00…) becomes n;
// see scsilun_to_int in the kernel's drivers/scsi/scsi_common.c.
func (l LUN) Linux() uint64 {
	var n uint64
	for i := 0; i < len(l); i += 2 {
		n |= uint64(l[i])<<((i+1)*8) | uint64(l[i+1])<<(i*8)
	}
	return n
}

// LUNFromLinux is the inverse of LUN.Linux (the kernel's int_to_scsilun).
func LUNFromLinux(n uint64) LUN {
	var l LUN
	for i := 0; i < len(l); i += 2 {
		l[i] = byte(n >> ((i + 1) * 8))
		l[i+1] = byte(n >> (i * 8))
	}
	return l
}

// String formats the LUN as RFC 4173 writes it: up to four '-'-separated
// 16-bit hex groups, trailing zero groups omitted ("0", "1a", "4000-0001").
func (l LUN) String() string {
	last := 0
	for g := 0; g < 4; g++ {
		if l[2*g] != 0 || l[2*g+1] != 0 {
			last = g
		}
	}
	s := ""
	for g := 0; g <= last; g++ {
		if g > 0 {
			s += "-"
		}
		v := uint16(l[2*g])<<8 | uint16(l[2*g+1])
		if g == 0 {
			s += fmt.Sprintf("%x", v)
		} else {
			s += fmt.Sprintf("%04x", v)
		}
	}
	return s
}

// FormatLUNs lists LUNs for a message, each in both numberings an operator
// meets, since they are easily mixed up: as an RFC 4173 root-path writes it
// (hex, String) and as Linux and iSCSI URLs number it (decimal, Linux).
// It is the one format every lunboot message that lists a target's LUNs
// uses: "LUNs 0 (Linux 0), 1a (Linux 26)", "LUN 1 (Linux 1)", "no LUNs".
func FormatLUNs(luns []LUN) string {
	if len(luns) == 0 {
		return "no LUNs"
	}
	parts := make([]string, len(luns))
	for i, l := range luns {
		parts[i] = fmt.Sprintf("%s (Linux %d)", l, l.Linux())
	}
	word := "LUNs "
	if len(luns) == 1 {
		word = "LUN "
	}
	return word + strings.Join(parts, ", ")
}
