package handoff

import (
	"testing"

	"github.com/lunboot/lunboot/internal/qemuvm"
)

// TestPowerOnAgainConfig: the guest of a second power-on is the first
// one's — the network's arguments Start put on the command line (a static
// address, a VLAN), the firmware and the ESP with the EFI executable —
// under another name, whatever the caller's Config says.
func TestPowerOnAgainConfig(t *testing.T) {
	tests := []struct {
		name string
		m    *Machine
	}{
		{"static", &Machine{cfg: Config{Kernel: "vmlinuz", Image: "lunboot.cpio.xz",
			Args: "ip=10.21.35.50::10.21.35.1:255.255.255.0:lunboot-static:eth0:none netroot=iscsi:10.21.35.1::3260:1:iqn.2026-11.org.lunboot.lab:debian"}}},
		{"vlan", &Machine{cfg: Config{Kernel: "vmlinuz", Image: "lunboot.cpio.xz", Args: "vlan=eth0.100:eth0 ip=eth0.100:dhcp lunboot.handoff=cmdline"}}},
		{"efi", &Machine{cfg: Config{EFI: "lunboot.efi", Firmware: qemuvm.UEFI}, esp: "/lab/esp-lunboot.img"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, again := tt.m.guestConfig(""), tt.m.guestConfig("-2")
			if again.Name != first.Name+"-2" {
				t.Errorf("second guest's name = %q, want %q", again.Name, first.Name+"-2")
			}
			if again.Cmdline != first.Cmdline || again.Kernel != first.Kernel || again.Initrd != first.Initrd || again.Firmware != first.Firmware || again.DiskBoot != first.DiskBoot {
				t.Errorf("second power-on = %+v, want the first boot's guest %+v", again, first)
			}
			if tt.m.cfg.Args != "" && again.Cmdline != "console=ttyS0 "+tt.m.cfg.Args {
				t.Errorf("second power-on's command line = %q, want the first boot's arguments %q", again.Cmdline, tt.m.cfg.Args)
			}
			if tt.m.esp != "" {
				if !again.DiskBoot || len(again.Drives) != 1 || again.Drives[0].File != tt.m.esp || !again.Drives[0].Snapshot || again.Kernel != "" {
					t.Errorf("second power-on of an EFI executable = %+v, want a disk boot from the snapshot of %s", again, tt.m.esp)
				}
			}
		})
	}
}
