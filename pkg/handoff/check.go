package handoff

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Requirements is what Check verifies beyond the iSCSI tools themselves.
type Requirements struct {
	// NICModule is the kernel module driving the boot NIC (its
	// /sys/class/net/<if>/device/driver/module, or the driver's name when
	// built in: netconf.Link.Module or .Driver); "" skips that check.
	NICModule string
	// KernelVersion limits module checks to lib/modules/<version>; "" means
	// any version in the initrd.
	KernelVersion string
	// ExtraBuiltin lists modules built into the OS kernel, from its
	// modules.builtin on the root file system, for initrds without one.
	ExtraBuiltin []string
	// Mode is the requested hand-off; ModeIBFT makes iscsi_ibft required.
	Mode Mode
	// Dialect, when its Generator is known, replaces the detected one: the
	// items of that generator are checked.
	Dialect Dialect
	// VLAN is the boot NIC's 802.1Q VLAN id (0: untagged); a dracut
	// initrd then needs the 8021q module.
	VLAN uint16
}

// Item is one thing the OS initrd needs.
type Item struct {
	Name    string
	Present bool
	// Where says where it was found, or what was looked for.
	Where string
	// Fix says how to add it when it is missing.
	Fix string
	// Required items block the boot when missing; the others only limit
	// the choice of mode.
	Required bool
	// Unknown: absence could not be established (a module missing from an
	// initrd that carries no modules.builtin may be built in).
	Unknown bool
}

// Capability is Check's verdict on whether the OS initrd can log in to the
// target again after kexec.
type Capability struct {
	Dialect Dialect
	Items   []Item
	// IBFT reports whether the initrd can use an iBFT (iscsi_ibft present).
	IBFT bool
	// Notes are warnings that do not block: parameters baked into the
	// initrd, a network backend with limits.
	Notes []string
}

// OK reports whether every required item is present (or unknown).
func (c *Capability) OK() bool { return len(c.Missing()) == 0 }

// Missing lists the required items that are absent.
func (c *Capability) Missing() []Item {
	var m []Item
	for _, it := range c.Items {
		if it.Required && !it.Present && !it.Unknown {
			m = append(m, it)
		}
	}
	return m
}

// NotReadyError is Capability.Err's error: what is missing and how to fix it.
type NotReadyError struct {
	Dialect Dialect
	Missing []Item
}

// ErrNotReady is matched by errors.Is for a NotReadyError.
var ErrNotReady = errors.New("handoff: the OS initrd cannot log in to the iSCSI target")

