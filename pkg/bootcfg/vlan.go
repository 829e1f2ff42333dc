package bootcfg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/rootpath"
)

// VLAN is the IEEE 802.1Q VLAN the boot NIC's traffic is tagged with. The
// zero VLAN means untagged.
type VLAN struct {
	// ID is the VLAN identifier, 1 to 4094.
	ID uint16
	// Name is the VLAN interface's name, when the command line gave one
	// (dracut's vlan=<name>:<parent>); empty lets lunboot choose
	// (<parent>.<id>).
	Name string
	// Parent is the physical interface the VLAN rides on, when the command
	// line named it (vlan=); empty means the selected boot NIC.
	Parent string
}

// IsZero reports whether v is untagged.
func (v VLAN) IsZero() bool { return v.ID == 0 }

// String reads like "100", "100 (eth0.100 on eth0)" or "none".
func (v VLAN) String() string {
	if v.ID == 0 {
		return "none"
	}
	s := strconv.Itoa(int(v.ID))
	switch {
	case v.Name != "" && v.Parent != "":
		s += " (" + v.Name + " on " + v.Parent + ")"
	case v.Name != "":
		s += " (" + v.Name + ")"
	}
	return s
}

// CheckVLANID validates an 802.1Q VLAN identifier: 0 marks a priority-tagged
// frame that belongs to no VLAN and 4095 is reserved (IEEE 802.1Q-2018
// §9.6, Table 9-2), so only 1 to 4094 name a VLAN.
func CheckVLANID(id int) error {
	switch {
	case id == 0:
		return errors.New("VLAN id 0 is not a VLAN (802.1Q uses it for priority-tagged frames); give 1 to 4094")
	case id == 4095:
		return errors.New("VLAN id 4095 is reserved by 802.1Q; give 1 to 4094")
	case id < 0 || id > 4095:
		return fmt.Errorf("VLAN id %d is out of range; give 1 to 4094", id)
	}
	return nil
}

// parseVLANID reads a decimal VLAN id.
func parseVLANID(s string) (uint16, error) {
	if !isDigitsOnly(s) || len(s) > 5 {
		return 0, fmt.Errorf("VLAN id %q is not a number from 1 to 4094", s)
	}
	n, _ := strconv.Atoi(s)
	if err := CheckVLANID(n); err != nil {
		return 0, err
	}
	return uint16(n), nil
}

// parseDracutVLAN reads dracut's vlan=<vlanname>:<phys> (dracut.cmdline(7),
// modules.d/35network-legacy/parse-vlan.sh). As in dracut the name carries
// the id, in one of the four forms of vconfig's name types: vlan0100,
// vlan100, eth0.0100 or eth0.100.
func parseDracutVLAN(v string) (VLAN, error) {
	name, parent, ok := strings.Cut(v, ":")
	if !ok || name == "" || parent == "" {
		return VLAN{}, errors.New("the form is vlan=<vlanname>:<parent>, e.g. vlan=eth0.100:eth0")
	}
	if err := rootpath.CheckIfname(name); err != nil {
		return VLAN{}, fmt.Errorf("VLAN name: %w", err)
	}
	if err := rootpath.CheckIfname(parent); err != nil {
		return VLAN{}, fmt.Errorf("parent interface: %w", err)
	}
	var idText string
	switch {
	case strings.HasPrefix(name, "vlan") && isDigitsOnly(name[4:]):
		idText = name[4:]
	case strings.Contains(name, "."):
		idText = name[strings.LastIndexByte(name, '.')+1:]
	default:
		return VLAN{}, fmt.Errorf("VLAN name %q carries no VLAN id: name it vlan<id> or <parent>.<id> (e.g. %s.100), as dracut requires", name, parent)
	}
	id, err := parseVLANID(idText)
	if err != nil {
		return VLAN{}, fmt.Errorf("VLAN name %q: %w", name, err)
	}
	if name == parent {
		return VLAN{}, fmt.Errorf("the VLAN and its parent are both named %q", name)
	}
	return VLAN{ID: id, Name: name, Parent: parent}, nil
}

// vlanOpt is dracut's vlan=.
func (p *cmdParser) vlanOpt(key, v string, _ bool) error {
	vl, err := parseDracutVLAN(v)
	if err != nil {
		return err
	}
	if p.src.VLAN.IsSet() && p.src.VLAN.Value != vl {
		if p.src.VLAN.Value.Name == "" && p.src.VLAN.Value.ID == vl.ID {
			// lunboot.vlan= with the same id: vlan= adds the names.
			p.src.VLAN.Value = vl
			return nil
		}
		return fmt.Errorf("conflicts with %s given earlier: lunboot boots over one VLAN", p.src.VLAN.Origin.Detail)
	}
	p.src.VLAN = Set(vl, Origin{Cmdline, key})
	return nil
}

// lunbootVLAN is lunboot.vlan=<id>: the boot NIC, however selected, on
// VLAN <id>.
func (p *cmdParser) lunbootVLAN(key, v string, _ bool) error {
	id, err := parseVLANID(v)
	if err != nil {
		return err
	}
	if p.src.VLAN.IsSet() {
		if p.src.VLAN.Value.ID == id {
			return nil
		}
		return fmt.Errorf("VLAN %d conflicts with VLAN %d from %s", id, p.src.VLAN.Value.ID, p.src.VLAN.Origin.Detail)
	}
	p.src.VLAN = Set(VLAN{ID: id}, Origin{Cmdline, key})
	return nil
}

// finishVLAN makes vlan= and the device of ip= agree, as dracut reads them
// together: ip=<vlanname>:dhcp configures the VLAN interface, so lunboot
// selects its parent as the boot NIC and tags on top of it. ip= naming the
// parent itself configures the untagged parent (the VLAN is then unused,
// and dropped with a warning); ip= naming any other interface cannot be
// combined with the VLAN.
func (p *cmdParser) finishVLAN() error {
	vl := p.src.VLAN
	if !vl.IsSet() || vl.Value.Name == "" {
		return nil
	}
	name, parent := vl.Value.Name, vl.Value.Parent
	dev := p.src.InterfaceName
	switch {
	case !dev.IsSet():
		p.src.InterfaceName = Set(parent, vl.Origin)
	case dev.Value == name:
		p.src.InterfaceName.Value = parent
	case dev.Value == parent:
		p.src.Warnings = append(p.src.Warnings, fmt.Sprintf("kernel cmdline %s ignored: %s configures %s itself, untagged, not the VLAN %s", vl.Origin.Detail, dev.Origin.Detail, parent, name))
		p.src.VLAN = Setting[VLAN]{}
	default:
		return &CmdlineError{Key: vl.Origin.Detail, Value: name + ":" + parent,
			Err: fmt.Errorf("creates %s on %s, but %s boots over %s; lunboot boots over one interface", name, parent, dev.Origin.Detail, dev.Value)}
	}
	return nil
}
