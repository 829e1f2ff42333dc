package rootpath

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/lunboot/lunboot/pkg/sam"
)

// DefaultPort is the iSCSI well-known TCP port (RFC 7143 §13.1), used when
// a root-path leaves the port empty.
const DefaultPort = 3260

// RootPath is a parsed iSCSI boot target: where the target portal is, which
// target and LUN to boot from and, from the command line only, the CHAP
// credentials to log in with.
//
// Formatting a RootPath with the fmt package or slog never shows a
// password.
type RootPath struct {
	// Server is the portal's host name, or the canonical text of its IP
	// literal without brackets (an IPv6 zone is kept: "fe80::1%eth0").
	Server string
	// Addr is the server's address when Server is an IP literal; the zero
	// Addr when Server is a host name still to be resolved.
	Addr netip.Addr
	// Port is the portal's TCP port (3260 when the root-path left it empty).
	Port uint16
	// LUN is the logical unit as SAM bytes; LUN.Linux() is the number the
	// OS uses and LUN.String() the RFC 4173 hex form.
	LUN sam.LUN
	// Target is the iSCSI target name, validated and kept as written (its
	// case included: targets compare names byte for byte).
	Target string

	// Username and Password are the one-way CHAP credentials the initiator
	// proves itself with; ReverseUsername and ReversePassword the ones the
	// target must prove itself with (mutual CHAP). Only ParseCmdline and
	// ParseURL set them.
	Username, Password               string
	ReverseUsername, ReversePassword string

	// Iface and NetDev are dracut's optional open-iscsi iface name and
	// network device (ParseCmdline only). lunboot has no open-iscsi ifaces;
	// NetDev names the interface to boot from.
	Iface, NetDev string

	// Warnings lists what parsing accepted but changed or found dubious
	// (for example a target name folded to lower case). The boot log
	// should show them.
	Warnings []string

	// input is the string parsed, secrets masked (see Masked).
	input string
}

// New builds a RootPath from its parts, validating them as Parse does:
// server is a host name or an IP literal (without brackets; an IPv6 zone
// is allowed), port 0 means 3260, and target must be a valid iSCSI name. It
// is for sources that deliver the fields separately, such as an iBFT or
// initramfs-tools' iscsi_target_ip=/iscsi_target_name=.
func New(server string, port uint16, lun sam.LUN, target string) (RootPath, error) {
	r := RootPath{Port: port, LUN: lun}
	if r.Port == 0 {
		r.Port = DefaultPort
	}
	server = strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
	if strings.Contains(server, ":") {
		if err := r.setBracketed(server); err != nil {
			return RootPath{}, &Error{Field: FieldServer, Value: echo(server), Err: err}
		}
	} else if err := r.setServer(server); err != nil {
		return RootPath{}, &Error{Field: FieldServer, Value: echo(server), Err: err}
	}
	if err := r.setTarget(target); err != nil {
		return RootPath{}, &Error{Field: FieldTarget, Value: echo(target), Err: err}
	}
	return r, nil
}

// Portal returns host:port as net.Dial wants it, with IPv6 literals
// bracketed.
func (r RootPath) Portal() string {
	return net.JoinHostPort(r.Server, strconv.Itoa(int(r.Port)))
}

// host returns the server as it is written in a root-path.
func (r RootPath) host() string {
	if r.Addr.Is6() {
		return "[" + r.Server + "]"
	}
	return r.Server
}

// String returns the canonical RFC 4173 form,
// iscsi:<server>::<port>:<LUN>:<target>, with the port and LUN always
// written. It never contains credentials, an iface or a netdev: Parse of the
// result gives back the same server, port, LUN and target.
func (r RootPath) String() string {
	return "iscsi:" + r.host() + "::" + strconv.Itoa(int(r.Port)) + ":" + r.LUN.String() + ":" + r.Target
}

// HasCredentials reports whether CHAP credentials were given.
func (r RootPath) HasCredentials() bool {
	return r.Username != "" || r.Password != "" || r.ReverseUsername != "" || r.ReversePassword != ""
}

// WithoutCredentials returns a copy of r with the CHAP fields cleared.
func (r RootPath) WithoutCredentials() RootPath {
	r.Username, r.Password, r.ReverseUsername, r.ReversePassword = "", "", "", ""
	return r
}

// Equal reports whether r and o name the same target (server, port, LUN,
// target name), with the same credentials, iface and netdev. Warnings and
// the original spelling do not count.
func (r RootPath) Equal(o RootPath) bool {
	return r.Server == o.Server && r.Addr == o.Addr && r.Port == o.Port && r.LUN == o.LUN &&
		r.Target == o.Target && r.Username == o.Username && r.Password == o.Password &&
		r.ReverseUsername == o.ReverseUsername && r.ReversePassword == o.ReversePassword &&
		r.Iface == o.Iface && r.NetDev == o.NetDev
}

// Masked returns the string r was parsed from with every password replaced
// by [Mask], for messages that should show what the user wrote. For a
// RootPath built by New it is String().
func (r RootPath) Masked() string {
	if r.input == "" {
		return r.String()
	}
	return r.input
}

