//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunboot/lunboot/pkg/handoff"
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

// readLockdown mounts securityfs (the kernel's lockdown file lives there)
// and returns the lockdown level, "" for a kernel without the lockdown LSM.
func readLockdown() (string, error) {
	const dir = "/sys/kernel/security"
	err := unix.Mount("securityfs", dir, "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOENT) {
		return "", fmt.Errorf("mount securityfs on %s: %w", dir, err)
	}
	return handoff.ReadLockdown("/sys")
}

// loadModules inserts the modules of lib/modules/<release>/lunboot.order in
// its order (resolved when the fixture was built) with lunboot's own loader,
// package kmod. iscsi_ibft refusing with ENODEV means the kernel found no
// iBFT: that is a finding, not an error.
func loadModules(s *state, release string) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	results, err := kmod.LoadAll(ctx, nil, kmod.Options{Release: release})
	if err != nil {
		s.errorf("modules: %v (was the probe initrd built for kernel %s?)", err, release)
		return
	}
	var loaded []string
	for _, r := range results {
		switch {
		case r.Status.OK():
			loaded = append(loaded, r.Name)
		case r.Name == "iscsi_ibft" && r.Status == kmod.NoDevice:
			s.logf("modules: iscsi_ibft: no iBFT found by the kernel (ENODEV)")
		case r.Status == kmod.NoDevice:
			s.logf("modules: %s: no device (%s)", r.Name, r.Detail())
		default:
			s.errorf("modules: %s: %s", r.Name, r.Detail())
		}
	}
	s.logf("modules: loaded %v in %s", loaded, time.Since(start).Round(time.Millisecond))
}
