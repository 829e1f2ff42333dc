package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lunboot/lunboot/internal/lio"
)

func TestLIOTarget(t *testing.T) {
	portal := netip.MustParseAddrPort("10.1.2.2:3260")
	images := map[string]lioDisk{"/img/debian.img": {copy: "/work/lio-disk0-debian.img", dev: "/dev/vda"}}
	chap := &CHAP{Username: "u", Secret: "s-secret", TargetUsername: "t", TargetSecret: "t-secret"}

	// Demo mode: any initiator, the TPG's own account, writable.
	spec := ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:x", Images: []string{"/img/debian.img"}, Sizes: []int64{1 << 30}, CHAP: chap,
		Params: map[string]string{"HeaderDigest": "CRC32C"}}
	tg, luns, err := lioTarget(spec, portal, images, 7)
	if err != nil {
		t.Fatal(err)
	}
	g := tg.TPGs[0]
	if g.Tag != 1 || g.Portals[0] != "10.1.2.2:3260" || len(g.ACLs) != 0 || g.Auth == nil || g.Auth.MutualPassword != "t-secret" {
		t.Errorf("demo-mode TPG = %+v", g)
	}
	for k, v := range map[string]string{"generate_node_acls": "1", "demo_mode_write_protect": "0", "authentication": "1", "cache_dynamic_acls": "1"} {
		if g.Attrib[k] != v {
			t.Errorf("attrib %s = %q, want %q", k, g.Attrib[k], v)
		}
	}
	if g.Params["HeaderDigest"] != "CRC32C" {
		t.Errorf("params = %v", g.Params)
	}
	if len(g.LUNs) != 2 || g.LUNs[0].Number != 0 || g.LUNs[0].File != "/dev/vda" || g.LUNs[1].Number != 1 ||
		g.LUNs[1].File != "/tmp/luns/e7-lun1.img" || g.LUNs[1].Size != 1<<30 {
		t.Errorf("LUNs = %+v", g.LUNs)
	}
	if strings.Join(luns, " ") != "/work/lio-disk0-debian.img lio:/tmp/luns/e7-lun1.img" {
		t.Errorf("luns = %v", luns)
	}
	if err := (lio.Config{Targets: []lio.Target{tg}}).Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}

	// ACL mode, read-only, an attribute overridden.
	spec = ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:y", Sizes: []int64{1 << 20}, ReadOnly: true, CHAP: chap,
		Initiators: []string{"iqn.2026-11.org.lunboot:525400123456"}, Attrib: map[string]string{"cache_dynamic_acls": "0"}}
	tg, _, err = lioTarget(spec, portal, images, 8)
	if err != nil {
		t.Fatal(err)
	}
	g = tg.TPGs[0]
	if g.Attrib["generate_node_acls"] != "0" || g.Attrib["cache_dynamic_acls"] != "0" || g.Auth != nil ||
		len(g.ACLs) != 1 || g.ACLs[0].CHAP == nil || g.ACLs[0].CHAP.UserID != "u" || !g.LUNs[0].ReadOnly || g.LUNs[0].Number != 0 {
		t.Errorf("ACL-mode TPG = %+v", g)
	}

	// An image the VM was not given.
	if _, _, err := lioTarget(ExportSpec{IQN: "iqn.2026-11.org.lunboot.lab:z", Images: []string{"/img/other.img"}}, portal, images, 9); err == nil || !strings.Contains(err.Error(), "LIOOptions.Images") {
		t.Errorf("lioTarget(unknown image) = %v, want an error naming LIOOptions.Images", err)
	}
}