// LogValue implements slog.LogValuer: the target's fields, the LUN in both
// notations, and the CHAP user names; passwords only as [Mask].
func (r RootPath) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("portal", r.Portal()),
		slog.String("target", r.Target),
		slog.String("lun", r.LUN.String()),
		slog.Uint64("linux_lun", r.LUN.Linux()),
	}
	if r.Username != "" || r.Password != "" {
		attrs = append(attrs, slog.String("chap_user", r.Username), slog.String("chap_secret", maskIfSet(r.Password)))
	}
	if r.ReverseUsername != "" || r.ReversePassword != "" {
		attrs = append(attrs, slog.String("chap_reverse_user", r.ReverseUsername), slog.String("chap_reverse_secret", maskIfSet(r.ReversePassword)))
	}
	if r.NetDev != "" {
		attrs = append(attrs, slog.String("netdev", r.NetDev))
	}
	return slog.GroupValue(attrs...)
}

// Format implements fmt.Formatter so that no verb can print a password:
// %v and %s print String(), %q quotes it, %+v adds the user names and
// masked passwords, %#v prints a Go-like struct with passwords masked.
func (r RootPath) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		switch {
		case f.Flag('#'):
			fmt.Fprintf(f, "rootpath.RootPath{Server:%q, Addr:%q, Port:%d, LUN:%q, Target:%q, Username:%q, Password:%q, ReverseUsername:%q, ReversePassword:%q, Iface:%q, NetDev:%q}",
				r.Server, r.Addr.String(), r.Port, r.LUN.String(), r.Target, r.Username, maskIfSet(r.Password), r.ReverseUsername, maskIfSet(r.ReversePassword), r.Iface, r.NetDev)
			return
		case f.Flag('+'):
			io.WriteString(f, r.String())
			if r.Username != "" || r.Password != "" {
				fmt.Fprintf(f, " chap=%s:%s", r.Username, maskIfSet(r.Password))
			}
			if r.ReverseUsername != "" || r.ReversePassword != "" {
				fmt.Fprintf(f, " reverse-chap=%s:%s", r.ReverseUsername, maskIfSet(r.ReversePassword))
			}
			return
		}
		io.WriteString(f, r.String())
	case 's':
		io.WriteString(f, r.String())
	case 'q':
		io.WriteString(f, strconv.Quote(r.String()))
	default:
		fmt.Fprintf(f, "%%!%c(rootpath.RootPath=%s)", verb, r.String())
	}
}

// MarshalText implements encoding.TextMarshaler with String(), so that
// encoding/json (and slog's JSON handler) never serialise the CHAP fields.
func (r RootPath) MarshalText() ([]byte, error) {
	return []byte(r.String()), nil
}

func maskIfSet(s string) string {
	if s == "" {
		return ""
	}
	return Mask
}

// setServer validates an unbracketed server: an IPv4 literal or a host
// name.
func (r *RootPath) setServer(s string) error {
	if s == "" {
		return errors.New("empty: RFC 4173 would look the target up by discovery (iSNS/SLP), which lunboot does not support; give the target portal's address")
	}
	if strings.ContainsAny(s, "%[]") {
		return errors.New("a zone ('%') or brackets belong to an IPv6 literal, written [fe80::1%eth0]")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		r.Server, r.Addr = a.String(), a
		return nil
	}
	if err := CheckHostname(s); err != nil {
		return err
	}
	r.Server = s
	return nil
}

// setBracketed validates the text between '[' and ']': an IPv6 literal
// with an optional zone that must be a Linux interface name.
func (r *RootPath) setBracketed(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if addr, zone, ok := strings.Cut(s, "%"); ok && zone == "" {
			if _, err := netip.ParseAddr(addr); err == nil {
				return errors.New("empty zone after '%'")
			}
		}
		return fmt.Errorf("not an IPv6 address: %w", unwrapAll(err))
	}
	if a.Is4() {
		return fmt.Errorf("brackets are for IPv6 literals; write %s without them", a)
	}
	if z := a.Zone(); z != "" {
		if err := CheckIfname(z); err != nil {
			return fmt.Errorf("zone %q must be the name of the interface the link-local address is on: %w", z, err)
		}
	}
	r.Server, r.Addr = a.String(), a
	return nil
}

// setTarget validates the target name and stores it as written. RFC 3722's
// stringprep profile makes iSCSI names case-insensitive by folding them,
// but the targets compare the name they were configured with byte for
// byte: LIO refuses a name in another case with 03/01 and tgtd with 02/03
// (seen in the lab, qemu/interop "mixed-case target name"), and open-iscsi
// sends the name unchanged. Appliances print mixed-case names (Synology:
// iqn.2000-01.com.synology:DiskStation.Target-1.<id>); the one spelling
// every target accepts is the administrator's, so it is kept, and handed on
// unchanged to the OS.
func (r *RootPath) setTarget(s string) error {
	if _, err := NormalizeName(s); err != nil {
		return err
	}
	r.Target = s
	return nil
}

// unwrapAll strips netip's "ParseAddr(...)" prefix so the message does not
// repeat the input once more.
func unwrapAll(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return errors.New(msg[i+3:])
	}
	return err
}
