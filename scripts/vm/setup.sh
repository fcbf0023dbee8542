#!/usr/bin/env bash
# Prepare this Debian 12 host to boot a guest kernel with the real OpenZFS 2.1
# kernel module (scripts/test-openzfs-vm.sh uses it). Idempotent and cached:
# every step checks what is already there and does nothing if it is.
#
#   - apt source for Debian's `contrib` component (a separate file,
#     /etc/apt/sources.list.d/betterpg-contrib.sources; the others are left alone);
#   - apt packages (all --no-install-recommends): linux-image-amd64,
#     busybox-static, qemu-system-x86, libzfslinux-dev (OpenZFS headers and
#     libraries for `--features libzfs`; installs beside zfs-fuse);
#   - the OpenZFS kernel module for the guest kernel, built by zfs-dkms
#     (+ linux-headers-amd64) once (~8 min on 2 cores), then kept as a tarball
#     in the cache and restored from it on a machine that has the cache but not
#     the module (no headers or dkms needed then);
#   - OpenZFS's userland for the guest WITHOUT installing zfsutils-linux on the
#     host (it conflicts with zfs-fuse and would remove it): the .debs are
#     fetched with `apt-get download` and unpacked with `dpkg -x` into
#     $CACHE/openzfs-root, which the guest puts first on PATH/LD_LIBRARY_PATH;
#   - virtme-ng (PyPI) in a venv at $CACHE/venv (gives `vng`).
#
# Usage: scripts/vm/setup.sh [--check]
#   --check   only verify; list what is missing; exit 1 if anything is.
# Environment: BPG_VM_CACHE (default /var/cache/betterpg/vm).
# Prints, on success, `KVER=<guest kernel version>` on stdout.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CACHE=${BPG_VM_CACHE:-/var/cache/betterpg/vm}
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

need_root "installs packages and kernel modules"
export DEBIAN_FRONTEND=noninteractive
MISSING=()
APT=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=900
     -o Dpkg::Options::=--force-confold --no-install-recommends)
CONTRIB_LIST=/etc/apt/sources.list.d/betterpg-contrib.sources
# The guest's userland must match the module exactly (same OpenZFS release).
USERLAND_PKGS=(zfsutils-linux libzfs4linux libzpool5linux libnvpair3linux libuutil3linux)

# Never let anything here take zfs-fuse away from the host.
guard_zfs_fuse() {
  if pkg_installed zfsutils-linux; then
    die "zfsutils-linux is installed on the host: it conflicts with zfs-fuse; remove it (apt-get install zfs-fuse)"
  fi
}

ensure_contrib() {
  if [[ -f $CONTRIB_LIST ]]; then ok "apt contrib source present"; return 0; fi
  if (( CHECK )); then MISSING+=("apt source $CONTRIB_LIST"); return 0; fi
  local sec_uri=http://deb.debian.org/debian-security uri=http://deb.debian.org/debian
  cat >"$CONTRIB_LIST" <<SRC
# Added by betterpg scripts/vm/setup.sh: Debian's contrib component (OpenZFS:
# zfs-dkms, libzfslinux-dev). Same mirrors as debian.sources.
Types: deb
URIs: $uri
Suites: bookworm bookworm-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec_uri
Suites: bookworm-security
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  log "added $CONTRIB_LIST; apt-get update"
  apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
}

apt_known() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n "$c" && "$c" != "(none)" ]]
}

