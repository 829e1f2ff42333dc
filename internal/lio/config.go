// Package lio configures the Linux kernel's iSCSI target (LIO) through
// configfs, as targetcli does, for the lab's LIO target VM: the model of a
// target (Config), its application to a configfs tree (Apply, Reset), and
// the control protocol between the lab on the host and the agent in the
// guest (Request, Response).
//
// The configfs layout written here is defined by the kernel, 6.1 (the lab's
// Debian kernel):
//   - drivers/target/target_core_configfs.c: core/<hba>/<dev>/{control,
//     enable} (target_dev_control_store, target_dev_enable_store), the
//     backstores;
//   - drivers/target/target_core_file.c: fileio's control tokens
//     fd_dev_name=, fd_dev_size=, fd_buffered_io= (fd_set_configfs_dev_params);
//   - drivers/target/target_core_fabric_configfs.c: the fabric's directories
//     (<wwn>/tpgt_<n>, lun/lun_<n> and its symlink to the backstore
//     (target_fcoe_lun_link), np/, acls/<initiator>/lun_<n> and its symlink
//     to the TPG's LUN (target_fabric_mappedlun_link), the mapped LUN's
//     write_protect, the TPG's enable (target_fabric_tpg_base_enable_store,
//     calling lio_target_tiqn_enabletpg));
//   - drivers/target/iscsi/iscsi_target_configfs.c: iscsi/<iqn>
//     (lio_target_call_coreaddtiqn), tpgt_<n>/np/<ip>:<port>
//     (lio_target_call_addnptotpg), tpgt_<n>/attrib/* (DEF_TPG_ATTRIB:
//     authentication, generate_node_acls, demo_mode_write_protect,
//     cache_dynamic_acls…), tpgt_<n>/param/* (DEF_TPG_PARAM: HeaderDigest,
//     DataDigest, MaxRecvDataSegmentLength, FirstBurstLength,
//     MaxBurstLength, ImmediateData, InitialR2T…), tpgt_<n>/auth/* (the TPG's
//     own CHAP for demo mode, DEF_TPG_AUTH_STR) and acls/<initiator>/auth/*
//     (per-ACL CHAP, DEF_NACL_AUTH_STR: userid, password, userid_mutual,
//     password_mutual).
package lio

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Config is the whole configuration of the target: Apply makes configfs
// hold exactly this (after Reset).
type Config struct {
	Targets []Target `json:"targets"`
}

// Target is one iSCSI target name (a <wwn> directory under iscsi/).
type Target struct {
	// IQN is the target name as it is written to configfs. LIO keeps the
	// case of what the administrator typed.
	IQN  string `json:"iqn"`
	TPGs []TPG  `json:"tpgs"`
}

// TPG is a target portal group (tpgt_<Tag>).
type TPG struct {
	Tag int `json:"tag"`
	// Portals are "ip:port" network portals (np/<ip>:<port>).
	Portals []string `json:"portals"`
	// Disabled leaves the TPG disabled (its enable attribute 0): logins to
	// it fail, as on a target that is being reconfigured.
	Disabled bool `json:"disabled,omitempty"`
	// Attrib are tpgt_<n>/attrib values (authentication,
	// generate_node_acls, demo_mode_write_protect, cache_dynamic_acls…).
	Attrib map[string]string `json:"attrib,omitempty"`
	// Params are iSCSI keys the target offers (tpgt_<n>/param/*).
	Params map[string]string `json:"params,omitempty"`
	// Auth is the TPG's CHAP account, used in demo mode
	// (generate_node_acls=1) where no ACL carries one.
	Auth *CHAP `json:"auth,omitempty"`
	LUNs []LUN `json:"luns"`
	// ACLs admit initiators by name; each sees every LUN of the TPG at the
	// same number.
	ACLs []ACL `json:"acls,omitempty"`
}

// LUN is one logical unit of a TPG, backed by a fileio backstore.
type LUN struct {
	Number int `json:"number"`
	// File is the backing file or block device in the guest. A regular
	// file is created (sparse) with Size bytes if it does not exist.
	File string `json:"file"`
	// Size is the LUN's size in bytes for a regular file (required then).
	Size int64 `json:"size,omitempty"`
	// ReadOnly maps the LUN write-protected into every ACL (the mapped
	// LUN's write_protect); in demo mode the TPG attribute
	// demo_mode_write_protect decides instead.
	ReadOnly bool `json:"read_only,omitempty"`
}

// ACL is one initiator admitted by name (acls/<Initiator>).
type ACL struct {
	Initiator string `json:"initiator"`
	CHAP      *CHAP  `json:"chap,omitempty"`
}

// CHAP is an account: the initiator's (UserID, Password) and, for mutual
// CHAP, the target's (MutualUserID, MutualPassword).
type CHAP struct {
	UserID         string `json:"userid"`
	Password       string `json:"password"`
	MutualUserID   string `json:"userid_mutual,omitempty"`
	MutualPassword string `json:"password_mutual,omitempty"`
}

// Secrets returns the passwords of c (for masking in logs).
func (c Config) Secrets() []string {
	var out []string
	add := func(a *CHAP) {
		if a != nil {
			out = append(out, a.Password, a.MutualPassword)
		}
	}
	for _, t := range c.Targets {
		for _, g := range t.TPGs {
			add(g.Auth)
			for _, a := range g.ACLs {
				add(a.CHAP)
			}
		}
	}
	return out
}

