package probe

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/cmdline"
	"github.com/lunboot/lunboot/pkg/rootpath"
)

// Param is one kernel command-line parameter; HasValue distinguishes
// "iscsi_auto" from "iscsi_auto=".
type Param = cmdline.Param

// Cmdline is a parsed kernel command line.
type Cmdline []Param

// ParseCmdline splits a kernel command line the way the kernel does
// (pkg/cmdline, after lib/cmdline.c next_arg). It keeps the words after
// "--": the OS initrd's scripts read the whole of /proc/cmdline.
func ParseCmdline(s string) Cmdline { return Cmdline(cmdline.Split(s)) }

// Get returns the value of the last occurrence of key: dracut's getarg and
// initramfs-tools' parameter loop both let a later value win.
func (c Cmdline) Get(key string) (string, bool) {
	v, ok := "", false
	for _, p := range c {
		if p.Key == key {
			v, ok = p.Value, true
		}
	}
	return v, ok
}

// First returns the first value of key that satisfies keep.
func (c Cmdline) First(key string, keep func(string) bool) (string, bool) {
	for _, p := range c {
		if p.Key == key && keep(p.Value) {
			return p.Value, true
		}
	}
	return "", false
}

// Has reports whether key is present (with or without a value).
func (c Cmdline) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// secretKeys are parameters whose value is a CHAP secret.
func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret")
}

// Masked returns the command line with every secret replaced by "***":
// password parameters and the credential part of iscsi: root-paths.
func (c Cmdline) Masked() string {
	out := make([]Param, 0, len(c))
	for _, p := range c {
		if p.HasValue {
			switch {
			case isSecretKey(p.Key):
				p = Param{Key: p.Key, Value: rootpath.Mask, HasValue: true}
			case strings.HasPrefix(strings.ToLower(p.Value), "iscsi:") && strings.Contains(p.Value, "@"):
				p = Param{Key: p.Key, Value: maskRootPath(p.Value), HasValue: true}
			}
		}
		out = append(out, p)
	}
	// Unmasked parameters are written as they were, masked ones quoted
	// where the kernel needs it.
	return cmdline.Join(out)
}

// maskRootPath hides the passwords of a dracut iscsi:user:pass…@ prefix.
func maskRootPath(v string) string {
	if r, err := rootpath.ParseCmdline(v); err == nil {
		return r.Masked()
	}
	// Unparseable: hide the whole credential part.
	at := strings.Index(v, "@")
	return v[:len("iscsi:")] + rootpath.Mask + v[at:]
}

// Firmware lists the parameters that ask the OS initrd to take its boot
// target from firmware (an iBFT).
func (c Cmdline) Firmware() []string {
	var out []string
	for _, p := range c {
		switch {
		case p.Key == "iscsi_auto", p.Key == "rd.iscsi.firmware", p.Key == "iscsi_firmware",
			p.Key == "rd.iscsi.ibft", p.Key == "ip" && p.Value == "ibft":
			s := p.Key
			if p.HasValue {
				s += "=" + p.Value
			}
			out = append(out, s)
		}
	}
	return out
}

