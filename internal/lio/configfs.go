package lio

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Root is where configfs shows the target subsystem
// (target_core_configfs.c registers "target" on configfs, which is mounted
// at /sys/kernel/config).
const Root = "/sys/kernel/config/target"

// hba is the one fileio HBA the lab's backstores live under (targetcli
// names its HBAs the same way: <plugin>_<index>).
const hba = "fileio_0"

// FS writes a configuration into the configfs tree at Dir (Root in the
// guest; a scratch folder in unit tests, where the kernel's own directories
// and attributes are simply created as plain files).
type FS struct {
	Dir string
	Log *slog.Logger
	// secrets are masked in Log.
	secrets []string
	// fake creates the parents configfs would have made itself (the
	// default groups: attrib/, param/, auth/…), for unit tests on a plain
	// folder.
	fake bool
}

func (f *FS) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

func (f *FS) path(parts ...string) string {
	return filepath.Join(append([]string{f.Dir}, parts...)...)
}

func (f *FS) mkdir(p string) error {
	f.log().Debug("mkdir", "path", p)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("lio: mkdir %s: %w", p, err)
	}
	return nil
}

func (f *FS) write(p, v string) error {
	shown := v
	for _, s := range f.secrets {
		if s != "" {
			shown = strings.ReplaceAll(shown, s, "***")
		}
	}
	f.log().Debug("write", "path", p, "value", shown)
	if f.fake {
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
	}
	// configfs attributes take one write of the whole value; O_TRUNC is
	// what echo does and configfs ignores it.
	if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
		return fmt.Errorf("lio: write %q to %s: %w", shown, p, err)
	}
	return nil
}

func (f *FS) symlink(target, link string) error {
	f.log().Debug("symlink", "target", target, "link", link)
	if err := os.Symlink(target, link); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("lio: symlink %s -> %s: %w", link, target, err)
	}
	return nil
}

