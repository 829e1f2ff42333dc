package scsi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Identity names a logical unit independently of the path that reaches
// it: the designators of VPD page 0x83 associated with the logical unit
// itself (SPC-4 §7.8.6.1: association 0; the target-port and target
// designators differ from path to path by design). It is what multipath
// software compares to tell that two paths lead to one disk (Linux's
// dm-multipath WWID comes from the same page).
type Identity struct {
	Designators []Designator
}

// ErrNoIdentity means the logical unit reports no designator of its own,
// so two paths to it cannot be told apart from paths to two disks.
var ErrNoIdentity = errors.New("scsi: the logical unit reports no logical-unit designator in VPD page 0x83")

// LogicalUnitIdentity reads VPD page 0x83 of lun and keeps its
// logical-unit designators.
func LogicalUnitIdentity(ctx context.Context, ex Executor, lun LUN) (Identity, error) {
	ds, err := DeviceIdentification(ctx, ex, lun)
	if err != nil {
		return Identity{}, fmt.Errorf("scsi: identity of LUN %s: %w", lun, err)
	}
	var id Identity
	for _, d := range ds {
		if d.Association == AssocLogicalUnit {
			id.Designators = append(id.Designators, d)
		}
	}
	if len(id.Designators) == 0 {
		return Identity{}, fmt.Errorf("LUN %s: %w", lun, ErrNoIdentity)
	}
	return id, nil
}

// String lists the designators, "naa.6001…, t10.IET …".
func (id Identity) String() string {
	s := make([]string, len(id.Designators))
	for i, d := range id.Designators {
		s[i] = d.String()
	}
	return strings.Join(s, ", ")
}

// Same reports whether id and other name one logical unit: they share a
// designator (same type, code set and value), and no kind of designator
// present on both sides disagrees. The second rule matters: tgtd derives
// its NAA designators from the target and LUN numbers and only the T10
// vendor designator from the configured scsi_id, so two different disks
// exported the same way share NAA values and differ in the T10 one.
// Sharing none means two different logical units, whatever their names
// and sizes.
func (id Identity) Same(other Identity) bool {
	shared := false
	type kind struct {
		t    DesignatorType
		code byte
	}
	agree := map[kind]bool{}
	for _, a := range id.Designators {
		k := kind{a.Type, a.CodeSet}
		for _, b := range other.Designators {
			if b.Type != a.Type || b.CodeSet != a.CodeSet {
				continue
			}
			if _, seen := agree[k]; !seen {
				agree[k] = false
			}
			if slices.Equal(a.Value, b.Value) {
				shared = true
				agree[k] = true
			}
		}
	}
	for _, ok := range agree {
		if !ok {
			return false
		}
	}
	return shared
}
