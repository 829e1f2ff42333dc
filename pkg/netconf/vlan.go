package netconf

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/vishvananda/netlink"
)

// VLAN asks Configure to run DHCP (or the static address) on an 802.1Q VLAN
// interface on top of each candidate link instead of on the link itself:
// the boot NIC sits on a trunk port that carries the storage network
// tagged.
type VLAN struct {
	// ID is the VLAN identifier, 1 to 4094 (IEEE 802.1Q: 0 and 4095 are
	// not VLANs).
	ID uint16
	// Name is the VLAN interface's name (dracut's vlan=<name>:<parent>);
	// empty names it <parent>.<id>, or vlan<id>.<parent index> when that
	// is longer than the kernel's 15 bytes. A Name only fits one
	// candidate: give it with a Selector that names the parent.
	Name string
}

// vlanState is what addVLAN created, for Down.
type vlanState struct {
	parent       Link
	parentRaised bool
}

// vlanName chooses the VLAN interface's name on parent.
func (v VLAN) name(parent Link) string {
	if v.Name != "" {
		return v.Name
	}
	if n := parent.Name + "." + strconv.Itoa(int(v.ID)); len(n) <= 15 {
		return n
	}
	return "vlan" + strconv.Itoa(int(v.ID)) + "." + strconv.Itoa(parent.Index)
}

// addVLANs creates the VLAN interface on every candidate link (each set up
// first: a VLAN device has carrier only while its parent has) and returns
// them in the same order, each described with its parent's driver, module
// and PCI address, which the hand-off needs. The VLAN interfaces share the
// parent's MAC address. On error nothing created stays.
func addVLANs(parents []Link, v VLAN, log *slog.Logger) ([]Link, []*vlanState, error) {
	if v.ID == 0 || v.ID >= 4095 {
		return nil, nil, fmt.Errorf("VLAN id %d: give 1 to 4094", v.ID)
	}
	if v.Name != "" && len(parents) > 1 {
		return nil, nil, fmt.Errorf("VLAN %s: %d candidate parents; name the parent", v.Name, len(parents))
	}
	var links []Link
	var states []*vlanState
	undo := func() {
		for i := range links {
			if err := delVLAN(links[i], states[i]); err != nil {
				log.Warn("netconf: removing VLAN interface", "link", links[i].Name, "err", err)
			}
		}
	}
	for _, p := range parents {
		st := &vlanState{parent: p}
		var err error
		if st.parentRaised, err = setUp(p); err != nil {
			undo()
			return nil, nil, err
		}
		name := v.name(p)
		nv := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: p.Index}, VlanId: int(v.ID), VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}
		if err := netlink.LinkAdd(nv); err != nil {
			if st.parentRaised {
				_ = setDown(p)
			}
			undo()
			return nil, nil, fmt.Errorf("%s: create VLAN %d interface %s (is the 8021q module loaded?): %w", p.Name, v.ID, name, err)
		}
		nl, err := netlink.LinkByName(name)
		if err != nil {
			_ = netlink.LinkDel(nv)
			if st.parentRaised {
				_ = setDown(p)
			}
			undo()
			return nil, nil, fmt.Errorf("%s: find VLAN interface %s: %w", p.Name, name, err)
		}
		a := nl.Attrs()
		l := Link{Name: a.Name, Index: a.Index, MAC: append([]byte(nil), a.HardwareAddr...),
			Driver: p.Driver, Module: p.Module, PCI: p.PCI, VLAN: v.ID, Parent: p.Name}
		links = append(links, l)
		states = append(states, st)
		log.Debug("netconf: VLAN interface created", "link", l, "parent", p.Name)
	}
	return links, states, nil
}

// delVLAN removes a VLAN interface addVLANs created and sets its parent down
// again if it raised it.
func delVLAN(l Link, st *vlanState) error {
	var errs []error
	if nl, err := netlink.LinkByIndex(l.Index); err == nil {
		if err := netlink.LinkDel(nl); err != nil {
			errs = append(errs, fmt.Errorf("%s: delete VLAN interface: %w", l.Name, err))
		}
	}
	if st != nil && st.parentRaised {
		if err := setDown(st.parent); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
