package main

import (
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
)

// TestCheckCombination: every -firmware/-image pair that makes sense is
// accepted; the others are refused with an error that names the choice.
func TestCheckCombination(t *testing.T) {
	tests := []struct {
		o    options
		want string // "" accepted, else a piece of the error
	}{
		{options{osName: "debian", image: "kernel", firmware: qemuvm.BIOS}, ""},
		{options{osName: "debian", image: "kernel", firmware: qemuvm.UEFI}, ""},
		{options{osName: "debian", image: "efi", firmware: qemuvm.UEFI}, ""},
		{options{osName: "debian", image: "linuxboot", firmware: qemuvm.BIOS}, ""},
		{options{osName: "debian", image: "linuxboot", firmware: qemuvm.UEFI}, ""},
		{options{osName: "probe", image: "kernel", firmware: qemuvm.BIOS, pxe: true}, ""},
		{options{osName: "debian", image: "efi", firmware: qemuvm.BIOS}, "-image efi needs -firmware uefi"},
		{options{osName: "debian", image: "efi", firmware: qemuvm.UEFI, appendArgs: "x=1"}, "-image efi takes no -append"},
		{options{osName: "debian", image: "uki"}, `-image "uki"`},
		{options{osName: "debian", image: "linuxboot", pxe: true}, "-image linuxboot boots the Debian disk; -pxe"},
		{options{osName: "probe", image: "linuxboot", firmware: qemuvm.BIOS}, ""},
		{options{osName: "probe", image: "linuxboot", firmware: qemuvm.BIOS, ipxe: true}, ""},
		{options{osName: "probe", image: "linuxboot", firmware: qemuvm.UEFI}, "-image linuxboot boots -os debian"},
		{options{osName: "probe", image: "linuxboot", firmware: qemuvm.BIOS, lockdown: true}, "-image linuxboot boots -os debian"},
		{options{osName: "probe", image: "efi", firmware: qemuvm.UEFI}, "-image efi boots -os debian"},
	}
	for _, tt := range tests {
		err := checkCombination(tt.o)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkCombination(%+v) = %v, want accepted", tt.o, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("checkCombination(%+v) = %v, want an error with %q", tt.o, err, tt.want)
		}
	}
}
