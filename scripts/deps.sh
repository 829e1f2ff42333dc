#!/usr/bin/env bash
# deps.sh installs what lunboot's build, lab and tests need on a Debian 12
# machine, and unpacks the current Debian kernel package into the cache.
# It is idempotent: a second run installs nothing and downloads nothing.
#
# Usage: scripts/deps.sh [cache-dir]   (default: .cache)
set -euo pipefail

cache=${1:-.cache}
mkdir -p "$cache"

# Debian packages, one concern per line.
pkgs=(
  build-essential git make xz-utils cpio zstd lz4 gzip kmod iproute2 procps
  qemu-system-x86 qemu-utils ipxe-qemu           # the VMs, TCG only here
  tgt                                            # tgtd + tgtadm, the iSCSI target
  dnsmasq-base                                   # the lab's DHCP server
  libiscsi-bin libiscsi-dev                      # iscsi-perf, iscsi-ls; the C library for the write benchmark
  open-iscsi                                     # iscsi-iname etc. for cross-checks
  debootstrap                                    # real Debian roots for hand-off tests
  mtools dosfstools e2fsprogs fdisk              # disk fixtures without loop devices
  syslinux syslinux-common extlinux              # MBR/syslinux fixture
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "deps: Debian packages present"
fi

# The Debian kernel: the version linux-image-amd64 points at today, not a
# hard-coded one. Unpacked (not installed) under $cache/kernel.
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ]; then
  echo "deps: cannot find the kernel package behind linux-image-amd64 (run apt-get update?)" >&2
  exit 1
fi
kver=${kpkg#linux-image-}
kdir="$cache/kernel/$kver"
if [ ! -f "$kdir/boot/vmlinuz-$kver" ]; then
  echo "deps: fetching $kpkg"
  tmp=$(mktemp -d); chmod 755 "$tmp"   # apt-get download runs as _apt
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$kpkg" >/dev/null)
  rm -rf "$kdir"
  mkdir -p "$kdir"
  dpkg-deb -x "$tmp"/*.deb "$kdir"
fi
ln -sfn "$kver" "$cache/kernel/current"
echo "deps: kernel $kver in $cache/kernel/current"
