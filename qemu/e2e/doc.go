// Package e2e is lunboot's end-to-end suite: the boot image (`make image`)
// powers on a diskless QEMU guest in the lab (package qemu/lab), gets its
// target by DHCP or from the command line, logs in to the lab's tgtd, finds
// the OS on a fixture disk (`make fixtures`) and kexecs it; the probe OS on
// the disk then proves what it was handed by logging in again.
//
// The package has only tests. Each asserts on what an operator would see on
// the lunboot console — the stage lines "[  5.81s] network …", the final
// "lunboot: BOOT FAILED in stage …" and "lunboot: check: …" lines, the rescue
// shell — and on the probe's LUNBOOT-PROBE-RESULT: the command line and iBFT
// the OS received, and its own login with them, down to the SHA-256 of
// sector 0 compared with the fixture manifest.
//
// The tests need root, the lab's Debian packages and the build outputs in
// $LUNBOOT_OUT (default out/): they skip with a reason when something is
// missing, and fail instead under CI=true. With the other QEMU tests they run at
// most one guest per CPU machine-wide (testenv.GuestSlot; LUNBOOT_GUESTS=1
// runs them one by one); -short skips them.
package e2e
