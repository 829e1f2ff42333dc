package bootflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/lunboot/lunboot/pkg/advice"
	"github.com/lunboot/lunboot/pkg/handoff"
)

// isSignatureRefusal reports whether kexec_file_load's error is the
// kernel refusing the image's signature: kimage_validate_signature
// (kernel/kexec_file.c) returns EPERM under lockdown when verification
// failed, or the verifier's own error (EKEYREJECTED, ENOKEY, EBADMSG,
// ENODATA for an image with no signature) when signatures are enforced.
func isSignatureRefusal(err error) bool {
	for _, e := range []error{syscall.EPERM, syscall.EKEYREJECTED, syscall.ENOKEY, syscall.EBADMSG, syscall.ENODATA} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

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
		err = fmt.Errorf("kexec_file_load: %w", err)
		if handoff.LockedDown(b.lockdown) && isSignatureRefusal(err) {
			// Retrying loads the same unsigned kernel again.
			return "", permanent(withCheck(fmt.Errorf("the OS kernel's signature was refused: %w", err), "%s", advice.KexecRefused(err, b.lockdown)))
		}
		return "", withCheck(err, "%s", advice.KexecRefused(err, b.lockdown))
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
