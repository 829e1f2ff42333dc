#!/usr/bin/env bash
# deps.sh installs what lunboot's build, lab and tests need on a Debian 12
# machine, and unpacks the current Debian kernel package into the cache.
# It is idempotent: a second run installs nothing and downloads nothing.
#
# Usage: scripts/deps.sh [cache-dir]   (default: /var/cache/lunboot)
set -euo pipefail

cache=${1:-/var/cache/lunboot}
mkdir -p "$cache"

# Debian packages, one concern per line.
pkgs=(
  build-essential git make xz-utils cpio zstd lz4 gzip kmod iproute2 procps
  qemu-system-x86 qemu-utils ipxe-qemu           # the VMs, TCG only here
  ovmf                                           # UEFI firmware for the VMs (OVMF)
  systemd-boot-efi                               # the EFI stub the UKI fixture is built around
  sbsigntool openssl                             # sbattach/sbsign (+ openssl for the snakeoil key): the lockdown fixtures
  tgt                                            # tgtd + tgtadm, the iSCSI target
  dnsmasq-base                                   # the lab's DHCP server
  libiscsi-bin libiscsi-dev                      # iscsi-perf, iscsi-ls; the C library for the write benchmark
  open-iscsi                                     # iscsi-iname etc. for cross-checks
  debootstrap                                    # real Debian roots for hand-off tests
  mtools dosfstools e2fsprogs fdisk              # disk fixtures without loop devices
  syslinux syslinux-common extlinux              # MBR/syslinux fixture
  linux-source-6.1 bc bison flex libelf-dev libssl-dev  # make linuxboot: the kernel source and what building it takes
  systemd-boot-efi binutils                      # make efi: systemd's EFI stub, objcopy
)
# DHCP servers whose own syntax checkers (dhcpd -t, kea-dhcp4 -t) test the
# example configurations in docs/dhcp/. Installed so that none of them starts:
# a DHCP server on this machine would answer the machine's own network.
dhcp_servers=(isc-dhcp-server kea-dhcp4-server)
dhcp_units=(isc-dhcp-server isc-dhcp-server6 kea-dhcp4-server)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=() missing_dhcp=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
for p in "${dhcp_servers[@]}"; do
  installed "$p" || missing_dhcp+=("$p")
done
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_dhcp[@]} -gt 0 ]; then
  $sudo_cmd apt-get update -q
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "deps: Debian packages present"
fi
if [ ${#missing_dhcp[@]} -gt 0 ]; then
  echo "deps: installing ${missing_dhcp[*]} (their services are not started, and disabled)"
  # policy-rc.d exit 101 = "action forbidden" (Debian's invoke-rc.d policy
  # interface): invoke-rc.d and deb-systemd-invoke in the packages'
  # postinst then start nothing. Ours stands in for the install only; a
  # policy-rc.d that was already there (it may allow starts) is put back.
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then
    saved=$(mktemp)
    $sudo_cmd cp -p "$policy" "$saved"
  fi
  restore_policy() {
    if [ -n "$saved" ]; then $sudo_cmd cp -p "$saved" "$policy"; rm -f "$saved"; else $sudo_cmd rm -f "$policy"; fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs DHCP servers\nexit 101\n' |
    $sudo_cmd tee "$policy" >/dev/null
  $sudo_cmd chmod 755 "$policy"
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing_dhcp[@]}"
  # Not at the next boot either.
  for u in "${dhcp_units[@]}"; do
    $sudo_cmd systemctl disable "$u" >/dev/null 2>&1 || true
    $sudo_cmd update-rc.d "$u" disable >/dev/null 2>&1 || true
  done
  restore_policy
  trap - EXIT
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
