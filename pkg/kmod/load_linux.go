package kmod

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// loadFile inserts the module at path. finit_module(2) lets the kernel read
// the file itself (and check its signature against the file); kernels
// before 3.8 lack it (ENOSYS), so the bytes then go through init_module(2).
func loadFile(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if compressed(path) {
		return loadCompressed(f, path, params)
	}
	err = unix.FinitModule(int(f.Fd()), params, 0)
	if !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return fmt.Errorf("finit_module %s: %w", path, err)
		}
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, maxModuleSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxModuleSize {
		return fmt.Errorf("init_module %s: file over %d bytes", path, maxModuleSize)
	}
	if err := unix.InitModule(b, params); err != nil {
		return fmt.Errorf("init_module %s: %w", path, err)
	}
	return nil
}

// loadCompressed inserts a compressed module (.ko.xz, .ko.zst, .ko.gz).
// Only kernels from 6.4 with CONFIG_MODULE_DECOMPRESS take one through
// finit_module(2) with MODULE_INIT_COMPRESSED_FILE, and only in the format
// they were built for; so the module is decompressed here and its bytes
// go through init_module(2), which every kernel takes (a signed module's
// signature is inside the decompressed file, so it is still checked).
func loadCompressed(f *os.File, path, params string) error {
	b, err := decompress(f, path)
	if err != nil {
		return err
	}
	if err := unix.InitModule(b, params); err != nil {
		return fmt.Errorf("init_module %s: %w", path, err)
	}
	return nil
}

func release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// classify maps a load error to a Status. EEXIST is the kernel saying the
// module is already there (kernel/module/main.c, add_unformed_module).
func classify(err error) (Status, error) {
	switch {
	case err == nil:
		return Loaded, nil
	case errors.Is(err, unix.EEXIST):
		return Present, nil
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return NoDevice, err
	}
	return Failed, err
}

// meanings are what an errno from finit_module usually means for a module
// the image builder resolved for this kernel (kernel/module/main.c,
// kernel/module/signing.c, init_module(2)).
var meanings = map[syscall.Errno]string{
	unix.EEXIST:       "already loaded",
	unix.ENODEV:       "no matching device or CPU feature: the module declined to initialise",
	unix.ENXIO:        "no matching device: the module declined to initialise",
	unix.ENOEXEC:      "invalid module format: built for another kernel or corrupt (dmesg names the mismatch)",
	unix.ENOENT:       "unknown symbol: a module it needs is missing (dmesg names the symbol)",
	unix.EKEYREJECTED: "signature rejected (Secure Boot or module.sig_enforce): the kernel trusts another key",
	unix.ENOKEY:       "no key for the module's signature (Secure Boot or module.sig_enforce)",
	unix.EBADMSG:      "signature malformed or missing while signatures are enforced",
	unix.EPERM:        "module loading not permitted: not root, kernel lockdown, or modules disabled (kernel.modules_disabled)",
	unix.EINVAL:       "invalid parameters or module: check <module>.<param>= on the kernel command line and dmesg",
	unix.ENOMEM:       "out of memory",
	unix.EBUSY:        "busy: the module is still being loaded or unloaded by someone else",
	unix.ENOSPC:       "no space: the module's per-CPU or vmalloc area could not be allocated",
	unix.ETXTBSY:      "the module file is open for writing",
	unix.EFBIG:        "module file too big",
}

// Explain renders a module error as "<ERRNO>: <what it usually means>"
// when it wraps a known errno, else as the error text.
func Explain(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		name := unix.ErrnoName(errno)
		if m, ok := meanings[errno]; ok {
			return name + ": " + m
		}
		return fmt.Sprintf("%s: %v", name, errno)
	}
	return err.Error()
}
