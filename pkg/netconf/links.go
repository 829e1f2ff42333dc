package netconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Selector says which interfaces are candidates for the boot.
type Selector struct {
	// BootIF restricts the candidates to the interface with this MAC
	// (pxelinux/iPXE BOOTIF=01-aa-bb-cc-dd-ee-ff, the boot NIC).
	BootIF net.HardwareAddr
	// Name restricts the candidates to this interface. A named interface is
	// taken even if it is virtual or a bond/bridge port: the user asked.
	Name string
	// Virtual also admits Ethernet interfaces that have no device behind
	// them (veth, tap, bridges, bonds) when no Name is given. Tests and labs
	// use it; a real boot wants physical NICs only.
	Virtual bool
}

// ErrNoLinks is returned when no interface matches the Selector.
var ErrNoLinks = errors.New("no candidate network interface")

// FindLinks lists the candidate interfaces in kernel index order: every
// Ethernet interface backed by a device (…/device exists under
// <sysfsRoot>/class/net/<if>), excluding loopback, wireless interfaces
// (they need association first) and interfaces enslaved to a bond or
// bridge (their master carries the traffic); narrowed by sel. sysfsRoot is
// normally "/sys"; an empty string means "/sys".
func FindLinks(sysfsRoot string, sel Selector) ([]Link, error) {
	if sysfsRoot == "" {
		sysfsRoot = "/sys"
	}
	nls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []Link
	var seen []string
	for _, nl := range nls {
		a := nl.Attrs()
		seen = append(seen, a.Name+" ("+a.HardwareAddr.String()+")")
		if a.Flags&net.FlagLoopback != 0 || a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			continue
		}
		named := sel.Name != "" && a.Name == sel.Name
		if sel.Name != "" && !named {
			continue
		}
		if sel.BootIF != nil && !bytes.Equal(a.HardwareAddr, sel.BootIF) {
			continue
		}
		l := linkFromSysfs(sysfsRoot, a)
		if !named {
			if l.PCI == "" && l.Driver == "" && !sel.Virtual && !exists(filepath.Join(sysfsRoot, "class/net", a.Name, "device")) {
				continue // virtual
			}
			if a.MasterIndex != 0 {
				continue // bond slave or bridge port
			}
			if exists(filepath.Join(sysfsRoot, "class/net", a.Name, "wireless")) || exists(filepath.Join(sysfsRoot, "class/net", a.Name, "phy80211")) {
				continue
			}
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		var want string
		switch {
		case sel.Name != "":
			want = "named " + sel.Name
		case sel.BootIF != nil:
			want = "with BOOTIF MAC " + sel.BootIF.String()
		default:
			want = "that is a physical Ethernet interface (is the NIC driver loaded?)"
		}
		return nil, fmt.Errorf("%w %s; interfaces present: %s", ErrNoLinks, want, strings.Join(seen, ", "))
	}
	return out, nil
}

// pciAddr matches a PCI address component of a sysfs device path.
var pciAddr = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

