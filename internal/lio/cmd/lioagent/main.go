//go:build linux

// Command lioagent runs in the lab's LIO target VM (qemu/lab.StartLIO): it
// mounts configfs, gives the guest's NIC the address the lab chose, and
// serves the lab's control requests (package lio's Request/Response, one
// JSON line each way) on TCP port lio.ControlPort of that address:
// configure the target, enable or disable a TPG, take the NIC down for a
// while, dump the configfs tree.
//
// internal/vmtest's guest init starts it after loading the target modules;
// it reads its settings from the kernel command line:
//
//	lio.addr=<ip>/<prefix>   the NIC's address (required)
//	lio.nic=<name>           the NIC (default eth0)
//	lio.debug=1              log every configfs write (secrets masked)
//
// It is not meant to be run by hand.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/internal/lio"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "lioagent: %v\n", err)
		os.Exit(1)
	}
}

func cmdline() (map[string]string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "lio.") {
			out[k] = v
		}
	}
	return out, nil
}

func run() error {
	args, err := cmdline()
	if err != nil {
		return err
	}
	addr, err := netip.ParsePrefix(args["lio.addr"])
	if err != nil {
		return fmt.Errorf("lio.addr=%q on the kernel command line: %w", args["lio.addr"], err)
	}
	nic := args["lio.nic"]
	if nic == "" {
		nic = "eth0"
	}
	level := slog.LevelInfo
	if args["lio.debug"] == "1" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: level}))

	// configfs is a module here (loaded by the init); sysfs then offers
	// its mount point.
	if err := unix.Mount("configfs", "/sys/kernel/config", "configfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount configfs: %w", err)
	}
	if _, err := os.Stat(lio.Root); err != nil {
		return fmt.Errorf("configfs has no target subsystem (is target_core_mod loaded?): %w", err)
	}
	link, err := setupNIC(nic, addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr.Addr(), lio.ControlPort).String())
	if err != nil {
		return fmt.Errorf("control port: %w", err)
	}
	version, _ := os.ReadFile(lio.Root + "/iscsi/lio_version")
	a := &agent{fs: &lio.FS{Dir: lio.Root, Log: log}, log: log, link: link}
	// The lab waits for this line on the console.
	fmt.Printf("lioagent: ready on %s (%s)\n", ln.Addr(), strings.TrimSpace(strings.ReplaceAll(string(version), "\n", " ")))
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("control port: %w", err)
		}
		go a.serve(c)
	}
}

// setupNIC brings lo and the NIC up with addr, waiting for the driver to
// register the NIC.
func setupNIC(name string, addr netip.Prefix) (netlink.Link, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	var link netlink.Link
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		link, err = netlink.LinkByName(name)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("NIC %s did not appear: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("%s up: %w", name, err)
	}
	return link, nil
}

type agent struct {
	mu   sync.Mutex // one configfs change at a time
	fs   *lio.FS
	log  *slog.Logger
	link netlink.Link
	// shared is set once the shared root is mounted (OpRun).
	shared bool
}

func (a *agent) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	enc := json.NewEncoder(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req lio.Request
		var resp lio.Response
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = fmt.Sprintf("bad request: %v", err)
		} else {
			resp = a.handle(req)
		}
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

func (a *agent) handle(req lio.Request) lio.Response {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	var err error
	var resp lio.Response
	switch req.Op {
	case lio.OpPing:
	case lio.OpApply:
		if req.Config == nil {
			err = errors.New("apply without a config")
			break
		}
		if err = a.fs.Reset(); err != nil {
			break
		}
		if err = prune(lunDir, *req.Config); err != nil {
			break
		}
		err = a.fs.Apply(*req.Config)
	case lio.OpTPG:
		err = a.fs.SetTPG(req.IQN, req.TPG, req.Enable)
	case lio.OpLinkDown:
		if req.Millis <= 0 || req.Millis > 600_000 {
			err = fmt.Errorf("linkdown for %d ms: want 1…600000", req.Millis)
			break
		}
		d := time.Duration(req.Millis) * time.Millisecond
		go a.linkDown(d)
	case lio.OpDump:
		resp.Dump = a.fs.Dump()
	case lio.OpRun:
		resp.Output, err = a.run(req.Argv)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Error = err.Error()
		a.log.Warn("request failed", "op", req.Op, "err", err)
	} else {
		a.log.Info("request done", "op", req.Op, "took", time.Since(start).Round(time.Millisecond))
	}
	return resp
}

