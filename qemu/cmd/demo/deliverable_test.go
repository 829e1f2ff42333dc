package main

import (
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
)

// TestCheckCombination: every -firmware/-image pair that makes sense is
// accepted; the others are refused with an error that names the choice.
func TestCheckCombination(t *testing.T) {
	debian := options{osName: "debian"}
	with := func(o options, f func(*options)) options { f(&o); return o }
	tests := []struct {
		o    options
		fw   qemuvm.Firmware
		want string // "" accepted, else a piece of the error
	}{
		{with(debian, func(o *options) { o.image, o.firmware = "kernel", "bios" }), qemuvm.BIOS, ""},
		{with(debian, func(o *options) { o.image, o.firmware = "kernel", "uefi" }), qemuvm.UEFI, ""},
		{with(debian, func(o *options) { o.image, o.firmware = "efi", "uefi" }), qemuvm.UEFI, ""},
		{with(debian, func(o *options) { o.image, o.firmware = "linuxboot", "bios" }), qemuvm.BIOS, ""},
		{with(debian, func(o *options) { o.image, o.firmware = "linuxboot", "uefi" }), qemuvm.UEFI, ""},
		{with(debian, func(o *options) { o.image, o.firmware = "efi", "bios" }), qemuvm.BIOS, "-image efi needs -firmware uefi"},
		{with(debian, func(o *options) { o.image, o.firmware, o.appendArgs = "efi", "uefi", "x=1" }), qemuvm.UEFI, "-image efi takes no -append"},
		{with(debian, func(o *options) { o.image = "uki" }), qemuvm.BIOS, `-image "uki"`},
		{with(debian, func(o *options) { o.image, o.firmware, o.pxe = "kernel", "uefi", true }), qemuvm.UEFI, "-firmware uefi boots the Debian disk; -pxe"},
		{with(debian, func(o *options) { o.image, o.osName = "linuxboot", "probe" }), qemuvm.BIOS, "-image linuxboot boots -os debian"},
		{with(debian, func(o *options) { o.image, o.pxe = "kernel", true }), qemuvm.BIOS, ""},
	}
	for _, tt := range tests {
		err := checkCombination(tt.o, tt.fw)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkCombination(-firmware %v -image %s) = %v, want accepted", tt.fw, tt.o.image, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("checkCombination(-firmware %v -image %s) = %v, want an error with %q", tt.fw, tt.o.image, err, tt.want)
		}
	}
}
