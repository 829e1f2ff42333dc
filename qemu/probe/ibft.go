package probe

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/internal/sysfs"
	"github.com/lunboot/lunboot/pkg/ibft"
	"github.com/lunboot/lunboot/pkg/rootpath"
	"github.com/lunboot/lunboot/pkg/scsi"
)

// DefaultIBFTDir is where the kernel's iscsi_ibft module publishes the table.
const DefaultIBFTDir = "/sys/firmware/ibft"

// ErrNoIBFT is returned by ReadIBFT when the directory does not exist: the
// kernel found no table (or iscsi_ibft is not loaded).
var ErrNoIBFT = errors.New("probe: no iBFT published (no " + DefaultIBFTDir + ")")

// ReadIBFT reads every attribute under dir (normally /sys/firmware/ibft).
// Secrets (chap-secret, rev-chap-name-secret) are read into the returned
// hand-off only, never into the attribute maps. The device link of an
// ethernetN entry is recorded as "device" = the PCI address it points to.
func ReadIBFT(dir string) (*IBFT, map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, ErrNoIBFT
	}
	if err != nil {
		return nil, nil, fmt.Errorf("probe: read %s: %w", dir, err)
	}
	t := &IBFT{}
	secrets := map[string]string{}
	for _, e := range ents {
		sub := filepath.Join(dir, e.Name())
		attrs, err := readAttrs(sub, e.Name(), secrets)
		if err != nil {
			return nil, nil, err
		}
		switch name := e.Name(); {
		case name == "initiator":
			t.Initiator = attrs
		case name == "acpi_header":
			t.Signature, t.OEMID, t.OEMTableID = attrs["signature"], attrs["oem_id"], attrs["oem_table_id"]
		case strings.HasPrefix(name, "ethernet"):
			t.NICs = append(t.NICs, IBFTEntry{Name: name, Attrs: attrs})
		case strings.HasPrefix(name, "target"):
			t.Targets = append(t.Targets, IBFTEntry{Name: name, Attrs: attrs})
		}
	}
	sort.Slice(t.NICs, func(i, j int) bool { return t.NICs[i].Name < t.NICs[j].Name })
	sort.Slice(t.Targets, func(i, j int) bool { return t.Targets[i].Name < t.Targets[j].Name })
	return t, secrets, nil
}

func readAttrs(dir, entry string, secrets map[string]string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("probe: read %s: %w", dir, err)
	}
	attrs := map[string]string{}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.Type()&fs.ModeSymlink != 0 {
			if dst, err := os.Readlink(p); err == nil {
				attrs[e.Name()] = filepath.Base(dst)
			}
			continue
		}
		if !e.Type().IsRegular() || e.Name() == "uevent" {
			continue
		}
		v, err := sysfs.ReadAttr(p)
		if err != nil {
			attrs[e.Name()] = "<" + err.Error() + ">"
			continue
		}
		if ibft.SecretAttr(e.Name()) {
			secrets[entry+"/"+e.Name()] = v
			v = rootpath.Mask
		}
		attrs[e.Name()] = v
	}
	return attrs, nil
}

func flagsOf(attrs map[string]string) int {
	n, _ := strconv.Atoi(attrs["flags"])
	return n
}

// Handoff turns the iBFT into the hand-off an OS in firmware mode would use
// (open-iscsi's fw_get_targets: the first valid target flagged for boot,
// else the first valid one), with its NIC (nic-assoc). secrets is what
// ReadIBFT returned.
func (t *IBFT) Handoff(secrets map[string]string) (*Handoff, *IBFTEntry, error) {
	var tgt *IBFTEntry
	for i := range t.Targets {
		f := flagsOf(t.Targets[i].Attrs)
		if f&1 == 0 {
			continue
		}
		if tgt == nil || f&2 != 0 && flagsOf(tgt.Attrs)&2 == 0 {
			tgt = &t.Targets[i]
		}
	}
	if tgt == nil {
		return nil, nil, errors.New("probe: iBFT has no valid target")
	}
	a := tgt.Attrs
	h := &Handoff{Source: "ibft", Target: a["target-name"]}
	if t.Initiator != nil {
		h.Initiator = t.Initiator["initiator-name"]
	}
	ip := a["ip-addr"]
	port := a["port"]
	if port == "" || port == "0" {
		port = "3260"
	}
	if net.ParseIP(ip) == nil {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%s/ip-addr %q is not an address", tgt.Name, ip))
	} else {
		h.Portal = net.JoinHostPort(ip, port)
	}
	if lun, ok := parseSysfsLUN(a["lun"]); ok {
		h.LUN = lun.String()
	} else if a["lun"] != "" {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%s/lun %q is ambiguous (the kernel prints each byte with %%x): scanning LUNs instead", tgt.Name, a["lun"]))
	}
	h.CHAPUser = a["chap-name"]
	h.ReverseUser = a["rev-chap-name"]
	h.secret = secrets[tgt.Name+"/chap-secret"]
	h.reverseSecret = secrets[tgt.Name+"/rev-chap-name-secret"]
	var nic *IBFTEntry
	for i := range t.NICs {
		if t.NICs[i].Attrs["index"] == a["nic-assoc"] {
			nic = &t.NICs[i]
		}
	}
	if nic != nil {
		h.IP = "ibft:origin=" + nic.Attrs["origin"]
	} else {
		h.Warnings = append(h.Warnings, fmt.Sprintf("%s/nic-assoc %q matches no ethernet entry", tgt.Name, a["nic-assoc"]))
	}
	return h, nic, nil
}

// parseSysfsLUN reads targetN/lun, which iscsi_ibft.c prints as eight %x
// bytes without padding: unambiguous only when it is eight digits long
// (every byte below 16), which covers the LUNs anyone boots from.
func parseSysfsLUN(s string) (scsi.LUN, bool) {
	var l scsi.LUN
	if len(s) != 8 {
		return l, false
	}
	for i := 0; i < 8; i++ {
		v, err := strconv.ParseUint(s[i:i+1], 16, 8)
		if err != nil {
			return l, false
		}
		l[i] = byte(v)
	}
	return l, true
}
