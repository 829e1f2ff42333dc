package bootflow

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// peakRSS returns the process's peak resident set size as the kernel
// counts it: VmHWM in /proc/self/status (proc(5)), in bytes. The kernel
// and initrd copies live in tmpfs files that lunboot writes and never maps,
// so they count under tmpfs, not here.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmHWM(f)
}

func parseVmHWM(f interface{ Read([]byte) (int, error) }) (int64, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("VmHWM: unexpected %q", v)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmHWM: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmHWM line")
}

// fileBytes returns the space files take (allocated blocks, as tmpfs
// charges them), skipping names that are empty or gone.
func fileBytes(names ...string) int64 {
	var n int64
	for _, name := range names {
		if name == "" {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(name, &st); err == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// footprint is the shutdown stage line's memory report: lunboot's peak
// RSS, then what the OS kernel and initrd copies hold in tmpfs.
func (b *boot) footprint() string {
	var parts []string
	if hwm, err := peakRSS(); err == nil {
		parts = append(parts, fmt.Sprintf("peak RSS %s (VmHWM)", mibString(hwm)))
	} else {
		b.log.Debug("peak RSS unknown", "err", err)
	}
	if n := fileBytes(b.kernel, b.initrd); n > 0 {
		parts = append(parts, fmt.Sprintf("tmpfs %s (OS kernel and initrd)", mibString(n)))
	}
	return strings.Join(parts, ", ")
}

func mibString(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