// Lunboot returns every lunboot.* parameter (secrets masked).
func (c Cmdline) Lunboot() map[string]string {
	m := map[string]string{}
	for _, p := range c {
		if strings.HasPrefix(p.Key, "lunboot.") {
			v := p.Value
			if isSecretKey(p.Key) {
				v = rootpath.Mask
			}
			m[strings.TrimPrefix(p.Key, "lunboot.")] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// Handoffs returns the boot targets the command line names, one per dialect
// present, in a fixed order: dracut (netroot=iscsi:…), the root=iscsi:
// form both dracut and initramfs-tools read, initramfs-tools
// (iscsi_target_name=/iscsi_target_ip=…), and lunboot.target=. A dialect
// whose parameters are present but unusable yields a Handoff with an empty
// Portal and a warning saying why, so the result shows the mistake.
func (c Cmdline) Handoffs() []Handoff {
	var hs []Handoff
	ip, _ := c.Get("ip")
	isISCSI := func(v string) bool { return strings.HasPrefix(strings.ToLower(v), "iscsi:") }

	// dracut: netroot=, initiator rd.iscsi.initiator (legacy
	// iscsi_initiator), CHAP from rd.iscsi.* unless netroot carries its
	// own (modules.d/74iscsi/iscsiroot.sh reads the URI last).
	if v, ok := c.First("netroot", isISCSI); ok {
		h := Handoff{Source: "dracut", IP: ip}
		h.Initiator = c.firstOf("rd.iscsi.initiator", "iscsi_initiator")
		h.CHAPUser = c.firstOf("rd.iscsi.username", "iscsi_username")
		h.secret = c.firstOf("rd.iscsi.password", "iscsi_password")
		h.ReverseUser = c.firstOf("rd.iscsi.in.username", "iscsi_in_username")
		h.reverseSecret = c.firstOf("rd.iscsi.in.password", "iscsi_in_password")
		fromRootPath(&h, v)
		hs = append(hs, h)
	}
	if v, ok := c.First("root", isISCSI); ok {
		h := Handoff{Source: "root=iscsi", IP: ip}
		h.Initiator = c.firstOf("rd.iscsi.initiator", "iscsi_initiator")
		h.CHAPUser = c.firstOf("iscsi_username", "rd.iscsi.username")
		h.secret = c.firstOf("iscsi_password", "rd.iscsi.password")
		h.ReverseUser = c.firstOf("iscsi_in_username", "rd.iscsi.in.username")
		h.reverseSecret = c.firstOf("iscsi_in_password", "rd.iscsi.in.password")
		fromRootPath(&h, v)
		hs = append(hs, h)
	}
	// initramfs-tools + open-iscsi: scripts/local-top/iscsi.
	if name, ok := c.Get("iscsi_target_name"); ok {
		h := Handoff{Source: "initramfs-tools", IP: ip, Target: name}
		h.Initiator, _ = c.Get("iscsi_initiator")
		h.CHAPUser, _ = c.Get("iscsi_username")
		h.secret, _ = c.Get("iscsi_password")
		h.ReverseUser, _ = c.Get("iscsi_in_username")
		h.reverseSecret, _ = c.Get("iscsi_in_password")
		addr, _ := c.Get("iscsi_target_ip")
		port := "3260"
		if p, ok := c.Get("iscsi_target_port"); ok && p != "" {
			port = p
		}
		switch {
		case addr == "":
			h.Warnings = append(h.Warnings, "iscsi_target_name without iscsi_target_ip: local-top/iscsi would not log in")
		case func() bool { n, err := strconv.Atoi(port); return err != nil || n < 1 || n > 65535 }():
			h.Warnings = append(h.Warnings, fmt.Sprintf("iscsi_target_port=%q is not a port", port))
		default:
			// The script takes a space-separated list in the file form;
			// on the command line there is one address.
			h.Portal = net.JoinHostPort(strings.Trim(addr, "[]"), port)
		}
		hs = append(hs, h)
	}
	if v, ok := c.Get("lunboot.target"); ok {
		h := Handoff{Source: "lunboot", IP: ip}
		h.Initiator, _ = c.Get("lunboot.initiator")
		if r, err := rootpath.ParseTarget(v); err != nil {
			h.Warnings = append(h.Warnings, err.Error())
		} else {
			setFromRootPath(&h, r)
		}
		hs = append(hs, h)
	}
	return hs
}

func (c Cmdline) firstOf(keys ...string) string {
	for _, k := range keys {
		if v, ok := c.Get(k); ok {
			return v
		}
	}
	return ""
}

// fromRootPath fills h from a dracut-dialect root-path; credentials in it
// override the separate parameters, as in dracut.
func fromRootPath(h *Handoff, v string) {
	r, err := rootpath.ParseCmdline(v)
	if err != nil {
		h.Warnings = append(h.Warnings, err.Error())
		return
	}
	setFromRootPath(h, r)
}

func setFromRootPath(h *Handoff, r rootpath.RootPath) {
	h.Portal = r.Portal()
	h.Target = r.Target
	h.LUN = r.LUN.String()
	if r.HasCredentials() {
		h.CHAPUser, h.secret = r.Username, r.Password
		h.ReverseUser, h.reverseSecret = r.ReverseUsername, r.ReversePassword
	}
	h.Warnings = append(h.Warnings, r.Warnings...)
}

// StaticIP is a static address from the kernel's ip= syntax,
// client:server:gateway:netmask:hostname:device:autoconf.
type StaticIP struct {
	Address, Gateway, Netmask, Hostname, Device string
}

// ParseIP reads an ip= value: it returns the method ("dhcp", "static",
// "ibft", "off") and, for a static address, its fields. The device is
// returned for "<dev>:dhcp" as well.
func ParseIP(v string) (method string, s StaticIP) {
	switch strings.ToLower(v) {
	case "", "dhcp", "on", "any", "both", "bootp", "dhcp4", "auto":
		return "dhcp", s
	case "ibft":
		return "ibft", s
	case "off", "none":
		return "off", s
	}
	f := strings.Split(v, ":")
	// dracut's <interface>:dhcp form.
	if len(f) == 2 {
		switch strings.ToLower(f[1]) {
		case "dhcp", "on", "any", "dhcp4", "auto":
			return "dhcp", StaticIP{Device: f[0]}
		case "ibft":
			return "ibft", StaticIP{Device: f[0]}
		}
	}
	get := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	s = StaticIP{Address: get(0), Gateway: get(2), Netmask: get(3), Hostname: get(4), Device: get(5)}
	if s.Address == "" {
		return "dhcp", s
	}
	return "static", s
}