// nameRE is what LIO accepts as a configfs directory name for a target or
// initiator name without surprises: no '/', no whitespace, no ','.
var nameRE = regexp.MustCompile(`^(iqn\.[0-9]{4}-[0-9]{2}\.[^\s/,]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$`)

// Validate checks c before anything is written, naming what is wrong.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if !nameRE.MatchString(t.IQN) {
			return fmt.Errorf("lio: target name %q is not an iqn./eui./naa. name", t.IQN)
		}
		// Two names that differ only in case are refused: RFC 3722
		// (stringprep for iSCSI names) makes them the same name, so an
		// initiator that folds case could not tell them apart.
		k := strings.ToLower(t.IQN)
		if seen[k] {
			return fmt.Errorf("lio: target name %q given twice (names are compared without case)", t.IQN)
		}
		seen[k] = true
		tags := map[int]bool{}
		for _, g := range t.TPGs {
			if g.Tag < 1 || g.Tag > 65535 || tags[g.Tag] {
				return fmt.Errorf("lio: target %s: TPG tag %d invalid or repeated (1…65535)", t.IQN, g.Tag)
			}
			tags[g.Tag] = true
			for _, p := range g.Portals {
				if _, err := netip.ParseAddrPort(p); err != nil {
					return fmt.Errorf("lio: target %s TPG %d: portal %q: %w", t.IQN, g.Tag, p, err)
				}
			}
			luns := map[int]bool{}
			for _, l := range g.LUNs {
				if l.Number < 0 || l.Number > 65535 || luns[l.Number] {
					return fmt.Errorf("lio: target %s TPG %d: LUN %d invalid or repeated", t.IQN, g.Tag, l.Number)
				}
				luns[l.Number] = true
				if !strings.HasPrefix(l.File, "/") {
					return fmt.Errorf("lio: target %s LUN %d: backing file %q is not an absolute path", t.IQN, l.Number, l.File)
				}
				if strings.ContainsAny(l.File, ",\n") {
					return fmt.Errorf("lio: target %s LUN %d: backing file %q holds ',' or a newline (fileio's control syntax)", t.IQN, l.Number, l.File)
				}
			}
			for _, a := range g.ACLs {
				if !nameRE.MatchString(a.Initiator) {
					return fmt.Errorf("lio: target %s TPG %d: ACL initiator %q is not an iqn./eui./naa. name", t.IQN, g.Tag, a.Initiator)
				}
			}
			for k, v := range g.Attrib {
				if err := checkValue("attrib "+k, k, v); err != nil {
					return fmt.Errorf("lio: target %s TPG %d: %w", t.IQN, g.Tag, err)
				}
			}
			for k, v := range g.Params {
				if err := checkValue("param "+k, k, v); err != nil {
					return fmt.Errorf("lio: target %s TPG %d: %w", t.IQN, g.Tag, err)
				}
			}
		}
	}
	return nil
}

func checkValue(what, k, v string) error {
	if k == "" || strings.ContainsAny(k, "/.\n") {
		return fmt.Errorf("%s: bad name", what)
	}
	if strings.Contains(v, "\n") {
		return fmt.Errorf("%s: value holds a newline", what)
	}
	return nil
}

// Op names a control request.
type Op string

// The control operations.
const (
	// OpApply resets the target and applies Request.Config.
	OpApply Op = "apply"
	// OpTPG enables or disables one TPG (Request.IQN, TPG, Enable).
	OpTPG Op = "tpg"
	// OpLinkDown takes the guest's NIC down for Request.Millis and brings
	// it back up (answered at once; the control connection itself goes
	// quiet meanwhile).
	OpLinkDown Op = "linkdown"
	// OpDump returns the configfs tree under target/iscsi (passwords
	// left out) and the backstores' control values.
	OpDump Op = "dump"
	// OpPing answers OK.
	OpPing Op = "ping"
	// OpRun runs Request.Argv chrooted into the VM's shared root (a
	// Debian root with targetcli-fb, mounted read-only over virtio-9p with
	// tmpfs on the folders targetcli writes, /proc, /sys, configfs and
	// /dev inside) and answers its output.
	OpRun Op = "run"
)

// Request is one line of JSON from the lab to the agent.
type Request struct {
	Op     Op       `json:"op"`
	Config *Config  `json:"config,omitempty"`
	IQN    string   `json:"iqn,omitempty"`
	TPG    int      `json:"tpg,omitempty"`
	Enable bool     `json:"enable,omitempty"`
	Millis int      `json:"millis,omitempty"`
	Argv   []string `json:"argv,omitempty"`
}

// Response is the agent's one-line JSON answer.
type Response struct {
	Error string `json:"error,omitempty"`
	// Dump maps configfs paths (relative to target/) to their contents.
	Dump map[string]string `json:"dump,omitempty"`
	// Output is OpRun's standard output and error, interleaved.
	Output string `json:"output,omitempty"`
}

// ShareTag is the virtio-9p mount tag of the root the agent chroots into
// for OpRun.
const ShareTag = "share"

// ControlPort is the agent's TCP port on the guest's address.
const ControlPort = 3262

// ErrNotFound reports a TPG the request named that configfs does not hold.
var ErrNotFound = errors.New("not found")

func itoa(n int) string { return strconv.Itoa(n) }
