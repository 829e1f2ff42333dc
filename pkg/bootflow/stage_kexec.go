package bootflow

import (
	"context"
	"fmt"
	"os"
)

// kexecLoad is stage 10 (kexec-load): kexec_file_load(2) of the copies.
// The kernel verifies and stages them now, so that a failure still leaves
// the session, the disk and the rescue shell usable.
func (b *boot) kexecLoad(ctx context.Context) (string, error) {
	k, err := os.Open(b.kernel)
	if err != nil {
		return "", err
	}
	defer k.Close()
	var ird *os.File
	if b.initrd != "" {
		if ird, err = os.Open(b.initrd); err != nil {
			return "", err
		}
		defer ird.Close()
	}
	if err := b.m.KexecLoad(k, ird, b.osCmdline); err != nil {
		return "", withCheck(fmt.Errorf("kexec_file_load: %w", err),
			"the firmware kernel needs CONFIG_KEXEC_FILE; under Secure Boot lockdown the OS kernel must be signed")
	}
	return fmt.Sprintf("%s loaded", b.entry.Label), nil
}

// exec is stage 12 (kexec): the jump into the loaded kernel. It returns
// only on failure.
func (b *boot) exec() error {
	if f, ok := b.o.Console.(Flusher); ok {
		f.Flush()
	}
	err := b.m.Kexec()
	return &StageError{Stage: "kexec", Err: err, Check: "the kernel refused the jump; the loaded image is lost, run `lunboot boot` again"}
}
