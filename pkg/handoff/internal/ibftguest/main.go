// Command ibftguest is the /init of the QEMU test that checks the iBFT
// hand-off against a real kernel (pkg/handoff qemu_test.go). It mounts
// devtmpfs and sysfs, loads the kernel modules it finds in /modules in
// file-name order (iscsi_boot_sysfs before iscsi_ibft), reads the table the
// kernel installed back through pkg/ibft, prints the results between
// markers on the console, and powers the machine off.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lunboot/lunboot/pkg/ibft"
	"golang.org/x/sys/unix"
)

func main() {
	err := run()
	if err != nil {
		fmt.Printf("IBFTGUEST-ERROR: %v\n", err)
	}
	fmt.Println("IBFTGUEST-DONE")
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	os.MkdirAll("/dev", 0o755)
	os.MkdirAll("/sys", 0o755)
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		os.Stdout, os.Stderr = con, con
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	mods, _ := filepath.Glob("/modules/*.ko")
	sort.Strings(mods)
	for _, m := range mods {
		f, err := os.Open(m)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", m, err)
		}
	}
	emit := func(marker string, v any, err error) {
		if err != nil {
			fmt.Printf("%s-ERROR: %v\n", marker, err)
			return
		}
		b, _ := json.Marshal(v)
		fmt.Printf("%s: %s\n", marker, b)
	}
	t, err := ibft.ReadSysfs("/sys")
	emit("IBFTGUEST-SYSFS", t, err)
	t, err = ibft.ReadACPI("/sys")
	emit("IBFTGUEST-ACPI", t, err)
	// The raw attributes, for checking the kernel's formatting quirks.
	files := map[string]string{}
	filepath.Walk("/sys/firmware/ibft", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			files[p] = "-> " + l
			return nil
		}
		b, _ := os.ReadFile(p)
		files[p] = string(b)
		return nil
	})
	emit("IBFTGUEST-FILES", files, nil)
	// Kernel messages about the table. /dev/kmsg is read with raw
	// non-blocking reads (one record each) until EAGAIN: through os.File
	// the Go poller would wait for more records forever.
	var klog []string
	if fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
		buf := make([]byte, 8192)
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EPIPE {
				continue // records overwritten while reading
			}
			if err != nil || n <= 0 {
				break
			}
			l := strings.TrimSpace(string(buf[:n]))
			if strings.Contains(l, "IBFT") || strings.Contains(l, "iBFT") {
				klog = append(klog, l[strings.IndexByte(l, ';')+1:])
			}
		}
		unix.Close(fd)
	}
	emit("IBFTGUEST-KLOG", klog, nil)
	return nil
}