// Error lists the missing items and their fixes.
func (e *NotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the OS initrd (%s) cannot log in to the iSCSI target after kexec:", e.Dialect)
	for _, it := range e.Missing {
		fmt.Fprintf(&b, "\n  missing %s", it.Name)
		if it.Where != "" {
			fmt.Fprintf(&b, " (%s)", it.Where)
		}
		if it.Fix != "" {
			fmt.Fprintf(&b, "\n    fix: %s", it.Fix)
		}
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotReady) true.
func (e *NotReadyError) Is(target error) bool { return target == ErrNotReady }

// Err returns nil when OK, else a *NotReadyError.
func (c *Capability) Err() error {
	if m := c.Missing(); len(m) > 0 {
		return &NotReadyError{Dialect: c.Dialect, Missing: m}
	}
	return nil
}

// Fix texts, per generator.
const (
	fixDebianISCSI   = "in the OS: `apt install open-iscsi`, make sure /etc/initramfs-tools/conf.d has no NO_ISCSI_IN_INITRAMFS=yes, then `update-initramfs -u`"
	fixDebianModules = "in the OS: add %s to /etc/initramfs-tools/modules (or set MODULES=most in /etc/initramfs-tools/initramfs.conf), then `update-initramfs -u`"
	fixDebianKlibc   = "in the OS: `apt install --reinstall initramfs-tools klibc-utils`, then `update-initramfs -u`"
	fixDracutISCSI   = "in the OS: install the iSCSI tools (iscsi-initiator-utils / open-iscsi) and rebuild with `dracut -f --add \"iscsi network\"` (hostonly images include iscsi only if / was on iSCSI when they were built; --no-hostonly also works)"
	fixDracutDriver  = "in the OS: rebuild with `dracut -f --add-drivers %s` (or --no-hostonly)"
	fixDracutNetwork = "in the OS: rebuild with `dracut -f --add network` (network-legacy or network-manager; install dracut-network on Debian)"
	fixDracutDebian  = "in the OS: add install_items+=\" /lib/open-iscsi/startup-checks.sh /etc/iscsi/iscsid.conf \" to /etc/dracut.conf.d/iscsi.conf and rebuild with `dracut -f` (Debian's iscsid.service runs that script first)"
)

// Check verifies that the initrd can take over the session: iSCSI tools and
// scripts for its generator, iscsi_tcp, the boot NIC's driver, a network
// stack, and iscsi_ibft for the iBFT hand-off.
func (in *Initrd) Check(req Requirements) *Capability {
	c := &Capability{Dialect: in.Dialect()}
	if req.Dialect.Generator != GeneratorUnknown {
		if c.Dialect.Generator != GeneratorUnknown && c.Dialect.Generator != req.Dialect.Generator {
			c.Notes = append(c.Notes, fmt.Sprintf("the initrd looks like %s, but %s was requested", c.Dialect.Generator, req.Dialect.Generator))
		}
		c.Dialect = req.Dialect
	}
	add := func(it Item) { c.Items = append(c.Items, it) }
	module := func(name, fix string, required bool) Item {
		it := Item{Name: name + " kernel module", Fix: fix, Required: required}
		vers := in.KernelVersions()
		if where, ok := in.Module(name, req.KernelVersion, req.ExtraBuiltin...); ok {
			it.Present, it.Where = true, where
		} else if req.KernelVersion != "" && len(vers) > 0 && !slices.Contains(vers, req.KernelVersion) {
			// An initrd for another kernel: nothing in it will load.
			it.Where = "the initrd has modules for " + strings.Join(vers, ", ") + ", not for the OS kernel " + req.KernelVersion
		} else if !in.HasBuiltinList(req.KernelVersion) {
			it.Unknown = true
			it.Where = "no " + name + ".ko in the initrd, and no modules.builtin to tell whether it is built in"
		} else {
			it.Where = "neither " + name + ".ko nor listed in modules.builtin"
		}
		return it
	}
	program := func(name, fix string) Item {
		it := Item{Name: name, Fix: fix, Required: true}
		if p, ok := in.findProgram(name); ok {
			it.Present, it.Where = true, p
		} else {
			it.Where = notInProgramDirs()
		}
		return it
	}

	switch c.Dialect.Generator {
	case GeneratorInitramfsTools:
		it := Item{Name: "open-iscsi boot script", Fix: fixDebianISCSI, Required: true}
		if p, ok := in.findFile("scripts/local-top/iscsi"); ok {
			it.Present, it.Where = true, p
		} else {
			it.Where = "scripts/local-top/iscsi"
		}
		add(it)
		add(program("iscsistart", fixDebianISCSI))
		add(module("iscsi_tcp", fixDebianISCSI, true))
		if req.NICModule != "" {
			add(module(req.NICModule, fmt.Sprintf(fixDebianModules, req.NICModule), true))
		}
		add(program("ipconfig", fixDebianKlibc))
		ib := module("iscsi_ibft", fixDebianISCSI, req.Mode == ModeIBFT)
		c.IBFT = ib.Present || ib.Unknown
		add(ib)
		if v := in.ISCSIConf; v["ISCSI_AUTO"] != "" || v["ISCSI_TARGET_NAME"] != "" {
			c.Notes = append(c.Notes, fmt.Sprintf("the initrd bakes etc/iscsi.initramfs (ISCSI_AUTO=%q ISCSI_TARGET_NAME=%q); command-line values override it, but ISCSI_AUTO cannot be switched off from there", v["ISCSI_AUTO"], v["ISCSI_TARGET_NAME"]))
		}

	case GeneratorDracut:
		it := Item{Name: "dracut iscsi module", Fix: fixDracutISCSI, Required: true}
		mods := map[string]bool{}
		for _, m := range in.DracutModules {
			mods[m] = true
		}
		hook, hookOK := in.hasSuffix("parse-iscsiroot.sh")
		switch {
		case mods["iscsi"]:
			it.Present, it.Where = true, "lib/dracut/modules.txt"
		case hookOK:
			it.Present, it.Where = true, hook
		default:
			it.Where = "not in lib/dracut/modules.txt, no parse-iscsiroot.sh hook"
		}
		add(it)
		add(program("iscsiadm", fixDracutISCSI))
		add(program("iscsid", fixDracutISCSI))
		add(module("iscsi_tcp", fixDracutISCSI, true))
		if req.NICModule != "" {
			add(module(req.NICModule, fmt.Sprintf(fixDracutDriver, req.NICModule), true))
		}
		if req.VLAN != 0 {
			// vlan= makes dracut create the VLAN interface, which needs
			// 8021q (its network modules install it).
			add(module("8021q", fmt.Sprintf(fixDracutDriver, "8021q"), true))
		}
		nw := Item{Name: "dracut network module", Fix: fixDracutNetwork, Required: true}
		if c.Dialect.Network != NetUnknown {
			nw.Present, nw.Where = true, c.Dialect.Network.String()
		} else {
			nw.Where = "none of network-manager, systemd-networkd, connman, network-legacy"
		}
		add(nw)
		ib := module("iscsi_ibft", fixDracutISCSI, req.Mode == ModeIBFT)
		c.IBFT = ib.Present || ib.Unknown
		add(ib)
		// Debian's iscsid.service runs startup-checks.sh first and fails
		// without it ("Initiatorname required"): DESIGN.md, lab finding.
		if unit, ok := in.findFile("usr/lib/systemd/system/iscsid.service", "lib/systemd/system/iscsid.service"); ok &&
			strings.Contains(string(in.captured[unit]), "startup-checks.sh") {
			sc := Item{Name: "open-iscsi startup-checks.sh", Fix: fixDracutDebian, Required: true}
			if q, ok := in.findFile("usr/lib/open-iscsi/startup-checks.sh", "lib/open-iscsi/startup-checks.sh"); ok {
				sc.Present, sc.Where = true, q
			} else {
				sc.Where = unit + " runs lib/open-iscsi/startup-checks.sh, which is not in the initrd"
			}
			add(sc)
		}
		if c.Dialect.Network == NetNetworkd {
			c.Notes = append(c.Notes, "dracut uses systemd-networkd, which ignores ip=ibft: the network is given explicitly with ip= even in firmware mode")
		}
		var baked []string
		for _, a := range in.BakedCmdline {
			if dracutOwned[a.Key] || a.Key == "ifname" {
				baked = append(baked, a.Raw)
			}
		}
		if len(baked) > 0 {
			c.Notes = append(c.Notes, "the initrd bakes "+strings.Join(baked, " ")+" in etc/cmdline.d; dracut reads those together with the command line (rebuild with hostonly_cmdline=no if they name another target or NIC)")
		}

	default:
		add(Item{
			Name:     "a known initrd generator",
			Where:    "found neither dracut (lib/dracut) nor initramfs-tools (conf/initramfs.conf, scripts/functions)",
			Fix:      "lunboot can hand over only to dracut and initramfs-tools initrds; rebuild the OS initrd with one of them",
			Required: true,
		})
	}
	for _, w := range in.Warnings {
		c.Notes = append(c.Notes, "initrd: "+w)
	}
	return c
}

// Report lists every item, present or not, and the notes, one per line,
// for the boot log or a diagnostic command.
func (c *Capability) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "initrd: %s\n", c.Dialect)
	for _, it := range c.Items {
		state := "ok     "
		switch {
		case it.Present:
		case it.Unknown:
			state = "unknown"
		case it.Required:
			state = "MISSING"
		default:
			state = "absent "
		}
		fmt.Fprintf(&b, "  %s %s", state, it.Name)
		if it.Where != "" {
			fmt.Fprintf(&b, " (%s)", it.Where)
		}
		b.WriteByte('\n')
		if !it.Present && it.Fix != "" {
			fmt.Fprintf(&b, "          fix: %s\n", it.Fix)
		}
	}
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}