// lunDir holds the lab's blank LUNs on the guest's tmpfs.
const lunDir = "/tmp/luns"

// prune removes blank-LUN files the new configuration no longer names, so
// that a long series of cases does not fill the guest's memory.
func prune(dir string, cfg lio.Config) error {
	keep := map[string]bool{}
	for _, t := range cfg.Targets {
		for _, g := range t.TPGs {
			for _, l := range g.LUNs {
				keep[l.File] = true
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := dir + "/" + e.Name()
		if !keep[p] {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("prune %s: %w", p, err)
			}
		}
	}
	return nil
}

// linkDown takes the NIC down for d, after the answer has gone out: the
// guest's side of a pulled cable (its TCP connections stay, as a real
// target's do, and nothing answers until the link is back).
func (a *agent) linkDown(d time.Duration) {
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	if err := netlink.LinkSetDown(a.link); err != nil {
		a.log.Warn("link down", "err", err)
		return
	}
	a.log.Info("link down", "for", d)
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	if err := netlink.LinkSetUp(a.link); err != nil {
		a.log.Warn("link up", "err", err)
		return
	}
	a.log.Info("link up")
}

// shareDir is where the shared root (virtio-9p tag lio.ShareTag) is
// mounted and chrooted into.
const shareDir = "/share"

// mountShare mounts the shared root read-only and makes it usable as a
// running system's root for targetcli: tmpfs where targetcli and rtslib
// write (HOME=/root for ~/.targetcli, /run for its lock, /tmp,
// /etc/rtslib-fb-target for saveconfig and its backups, /srv for backing
// files), and the kernel's /proc (rtslib reads /proc/modules), /sys with
// configfs at /sys/kernel/config (what targetcli configures), /dev.
func (a *agent) mountShare() error {
	if a.shared {
		return nil
	}
	if err := os.MkdirAll(shareDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(lio.ShareTag, shareDir, "9p", unix.MS_RDONLY, "trans=virtio,version=9p2000.L"); err != nil {
		return fmt.Errorf("mount the shared root (9p tag %q; did the lab give LIOOptions.Share?): %w", lio.ShareTag, err)
	}
	for _, d := range []string{"root", "run", "tmp", "srv", "etc/rtslib-fb-target"} {
		if err := unix.Mount("tmpfs", filepath.Join(shareDir, d), "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs on %s in the shared root: %w", d, err)
		}
	}
	for _, d := range []string{"run/lock", "etc/rtslib-fb-target/backup"} {
		if err := os.MkdirAll(filepath.Join(shareDir, d), 0o755); err != nil {
			return err
		}
	}
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "proc", "proc"}, {"sysfs", "sys", "sysfs"}, {"configfs", "sys/kernel/config", "configfs"},
	} {
		if err := unix.Mount(m.src, filepath.Join(shareDir, m.dir), m.fstype, 0, ""); err != nil {
			return fmt.Errorf("mount %s on %s in the shared root: %w", m.fstype, m.dir, err)
		}
	}
	if err := unix.Mount("/dev", filepath.Join(shareDir, "dev"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /dev into the shared root: %w", err)
	}
	// The system bus, as on the server the root comes from: targetcli
	// connects to it at every start (and exits without it).
	if _, err := os.Stat(filepath.Join(shareDir, "usr/bin/dbus-daemon")); err == nil {
		if err := os.MkdirAll(filepath.Join(shareDir, "run/dbus"), 0o755); err != nil {
			return err
		}
		cmd := exec.Command("/usr/bin/dbus-daemon", "--system", "--fork")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: shareDir}
		cmd.Dir = "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("start the system bus in the shared root: %w (%s)", err, strings.TrimSpace(string(out)))
		}
	}
	a.shared = true
	return nil
}

// run runs argv chrooted into the shared root, for up to 5 minutes, and
// returns its output.
func (a *agent) run(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("run: no command")
	}
	if err := a.mountShare(); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: shareDir}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=dumb", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	a.log.Info("ran in the shared root", "command", argv[0], "took", time.Since(start).Round(time.Millisecond), "err", err)
	if err != nil {
		// argv[0] only: the arguments may hold CHAP passwords.
		return string(out), fmt.Errorf("%s: %w", argv[0], err)
	}
	return string(out), nil
}
