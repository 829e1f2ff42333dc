package lio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sample(dir string) Config {
	return Config{Targets: []Target{{
		IQN: "iqn.2000-01.com.synology:DiskStation.Target-1.abc",
		TPGs: []TPG{{
			Tag:     1,
			Portals: []string{"10.0.0.2:3260"},
			Attrib:  map[string]string{"authentication": "1", "generate_node_acls": "0"},
			Params:  map[string]string{"HeaderDigest": "CRC32C", "MaxBurstLength": "4096"},
			LUNs: []LUN{
				{Number: 0, File: filepath.Join(dir, "lun0.img"), Size: 1 << 20},
				{Number: 1, File: filepath.Join(dir, "lun1.img"), Size: 3 << 40, ReadOnly: true},
			},
			ACLs: []ACL{{Initiator: "iqn.2026-11.org.lunboot:525400123456",
				CHAP: &CHAP{UserID: "u", Password: "secret-1", MutualUserID: "t", MutualPassword: "secret-2"}}},
		}},
	}}}
}

func TestApply(t *testing.T) {
	root := t.TempDir()
	files := t.TempDir()
	f := &FS{Dir: root, fake: true}
	if err := f.Apply(sample(files)); err != nil {
		t.Fatalf("Apply = %v", err)
	}
	g := "iscsi/iqn.2000-01.com.synology:DiskStation.Target-1.abc/tpgt_1"
	acl := g + "/acls/iqn.2026-11.org.lunboot:525400123456"
	want := map[string]string{
		g + "/attrib/authentication":     "1",
		g + "/attrib/generate_node_acls": "0",
		g + "/param/HeaderDigest":        "CRC32C",
		g + "/param/MaxBurstLength":      "4096",
		g + "/enable":                    "1",
		acl + "/auth/userid":             "u",
		acl + "/auth/password":           "secret-1",
		acl + "/auth/password_mutual":    "secret-2",
		acl + "/lun_1/write_protect":     "1",
		"core/fileio_0/d0/control":       "fd_dev_name=" + files + "/lun0.img,fd_dev_size=1048576,fd_buffered_io=1",
		"core/fileio_0/d0/enable":        "1",
		"core/fileio_0/d1/control":       "fd_dev_name=" + files + "/lun1.img,fd_dev_size=3298534883328,fd_buffered_io=1",
	}
	for p, v := range want {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(b) != v {
			t.Errorf("%s = %q, %v; want %q", p, b, err, v)
		}
	}
	for p, target := range map[string]string{
		g + "/lun/lun_0/dev": filepath.Join(root, "core/fileio_0/d0"),
		g + "/lun/lun_1/dev": filepath.Join(root, "core/fileio_0/d1"),
		acl + "/lun_0/lun":   filepath.Join(root, g, "lun/lun_0"),
		acl + "/lun_1/lun":   filepath.Join(root, g, "lun/lun_1"),
	} {
		if got, err := os.Readlink(filepath.Join(root, p)); err != nil || got != target {
			t.Errorf("link %s -> %q, %v; want %q", p, got, err, target)
		}
	}
	if _, err := os.Stat(filepath.Join(root, g, "np", "10.0.0.2:3260")); err != nil {
		t.Errorf("portal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, acl, "lun_0", "write_protect")); err == nil {
		t.Errorf("a read-write LUN got write_protect")
	}
	// The 3 TiB backing file is sparse.
	st, err := os.Stat(filepath.Join(files, "lun1.img"))
	if err != nil || st.Size() != 3<<40 {
		t.Errorf("lun1.img: %v, %v", st, err)
	}
	dump := f.Dump()
	for p, v := range dump {
		if strings.Contains(p, "password") || strings.Contains(v, "secret-") {
			t.Errorf("Dump shows a password: %s = %q", p, v)
		}
	}
	if dump[g+"/param/HeaderDigest"] != "CRC32C" {
		t.Errorf("Dump misses the TPG's params: %v", dump)
	}
}

func TestSetTPG(t *testing.T) {
	root := t.TempDir()
	f := &FS{Dir: root, fake: true}
	cfg := sample(t.TempDir())
	cfg.Targets[0].TPGs[0].Disabled = true
	if err := f.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	en := filepath.Join(root, "iscsi", cfg.Targets[0].IQN, "tpgt_1", "enable")
	if _, err := os.Stat(en); err == nil {
		t.Errorf("a Disabled TPG was enabled")
	}
	if err := f.SetTPG(cfg.Targets[0].IQN, 1, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(en); string(b) != "1" {
		t.Errorf("enable = %q after SetTPG(true)", b)
	}
	if err := f.SetTPG(cfg.Targets[0].IQN, 2, true); err == nil {
		t.Errorf("SetTPG on a missing TPG succeeded")
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad target name", func(c *Config) { c.Targets[0].IQN = "disk1" }, "not an iqn."},
		{"names differing in case", func(c *Config) {
			c.Targets = append(c.Targets, c.Targets[0])
			c.Targets[1].IQN = strings.ToLower(c.Targets[1].IQN)
		}, "given twice"},
		{"TPG 0", func(c *Config) { c.Targets[0].TPGs[0].Tag = 0 }, "TPG tag 0"},
		{"bad portal", func(c *Config) { c.Targets[0].TPGs[0].Portals = []string{"10.0.0.2"} }, "portal"},
		{"LUN twice", func(c *Config) { c.Targets[0].TPGs[0].LUNs[1].Number = 0 }, "LUN 0 invalid or repeated"},
		{"relative file", func(c *Config) { c.Targets[0].TPGs[0].LUNs[0].File = "lun.img" }, "absolute"},
		{"comma in file", func(c *Config) { c.Targets[0].TPGs[0].LUNs[0].File = "/a,b" }, "control syntax"},
		{"bad ACL", func(c *Config) { c.Targets[0].TPGs[0].ACLs[0].Initiator = "host1" }, "ACL initiator"},
		{"param with a newline", func(c *Config) { c.Targets[0].TPGs[0].Params["X"] = "a\nb" }, "newline"},
		{"attrib path", func(c *Config) { c.Targets[0].TPGs[0].Attrib["../enable"] = "1" }, "bad name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := sample("/tmp")
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := sample("/tmp").Validate(); err != nil {
		t.Errorf("Validate(sample) = %v", err)
	}
}
