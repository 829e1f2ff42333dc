// Package initramfs is the boot image's recipe: the module list
// (modules.txt), the builder (mkimage, `make image`), the kernel config
// fragment for LinuxBoot kernels (linuxboot.config), and a test that boots
// the built image in QEMU. See README.md in this directory.
package initramfs
