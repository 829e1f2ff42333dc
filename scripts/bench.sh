#!/usr/bin/env bash
# bench.sh measures lunboot's initiator against libiscsi (iscsi-perf for
# reads, scripts/writeperf for writes) on one tgtd target (1 GiB LUN in
# /dev/shm, loopback) and writes the table to the given Markdown file.
# `make bench` runs it as:
#
#   scripts/bench.sh out/lunboot docs/benchmarks.md
#
# Needs root, tgtd/tgtadm (Debian tgt), iscsi-perf (Debian libiscsi-bin), and
# cc with libiscsi's headers (Debian libiscsi-dev) to build writeperf.
# Environment: BENCH_DURATION (default 10s per test), BENCH_RUNS (default 3
# rounds, medians reported), BENCH_CPUPROFILE (a file for a CPU profile of
# lunboot's sequential read; inspect with `go tool pprof <lunboot> <file>`).
# All the work, including cleanup on failure, is in scripts/benchtarget and,
# for the boot-storm table appended after it, scripts/stormbench.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <lunboot-binary> <out.md>" >&2
  exit 2
fi
lunboot=$1
out=$2
cd "$(dirname "$0")/.."
[ -x "$lunboot" ] || { echo "bench: $lunboot is not an executable (run \`make build\`)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root to run tgtd" >&2; exit 1; }
for b in tgtd tgtadm iscsi-perf cc; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || {
    echo "bench: $b not found (run \`make deps\`)" >&2; exit 1; }
done

go run ./scripts/benchtarget \
  -lunboot "$lunboot" -out "$out" \
  -duration "${BENCH_DURATION:-10s}" -runs "${BENCH_RUNS:-3}" \
  ${BENCH_CPUPROFILE:+-cpuprofile "$BENCH_CPUPROFILE"} \
  -command "scripts/bench.sh $lunboot $out (make bench), BENCH_DURATION=${BENCH_DURATION:-10s} BENCH_RUNS=${BENCH_RUNS:-3}"

# The boot storm (N clients at once, and tgtd killed mid-storm), appended to
# the same file: see scripts/stormbench.
go run ./scripts/stormbench -runs "${BENCH_RUNS:-3}" -out "$out" \
  -command "scripts/bench.sh $lunboot $out (make bench), BENCH_RUNS=${BENCH_RUNS:-3}"

# The boot timeline (QEMU, TCG): lunboot against iPXE on the MBR probe disk
# in the same lab, then lunboot with the Debian 12 disk (and again with the
# LinuxBoot kernel when out/linuxboot.bzImage exists), each BENCH_BOOT_RUNS
# times (default 3). Needs `make image fixtures` (and
# `make distro` for Debian); BENCH_BOOT=0 leaves it out.
outdir=$(dirname "$lunboot") # make's $(OUT): the image, fixtures and kernels the demo boots
if [ "${BENCH_BOOT:-1}" != 0 ]; then
  runs=${BENCH_BOOT_RUNS:-3}
  # timeline <heading> <sed range end> <demo flags...>: one fenced timeline.
  timeline() {
    local heading=$1 end=$2
    shift 2
    printf '\n%s\n\n```\n' "$heading"
    go run ./qemu/cmd/demo -quiet -out "$outdir" -runs "$runs" "$@" | sed -n "/^== boot timeline/,$end"
    printf '```\n'
  }
  {
    printf '\n## Boot timeline\n\n'
    printf 'Time from QEMU power-on (TCG, 1 vCPU) to each point, as the serial console shows it: the firmware kernel, lunboot and its stages, the kexec call, the OS kernel, the OS initrd'"'"'s own iSCSI login and (Debian) the login prompt. Median [min–max] of %s runs.\n' "$runs"
    timeline 'The MBR probe disk through lunboot and through iPXE (sanboot), in the same lab:' '$p' -os probe -fixture mbr -ipxe
    timeline 'The Debian 12 disk through lunboot, firmware kernel: Debian'"'"'s with its modules (`make image`, what users get):' '/^same lab/p' -os debian
    # The trimmed LinuxBoot kernel (make linuxboot, a prerequisite of
    # make bench) as the second configuration: drivers built in, no
    # module stage.
    if [ -f "$outdir/linuxboot.bzImage" ]; then
      timeline 'The MBR probe disk again, firmware kernel: the trimmed LinuxBoot kernel with the image inside (`-image linuxboot`), against iPXE in the same lab:' '$p' -os probe -fixture mbr -ipxe -image linuxboot
      timeline 'The same disk, firmware kernel: the trimmed LinuxBoot kernel with the image inside (`make linuxboot`, `-image linuxboot`):' '/^same lab/p' -image linuxboot
    fi
    printf '\n`scripts/bench.sh (make bench), BENCH_BOOT_RUNS=%s`; load average: %s\n' "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
  } >> "$out"
fi

# Footprint: the image's size as mkimage built it, and the u-root busybox
# alone (the image without modules, compressed as mkimage compresses it).
# lunboot's peak memory is in the "lunboot footprint" lines of the boot
# timelines above (VmHWM from the shutdown stage line).
if [ -f "$outdir/lunboot.cpio.xz" ] && [ -f "$outdir/lunboot-nomodules.cpio" ]; then
  img=$(stat -c %s "$outdir/lunboot.cpio.xz")
  base=$(xz --format=xz --check=crc32 --lzma2=preset=9,dict=1MiB --threads=1 --stdout < "$outdir/lunboot-nomodules.cpio" | wc -c)
  mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
  {
    printf '\n## Footprint\n\n| | size | goal |\n|---|---:|---:|\n'
    printf '| `%s`, the image with its modules (xz) | %s | ≤ 6 MiB |\n' "$outdir/lunboot.cpio.xz" "$(mib "$img")"
    printf '| the u-root busybox alone: `%s` compressed as mkimage compresses it (xz preset 9, 1 MiB dictionary) | %s | ≤ 3 MiB |\n' "$outdir/lunboot-nomodules.cpio" "$(mib "$base")"
    if [ "${BENCH_BOOT:-1}" != 0 ]; then
      printf '\nlunboot'"'"'s peak memory (VmHWM, goal ≤ 32 MiB) and its tmpfs use are the "lunboot footprint" lines under the boot timelines above.'
    fi
    printf '\nImage: %s.\n' "$(cat "$outdir/lunboot.version" 2>/dev/null || echo unknown)"
  } >> "$out"
fi
