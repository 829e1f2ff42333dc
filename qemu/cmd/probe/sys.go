//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/pkg/kmod"
)

// mountBasics mounts what the probe reads: /proc, /sys, /dev and /run.
func mountBasics() error {
	var errs []error
	for _, m := range []struct{ dir, fstype string }{
		{"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}, {"/run", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		err := unix.Mount(m.fstype, m.dir, m.fstype, unix.MS_NOSUID, "")
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// loadModules inserts the modules of lib/modules/<release>/lunboot.order in
// its order (dependencies first, resolved when the fixture was built).
// iscsi_ibft failing with ENODEV means the kernel found no iBFT: that is a
// finding, not an error.
func loadModules(s *state, release string) {
	dir := filepath.Join("/lib/modules", release)
	f, err := os.Open(filepath.Join(dir, kmod.OrderFile))
	if err != nil {
		s.errorf("modules: %v (was the probe initrd built for kernel %s?)", err, release)
		return
	}
	entries, err := kmod.ParseOrder(f)
	f.Close()
	if err != nil {
		s.errorf("modules: %v", err)
		return
	}
	start := time.Now()
	var loaded []string
	for _, e := range entries {
		err := insmod(filepath.Join(dir, e.Path))
		switch {
		case err == nil, errors.Is(err, unix.EEXIST):
			loaded = append(loaded, e.Name)
		case e.Name == "iscsi_ibft" && errors.Is(err, unix.ENODEV):
			s.logf("modules: iscsi_ibft: no iBFT found by the kernel (ENODEV)")
		default:
			s.errorf("modules: load %s: %v", e.Name, err)
		}
	}
	s.logf("modules: loaded %v in %s", loaded, time.Since(start).Round(time.Millisecond))
}

func insmod(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}