// sortedKeys returns m's keys in order, so that every run writes the same
// sequence.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Apply writes cfg into configfs, on a tree that holds none of it yet
// (Reset first). Each TPG is enabled last, once its LUNs, ACLs and keys are
// in place, so no initiator can log in to a half-built TPG.
func (f *FS) Apply(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.secrets = cfg.Secrets()
	dev := 0
	for _, t := range cfg.Targets {
		tdir := f.path("iscsi", t.IQN)
		if err := f.mkdir(f.path("iscsi")); err != nil {
			return err
		}
		// iscsi_target_configfs.c lio_target_call_coreaddtiqn.
		if err := f.mkdir(tdir); err != nil {
			return err
		}
		for _, g := range t.TPGs {
			gdir := filepath.Join(tdir, fmt.Sprintf("tpgt_%d", g.Tag))
			// lio_target_tiqn_addtpg.
			if err := f.mkdir(gdir); err != nil {
				return err
			}
			// DEF_TPG_ATTRIB (iscsi_target_configfs.c).
			for _, k := range sortedKeys(g.Attrib) {
				if err := f.write(filepath.Join(gdir, "attrib", k), g.Attrib[k]); err != nil {
					return err
				}
			}
			// DEF_TPG_PARAM: the keys the TPG offers in login
			// negotiation.
			for _, k := range sortedKeys(g.Params) {
				if err := f.write(filepath.Join(gdir, "param", k), g.Params[k]); err != nil {
					return err
				}
			}
			if a := g.Auth; a != nil {
				// DEF_TPG_AUTH_STR: the TPG's own account, used when
				// generate_node_acls=1 leaves no ACL to hold one.
				if err := f.writeAuth(filepath.Join(gdir, "auth"), a); err != nil {
					return err
				}
			}
			for _, p := range g.Portals {
				// lio_target_call_addnptotpg: np/<ip>:<port>.
				if err := f.mkdir(filepath.Join(gdir, "np")); err != nil {
					return err
				}
				if err := f.mkdir(filepath.Join(gdir, "np", p)); err != nil {
					return err
				}
			}
			for _, l := range g.LUNs {
				name := fmt.Sprintf("d%d", dev)
				dev++
				if err := f.backstore(name, l); err != nil {
					return fmt.Errorf("lio: target %s LUN %d: %w", t.IQN, l.Number, err)
				}
				ldir := filepath.Join(gdir, "lun", fmt.Sprintf("lun_%d", l.Number))
				if err := f.mkdir(filepath.Join(gdir, "lun")); err != nil {
					return err
				}
				// target_fabric_make_lun, then target_fcoe_lun_link: the
				// symlink to the backstore exports it.
				if err := f.mkdir(ldir); err != nil {
					return err
				}
				if err := f.symlink(f.path("core", hba, name), filepath.Join(ldir, "dev")); err != nil {
					return err
				}
			}
			for _, a := range g.ACLs {
				adir := filepath.Join(gdir, "acls", a.Initiator)
				if err := f.mkdir(filepath.Join(gdir, "acls")); err != nil {
					return err
				}
				// target_fabric_make_nodeacl → lio_target_init_nodeacl.
				if err := f.mkdir(adir); err != nil {
					return err
				}
				if a.CHAP != nil {
					// DEF_NACL_AUTH_STR.
					if err := f.writeAuth(filepath.Join(adir, "auth"), a.CHAP); err != nil {
						return err
					}
				}
				for _, l := range g.LUNs {
					mdir := filepath.Join(adir, fmt.Sprintf("lun_%d", l.Number))
					// target_fabric_make_mappedlun, then
					// target_fabric_mappedlun_link to the TPG's LUN.
					if err := f.mkdir(mdir); err != nil {
						return err
					}
					if err := f.symlink(filepath.Join(gdir, "lun", fmt.Sprintf("lun_%d", l.Number)), filepath.Join(mdir, "lun")); err != nil {
						return err
					}
					if l.ReadOnly {
						// target_fabric_mappedlun_write_protect_store.
						if err := f.write(filepath.Join(mdir, "write_protect"), "1"); err != nil {
							return err
						}
					}
				}
			}
			if !g.Disabled {
				if err := f.SetTPG(t.IQN, g.Tag, true); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (f *FS) writeAuth(dir string, a *CHAP) error {
	for _, kv := range [][2]string{
		{"userid", a.UserID}, {"password", a.Password},
		{"userid_mutual", a.MutualUserID}, {"password_mutual", a.MutualPassword},
	} {
		if kv[1] == "" {
			continue
		}
		if err := f.write(filepath.Join(dir, kv[0]), kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// backstore creates core/fileio_0/<name> backed by l.File, creating a
// sparse regular file of l.Size bytes when it does not exist.
func (f *FS) backstore(name string, l LUN) error {
	st, err := os.Stat(l.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if l.Size <= 0 {
			return fmt.Errorf("backing file %s does not exist and no size was given", l.File)
		}
		if err := os.MkdirAll(filepath.Dir(l.File), 0o755); err != nil {
			return err
		}
		fh, err := os.Create(l.File)
		if err != nil {
			return err
		}
		err = fh.Truncate(l.Size)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sparse backing file %s: %w", l.File, err)
		}
	case err != nil:
		return err
	case st.Mode().IsRegular() && l.Size == 0:
		l.Size = st.Size()
	}
	if err := f.mkdir(f.path("core")); err != nil {
		return err
	}
	if err := f.mkdir(f.path("core", hba)); err != nil {
		return err
	}
	ddir := f.path("core", hba, name)
	if err := f.mkdir(ddir); err != nil {
		return err
	}
	// target_core_file.c fd_set_configfs_dev_params: fd_dev_size is
	// required for a regular file and ignored for a block device (whose
	// size the kernel reads). Buffered I/O: the backing file lives on the
	// guest's tmpfs, where O_DSYNC buys nothing.
	ctl := "fd_dev_name=" + l.File
	if l.Size > 0 {
		ctl += fmt.Sprintf(",fd_dev_size=%d", l.Size)
	}
	ctl += ",fd_buffered_io=1"
	if err := f.write(filepath.Join(ddir, "control"), ctl); err != nil {
		return err
	}
	// target_dev_udev_path_store: the path the backstore was made from,
	// as targetcli records it (rtslib StorageObject udev_path); only shown,
	// the kernel does not use it.
	if err := f.write(filepath.Join(ddir, "udev_path"), l.File); err != nil {
		return err
	}
	// target_dev_enable_store: configures the device.
	return f.write(filepath.Join(ddir, "enable"), "1")
}

// SetTPG enables or disables a TPG (its enable attribute): a disabled TPG
// refuses logins and LIO drops its sessions.
func (f *FS) SetTPG(iqn string, tag int, enable bool) error {
	p := f.path("iscsi", iqn, fmt.Sprintf("tpgt_%d", tag))
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("lio: TPG %d of %s: %w", tag, iqn, ErrNotFound)
	}
	v := "0"
	if enable {
		v = "1"
	}
	return f.write(filepath.Join(p, "enable"), v)
}

// Reset removes every iSCSI target and fileio backstore, in the order
// configfs allows (links before what they point to, children before their
// directory). Backing files are left in place.
func (f *FS) Reset() error {
	var errs []error
	rmdir := func(p string) {
		f.log().Debug("rmdir", "path", p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("lio: rmdir %s: %w", p, err))
		}
	}
	unlinkIn := func(dir string) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Type()&fs.ModeSymlink != 0 {
				rmdir(filepath.Join(dir, e.Name()))
			}
		}
	}
	subdirs := func(dir, prefix string) []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
		return out
	}
	for _, tdir := range subdirs(f.path("iscsi"), "") {
		if filepath.Base(tdir) == "discovery_auth" {
			continue
		}
		for _, gdir := range subdirs(tdir, "tpgt_") {
			_ = os.WriteFile(filepath.Join(gdir, "enable"), []byte("0"), 0o644)
			for _, adir := range subdirs(filepath.Join(gdir, "acls"), "") {
				for _, m := range subdirs(adir, "lun_") {
					unlinkIn(m)
					rmdir(m)
				}
				rmdir(adir)
			}
			for _, l := range subdirs(filepath.Join(gdir, "lun"), "lun_") {
				unlinkIn(l)
				rmdir(l)
			}
			for _, np := range subdirs(filepath.Join(gdir, "np"), "") {
				rmdir(np)
			}
			rmdir(gdir)
		}
		rmdir(tdir)
	}
	for _, h := range subdirs(f.path("core"), "fileio_") {
		for _, d := range subdirs(h, "") {
			rmdir(d)
		}
		rmdir(h)
	}
	return errors.Join(errs...)
}

// Dump returns the readable attributes under iscsi/ and the backstores'
// info, path (relative to Dir) → contents; passwords are left out.
func (f *FS) Dump() map[string]string {
	out := map[string]string{}
	for _, top := range []string{"iscsi", "core"} {
		_ = filepath.WalkDir(f.path(top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(f.Dir, p)
			if d.Type()&fs.ModeSymlink != 0 {
				if t, err := os.Readlink(p); err == nil {
					out[rel] = "-> " + t
				}
				return nil
			}
			if d.IsDir() || strings.Contains(d.Name(), "password") {
				return nil
			}
			if top == "core" && d.Name() != "info" && d.Name() != "udev_path" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil // write-only attributes (control)
			}
			out[rel] = strings.TrimRight(string(b), "\n\x00")
			return nil
		})
	}
	return out
}