install_pkgs() {
  local -a missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  (( ${#missing[@]} == 0 )) && return 0
  if (( CHECK )); then MISSING+=("apt packages: ${missing[*]}"); return 0; fi
  for p in "${missing[@]}"; do
    apt_known "$p" || apt-get -q -o DPkg::Lock::Timeout=900 update >/dev/null
  done
  log "apt-get install ${missing[*]}"
  "${APT[@]}" install "${missing[@]}"
  guard_zfs_fuse
  pkg_installed zfs-fuse || die "zfs-fuse was removed by apt: run scripts/setup.sh to reinstall it"
}

# Newest Debian kernel installed by linux-image-amd64 (its version string).
guest_kver() {
  local dep
  dep=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null | grep -o 'linux-image-[0-9][^ ,]*' | head -1)
  [[ -n "$dep" ]] || return 1
  echo "${dep#linux-image-}"
}

zfs_version() { apt-cache policy zfs-dkms | awk '/Candidate:/ {print $2}'; }

module_present() { [[ -n "$(find "/lib/modules/$1" -name 'zfs.ko*' 2>/dev/null | head -1)" ]]; }

ensure_module() {
  local kver=$1 zver tarball
  zver=$(zfs_version)
  [[ -n "$zver" && "$zver" != "(none)" ]] || { MISSING+=("zfs-dkms not known to apt (contrib?)"); return 0; }
  tarball="$CACHE/zfs-modules-$kver-${zver//[:~]/_}.tar"
  if module_present "$kver"; then
    ok "zfs module present for $kver"
    if [[ ! -f "$tarball" ]] && (( ! CHECK )); then save_module "$kver" "$tarball"; fi
    return 0
  fi
  if (( CHECK )); then MISSING+=("zfs kernel module for $kver"); return 0; fi
  if [[ -f "$tarball" ]]; then
    log "restoring zfs module for $kver from $tarball"
    tar -C / -xf "$tarball"
    depmod "$kver"
  else
    log "building the zfs module for $kver with zfs-dkms $zver (about 8 minutes on 2 cores)"
    install_pkgs "linux-headers-$kver" zfs-dkms
    if ! module_present "$kver"; then
      local dv
      dv=$(dpkg-query -W -f='${Version}' zfs-dkms); dv=${dv%%-*}; dv=${dv#*:}
      nice -n 10 dkms install "zfs/$dv" -k "$kver"
    fi
    depmod "$kver"
    save_module "$kver" "$tarball"
  fi
  module_present "$kver" || die "zfs module for $kver still missing after build"
  ok "zfs module for $kver"
}

save_module() {
  local kver=$1 tarball=$2 files
  mkdir -p "$CACHE"
  files=$(find "/lib/modules/$kver" \( -path '*/updates/*' -o -path '*/extra/*' \) \
            \( -name '*.ko' -o -name '*.ko.*' \) | sed 's|^/||' |
            grep -E '/(zfs|spl|zcommon|znvpair|zunicode|zavl|zlua|zzstd|icp)\.ko') || true
  [[ -n "$files" ]] || die "no built zfs modules found under /lib/modules/$kver to cache"
  # shellcheck disable=SC2086
  (cd / && tar -cf "$tarball.tmp" $files) && mv "$tarball.tmp" "$tarball"
  ok "cached zfs modules in $tarball"
}

ensure_userland() {
  local zver root=$CACHE/openzfs-root stamp
  zver=$(dpkg-query -W -f='${Version}' zfs-dkms 2>/dev/null || true)
  [[ -n "$zver" ]] || zver=$(zfs_version)
  stamp="$root/.version"
  if [[ -x "$root/sbin/zfs" && "$(cat "$stamp" 2>/dev/null)" == "$zver" ]]; then
    ok "OpenZFS userland $zver in $root"; return 0
  fi
  if (( CHECK )); then MISSING+=("OpenZFS userland in $root"); return 0; fi
  local dl=$CACHE/debs p
  mkdir -p "$dl"
  log "apt-get download ${USERLAND_PKGS[*]} (version $zver)"
  local -a specs=()
  for p in "${USERLAND_PKGS[@]}"; do specs+=("$p=$zver"); done
  (cd "$dl" && apt-get -q download "${specs[@]}" >/dev/null)
  rm -rf "$root.tmp"; mkdir -p "$root.tmp"
  local -a debs
  for p in "${USERLAND_PKGS[@]}"; do
    debs=("$dl/${p}_${zver#*:}_"*.deb)
    [[ -f "${debs[0]}" ]] || die "apt-get download gave no $p $zver"
    dpkg -x "${debs[0]}" "$root.tmp"
  done
  echo "$zver" >"$root.tmp/.version"
  rm -rf "$root"; mv "$root.tmp" "$root"
  ok "OpenZFS userland $zver unpacked in $root"
}

ensure_vng() {
  if [[ -x "$CACHE/venv/bin/vng" ]]; then ok "virtme-ng in $CACHE/venv"; return 0; fi
  if (( CHECK )); then MISSING+=("virtme-ng ($CACHE/venv/bin/vng)"); return 0; fi
  mkdir -p "$CACHE"
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q virtme-ng
  [[ -x "$CACHE/venv/bin/vng" ]] || die "pip install virtme-ng gave no vng"
  ok "virtme-ng installed in $CACHE/venv"
}

main() {
  [[ -r /etc/debian_version ]] || die "not a Debian system"
  guard_zfs_fuse
  mkdir -p "$CACHE"
  ensure_contrib
  install_pkgs linux-image-amd64 busybox-static qemu-system-x86 libzfslinux-dev
  local kver
  kver=$(guest_kver) || { MISSING+=("linux-image-amd64"); kver=; }
  if [[ -n "$kver" ]]; then
    [[ -f "/boot/vmlinuz-$kver" ]] || MISSING+=("/boot/vmlinuz-$kver")
    ensure_module "$kver"
  fi
  ensure_userland
  ensure_vng
  if (( ${#MISSING[@]} )); then
    printf '[%s] missing: %s\n' "$BPG_PROG" "${MISSING[@]}" >&2
    exit 1
  fi
  echo "KVER=$kver"
}
main
