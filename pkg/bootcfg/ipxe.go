package bootcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lunboot/lunboot/pkg/rootpath"
)

// IPXEIQNPrefix is the naming authority of iPXE's default initiator name
// (ISCSI_DEFAULT_IQN_PREFIX in iPXE's src/net/tcp/iscsi.c).
const IPXEIQNPrefix = "iqn.2010-04.org.ipxe:"

// InitiatorIPXE is the lunboot.initiator= value that asks for iPXE's
// default initiator name, so that a machine moving from iPXE's sanboot to
// lunboot keeps the name its target's ACL already allows.
const InitiatorIPXE = "ipxe"

// IPXEInitiatorName returns the initiator name iPXE uses when no
// initiator-iqn setting (DHCP option 203) is given: its prefix followed by
// the host name (iPXE's hostname setting, DHCP option 12), or, without a
// host name, by the SMBIOS system UUID in its usual lower-case text form
// (iscsi_fetch_settings in src/net/tcp/iscsi.c). The result is normalised
// to lower case as RFC 3722 asks; folded reports whether that changed it
// (iPXE sends a host name's case unchanged, so a target that does not fold
// names may have stored it in upper case).
func IPXEInitiatorName(hostname, uuid string) (name string, folded bool, err error) {
	var raw string
	switch {
	case hostname != "":
		raw = IPXEIQNPrefix + hostname
	case uuid != "":
		if err := checkUUID(uuid); err != nil {
			return "", false, err
		}
		raw = IPXEIQNPrefix + strings.ToLower(uuid)
	default:
		return "", false, errors.New("no host name (DHCP option 12) and no SMBIOS system UUID to derive iPXE's initiator name from")
	}
	n, err := rootpath.NormalizeName(raw)
	if err != nil {
		return "", false, fmt.Errorf("iPXE's initiator name %q: %w", clip(raw), err)
	}
	return n, n != raw, nil
}

// checkUUID accepts the 8-4-4-4-12 hex form of RFC 9562 §4.
func checkUUID(u string) error {
	if len(u) != 36 {
		return fmt.Errorf("system UUID %q is not in the 8-4-4-4-12 hex form", clip(u))
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("system UUID %q is not in the 8-4-4-4-12 hex form", u)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return fmt.Errorf("system UUID %q is not in the 8-4-4-4-12 hex form", u)
			}
		}
	}
	return nil
}

// productUUID is where Linux shows the SMBIOS system UUID
// (drivers/firmware/dmi-id.c), below the sysfs mount point. The kernel
// prints it with the first three fields byte-swapped for SMBIOS 2.6 and
// later (dmi_decode_uuid, SMBIOS 3.x §7.2.1), as iPXE reads it too.
const productUUID = "class/dmi/id/product_uuid"

// ReadSystemUUID reads the SMBIOS system UUID from sysfs (sysfsRoot,
// "/sys" when empty) for lunboot.initiator=ipxe. The Setting carries the
// error when the file is missing (no DMI, as on many non-x86 machines) or
// does not hold a UUID.
func ReadSystemUUID(sysfsRoot string) Setting[string] {
	if sysfsRoot == "" {
		sysfsRoot = "/sys"
	}
	o := Origin{Detected, "SMBIOS system UUID"}
	path := filepath.Join(sysfsRoot, productUUID)
	b, err := os.ReadFile(path)
	if err != nil {
		return Setting[string]{Origin: o, Err: fmt.Errorf("read the SMBIOS system UUID: %w", err)}
	}
	u := strings.ToLower(strings.TrimSpace(string(b)))
	if err := checkUUID(u); err != nil {
		return Setting[string]{Origin: o, Err: fmt.Errorf("%s: %w", path, err)}
	}
	return Set(u, o)
}

// ipxeInitiator sets the initiator name for lunboot.initiator=ipxe, from
// the lease's host name or else the system UUID, as iPXE does. A host name
// from the command line (ip=) does not count: iPXE never saw it.
func (c *Config) ipxeInitiator(cmdline, network Source) {
	o := cmdline.IPXEInitiator.Origin
	host := ""
	if h := network.Hostname; h.IsSet() && h.Err == nil && h.Origin.Kind == DHCP {
		host = h.Value
	}
	uuid := cmdline.SystemUUID
	if host == "" && uuid.Err != nil {
		c.problem(FieldInitiator, o, fmt.Errorf("iPXE's initiator name needs a host name (DHCP option 12) or the SMBIOS system UUID: %w", uuid.Err))
		return
	}
	name, folded, err := IPXEInitiatorName(host, uuid.Value)
	if err != nil {
		c.problem(FieldInitiator, o, err)
		return
	}
	from := "the SMBIOS system UUID"
	if host != "" {
		from = "the host name from " + network.Hostname.Origin.String()
	}
	if folded {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: iPXE's initiator name folded to lower case %q (RFC 3722); iPXE sends the host name's case unchanged", o, name))
	}
	c.Initiator = name
	c.origins[FieldInitiator] = Origin{Cmdline, o.Detail + "=" + InitiatorIPXE + ", iPXE's form with " + from}
}