// linkFromSysfs fills in the driver, module and PCI address of an
// interface from sysfs: <root>/class/net/<if>/device links to the device
// (for virtio_net, to virtio<N> below the PCI function), device/driver to
// the driver, and device/driver/module to the module when the driver is
// modular (Documentation/ABI/testing/sysfs-module).
func linkFromSysfs(sysfsRoot string, a *netlink.LinkAttrs) Link {
	l := Link{Name: a.Name, Index: a.Index, MAC: slices.Clone(a.HardwareAddr)}
	dev := filepath.Join(sysfsRoot, "class/net", a.Name, "device")
	if p, err := filepath.EvalSymlinks(filepath.Join(dev, "driver")); err == nil {
		l.Driver = filepath.Base(p)
	}
	if p, err := filepath.EvalSymlinks(filepath.Join(dev, "driver", "module")); err == nil {
		l.Module = filepath.Base(p)
	}
	if p, err := filepath.EvalSymlinks(dev); err == nil {
		for d := p; d != "/" && d != "." && d != filepath.Dir(d); d = filepath.Dir(d) {
			if b := filepath.Base(d); pciAddr.MatchString(b) {
				l.PCI = b
				break
			}
		}
	}
	return l
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ErrNoCarrier is wrapped by the error of a link that got no carrier within
// the carrier timeout.
var ErrNoCarrier = errors.New("no carrier")

// setUp sets the link administratively up and reports whether it was down
// before, so that only links this package raised are lowered again.
func setUp(l Link) (wasDown bool, err error) {
	nl, err := netlink.LinkByIndex(l.Index)
	if err != nil {
		return false, fmt.Errorf("%s: find link: %w", l.Name, err)
	}
	if nl.Attrs().Flags&net.FlagUp != 0 {
		return false, nil
	}
	if err := netlink.LinkSetUp(nl); err != nil {
		return false, fmt.Errorf("%s: set link up: %w", l.Name, err)
	}
	return true, nil
}

// setDown sets the link administratively down.
func setDown(l Link) error {
	nl, err := netlink.LinkByIndex(l.Index)
	if err != nil {
		return fmt.Errorf("%s: find link: %w", l.Name, err)
	}
	if err := netlink.LinkSetDown(nl); err != nil {
		return fmt.Errorf("%s: set link down: %w", l.Name, err)
	}
	return nil
}

// hasCarrier reports whether the link can pass traffic: the kernel's
// carrier bit (IFF_LOWER_UP, set the moment the driver calls
// netif_carrier_on) unless RFC 2863 operstate says the link is up but not
// usable (dormant: 802.1X or Wi-Fi association pending; testing).
// Operstate alone lags: the kernel derives it from the carrier in its
// linkwatch work, which runs at most once a second for events that need
// no qdisc change (net/core/link_watch.c), so a NIC brought up with its
// carrier already on showed "down" for about 0.9 s after IFF_LOWER_UP in
// the lab. Drivers that do not track operstate report "unknown", and the
// carrier bit decides for them too (Documentation/networking/operstates.rst).
func hasCarrier(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperDormant, netlink.OperTesting, netlink.OperNotPresent:
		return false
	}
	return a.RawFlags&unix.IFF_LOWER_UP != 0
}

// carrierPoll is how often waitCarrier re-reads the link state in case a
// netlink notification was lost (the subscription socket can overflow).
const carrierPoll = 250 * time.Millisecond

// waitCarrier waits until the link has carrier, for at most timeout. It
// listens for RTM_NEWLINK notifications and re-reads the state
// periodically; the error wraps ErrNoCarrier and says how long it waited
// and what the link's state was.
func waitCarrier(ctx context.Context, l Link, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		// Only costs latency: the poll below still sees the carrier.
		updates = nil
	} else {
		defer func() {
			// The subscriber goroutine blocks sending to a full channel
			// and does not watch done while it does: drain until it
			// notices the closed socket and closes the channel.
			close(done)
			for range updates {
			}
		}()
	}

	tick := time.NewTicker(carrierPoll)
	defer tick.Stop()
	state := "unknown"
	for {
		nl, err := netlink.LinkByIndex(l.Index)
		if err != nil {
			return time.Since(start), fmt.Errorf("%s: read link state: %w", l.Name, err)
		}
		if hasCarrier(nl.Attrs()) {
			return time.Since(start), nil
		}
		state = nl.Attrs().OperState.String()
		select {
		case <-updates:
		case <-tick.C:
		case <-ctx.Done():
			waited := time.Since(start)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return waited, fmt.Errorf("%s: %w after %v (operstate %s; is the cable in and the switch port up?)",
					l.Name, ErrNoCarrier, waited.Round(time.Millisecond), state)
			}
			return waited, fmt.Errorf("%s: waiting for carrier: %w", l.Name, context.Cause(ctx))
		}
	}
}

// WatchCarrier reports the carrier changes of link l until ctx ends:
// onChange(false) when it is lost, onChange(true) when it is back (a
// cable pulled and put back, a switch port flapping, a hypervisor's
// set_link). It listens for RTM_NEWLINK notifications and re-reads the
// state every carrierPoll in case one was lost. It returns when ctx ends,
// or at once with an error if the link cannot be read.
func WatchCarrier(ctx context.Context, l Link, onChange func(up bool)) error {
	nl, err := netlink.LinkByIndex(l.Index)
	if err != nil {
		return fmt.Errorf("%s: read link state: %w", l.Name, err)
	}
	up := hasCarrier(nl.Attrs())
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		updates = nil
	} else {
		defer func() {
			close(done)
			for range updates {
			}
		}()
	}
	tick := time.NewTicker(carrierPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				updates = nil
			}
		case <-tick.C:
		}
		nl, err := netlink.LinkByIndex(l.Index)
		if err != nil {
			continue // a transient netlink error; the next tick retries
		}
		if now := hasCarrier(nl.Attrs()); now != up {
			up = now
			onChange(up)
		}
	}
}
