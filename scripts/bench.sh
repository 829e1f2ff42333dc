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
# in the same lab, then lunboot with the Debian 12 disk, each
# BENCH_BOOT_RUNS times (default 3). Needs `make image fixtures` (and
# `make distro` for Debian); BENCH_BOOT=0 leaves it out.
if [ "${BENCH_BOOT:-1}" != 0 ]; then
  runs=${BENCH_BOOT_RUNS:-3}
  {
    printf '\n## Boot timeline\n\n'
    printf 'Time from QEMU power-on (TCG, 1 vCPU) to each point, as the serial console shows it: the firmware kernel, lunboot and its stages, the kexec call, the OS kernel, the OS initrd'"'"'s own iSCSI login and (Debian) the login prompt. Median [min–max] of %s runs.\n\n' "$runs"
    printf '```\n'
    go run ./qemu/cmd/demo -quiet -os probe -fixture mbr -ipxe -runs "$runs" | sed -n '/^== boot timeline/,$p'
    for i in $(seq "$runs"); do
      go run ./qemu/cmd/demo -quiet -os debian | sed -n '/^== boot timeline/,/^same lab/p'
    done
    printf '```\n\n`scripts/bench.sh (make bench), BENCH_BOOT_RUNS=%s`; load average: %s\n' "$runs" "$(cut -d' ' -f1-3 /proc/loadavg)"
  } >> "$out"
fi
