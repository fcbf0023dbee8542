#!/usr/bin/env bash
# Prepare this Debian 12 host to boot a guest kernel with a real OpenZFS
# kernel module (scripts/test-openzfs-vm.sh uses it): OpenZFS 2.1 (Debian
# 12's) or 2.3 (bookworm-backports). Idempotent and cached: every step checks
# what is already there and does nothing if it is.
#
# Both releases:
#   - apt source for Debian's `contrib` component (a separate file,
#     /etc/apt/sources.list.d/betterpg-contrib.sources; the others are left alone);
#   - apt packages (all --no-install-recommends): busybox-static,
#     qemu-system-x86, libzfslinux-dev (OpenZFS 2.1's headers and libraries:
#     the libzfs unit tests on the host; installs beside zfs-fuse);
#   - virtme-ng (PyPI) in a venv at $CACHE/venv (gives `vng`);
#   - OpenZFS's userland for the guest WITHOUT installing zfsutils-linux on
#     the host (it conflicts with zfs-fuse and would remove it): the .debs
#     are fetched with `apt-get download` and unpacked with `dpkg -x` into
#     ZROOT, which the guest puts first on PATH/LD_LIBRARY_PATH.
# --zfs 2.1 (default):
#   - linux-image-amd64 (Debian 12's kernel, never booted on the host);
#   - the module built by zfs-dkms 2.1 (+ linux-headers) on the host once
#     (~8 min on 2 cores), then kept as a tarball in the cache and restored
#     from it (no headers or dkms needed then); ZROOT=$CACHE/openzfs-root.
# --zfs 2.3:
#   - nothing of OpenZFS 2.3 enters the host's package set (its libraries
#     conflict with zfs-fuse): a private apt state ($CACHE/apt-2.3: bookworm
#     + bookworm-backports, main + contrib) resolves and downloads;
#   - the backports kernel (linux-image-6.12.*) is installed on the host from
#     its downloaded .deb (a kernel package, never booted on the host; vng
#     needs its modules under /lib/modules);
#   - the module is built by zfs-dkms 2.3 inside a debootstrap'd bookworm
#     root ($CACHE/zfs-2.3/chroot, with the kernel's headers) once (~10 min),
#     then cached as a tarball like 2.1's; ZROOT=$CACHE/zfs-2.3/openzfs-root.
#
# Usage: scripts/vm/setup.sh [--check] [--zfs 2.1|2.3]
#   --check   only verify; list what is missing; exit 1 if anything is.
# Environment: BPG_VM_CACHE (default /var/cache/betterpg/vm), BPG_VM_ZFS
# (same as --zfs).
# Prints, on success, `KVER=<guest kernel version>`, `ZROOT=<userland root>`
# and `ZFS=<OpenZFS package version>` on stdout.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

CACHE=${BPG_VM_CACHE:-/var/cache/betterpg/vm}
CHECK=0
RELEASE=${BPG_VM_ZFS:-2.1}
while (( $# )); do
  case "$1" in
    --check) CHECK=1 ;;
    --zfs) RELEASE=${2:-}; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
[[ "$RELEASE" == 2.1 || "$RELEASE" == 2.3 ]] || die "--zfs must be 2.1 or 2.3, not '$RELEASE'"

need_root "installs packages and kernel modules"
export DEBIAN_FRONTEND=noninteractive
MISSING=()
APT=(apt-get -y -q -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=900
     -o Dpkg::Options::=--force-confold --no-install-recommends)
CONTRIB_LIST=/etc/apt/sources.list.d/betterpg-contrib.sources
# The guest's userland must match the module exactly (same OpenZFS release).
USERLAND_PKGS=(zfsutils-linux libzfs4linux libzpool5linux libnvpair3linux libuutil3linux)
USERLAND_PKGS_23=(zfsutils-linux libzfs6linux libzpool6linux libnvpair3linux libuutil3linux)

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

# save_module KVER TARBALL [ROOT]: the built modules under ROOT (default /)
# into TARBALL, with paths relative to ROOT (restored with tar -C /).
save_module() {
  local kver=$1 tarball=$2 root=${3:-/} files
  mkdir -p "$CACHE"
  files=$(cd "$root" && find "lib/modules/$kver" \( -path '*/updates/*' -o -path '*/extra/*' \) \
            \( -name '*.ko' -o -name '*.ko.*' \) |
            grep -E '/(zfs|spl|zcommon|znvpair|zunicode|zavl|zlua|zzstd|icp)\.ko') || true
  [[ -n "$files" ]] || die "no built zfs modules found under ${root%/}/lib/modules/$kver to cache"
  # shellcheck disable=SC2086
  (cd "$root" && tar -cf "$tarball.tmp" $files) && mv "$tarball.tmp" "$tarball"
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

# --- OpenZFS 2.3 from bookworm-backports, kept out of the host's packages ---
APT23=$CACHE/apt-2.3
ROOT23=$CACHE/zfs-2.3
BPO_MIRROR=http://deb.debian.org/debian
# apt with a private state and source list: resolves and downloads only.
apt23() {
  apt-get -q -o Dir::Etc="$APT23/etc" -o Dir::Etc::SourceList="$APT23/etc/sources.list" \
    -o Dir::Etc::SourceParts="$APT23/etc/sources.list.d" -o Dir::Etc::PreferencesParts="$APT23/etc/preferences.d" \
    -o Dir::State="$APT23/state" -o Dir::Cache="$APT23/cache" -o Dir::State::Status=/var/lib/dpkg/status \
    -o APT::Default-Release=bookworm-backports -o APT::Sandbox::User=root "$@"
}
apt23_cache() {
  apt-cache -o Dir::Etc="$APT23/etc" -o Dir::Etc::SourceList="$APT23/etc/sources.list" \
    -o Dir::Etc::SourceParts="$APT23/etc/sources.list.d" -o Dir::Etc::PreferencesParts="$APT23/etc/preferences.d" \
    -o Dir::State="$APT23/state" -o Dir::Cache="$APT23/cache" -o Dir::State::Status=/var/lib/dpkg/status \
    -o APT::Default-Release=bookworm-backports "$@"
}

bpo_sources() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat <<SRC
deb [signed-by=$keyring] $BPO_MIRROR bookworm main contrib
deb [signed-by=$keyring] $BPO_MIRROR bookworm-updates main contrib
deb [signed-by=$keyring] http://deb.debian.org/debian-security bookworm-security main contrib
deb [signed-by=$keyring] $BPO_MIRROR bookworm-backports main contrib
SRC
}

ensure_apt23() {
  if [[ -f "$APT23/state/lists/.updated" && -n "$(find "$APT23/state/lists/.updated" -mmin -1440)" ]]; then
    ok "private apt state for bookworm-backports in $APT23"; return 0
  fi
  if (( CHECK )); then MISSING+=("private apt state $APT23 (bookworm-backports)"); return 0; fi
  mkdir -p "$APT23"/etc/{sources.list.d,preferences.d} "$APT23"/state/lists/partial "$APT23"/cache/archives/partial
  bpo_sources >"$APT23/etc/sources.list"
  log "apt-get update (private state $APT23: bookworm-backports)"
  apt23 update >/dev/null
  touch "$APT23/state/lists/.updated"
}

# The backports kernel linux-image-amd64 depends on, e.g. 6.12.95+deb12-amd64.
kver23() {
  apt23_cache depends linux-image-amd64 2>/dev/null | grep -o 'linux-image-[0-9][^ ,]*' | head -1 | sed 's/^linux-image-//'
}
zver23() { apt23_cache policy zfs-dkms | awk '/Candidate:/ {print $2}'; }

# download23 DIR PKG[=VER]...: the .debs into DIR.
download23() {
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && apt23 download "$@" >/dev/null)
}

ensure_kernel23() {
  local kver=$1
  if [[ -f "/boot/vmlinuz-$kver" && -d "/lib/modules/$kver/kernel" ]]; then ok "guest kernel $kver"; return 0; fi
  if (( CHECK )); then MISSING+=("guest kernel $kver (bookworm-backports)"); return 0; fi
  log "installing the guest kernel $kver from bookworm-backports (a kernel package; never booted on the host)"
  download23 "$ROOT23/debs" "linux-image-$kver"
  local deb
  deb=$(ls "$ROOT23/debs/linux-image-${kver}_"*.deb | head -1)
  # apt (not dpkg -i): waits for the dpkg lock; dependencies from bookworm.
  "${APT[@]}" install "$deb" >/dev/null
  guard_zfs_fuse
  [[ -f "/boot/vmlinuz-$kver" ]] || die "no /boot/vmlinuz-$kver after installing $deb"
}

# A minimal bookworm in $ROOT23/chroot with the kernel's headers and zfs-dkms
# 2.3 from backports; dkms builds the module there.
build_module23() {
  local kver=$1 zver=$2 root=$ROOT23/chroot
  if [[ ! -x "$root/usr/bin/apt-get" ]]; then
    install_pkgs debootstrap
    log "debootstrap bookworm into $root (minbase)"
    rm -rf "$root"
    nice -n 10 debootstrap --variant=minbase bookworm "$root" "$BPO_MIRROR" >/dev/null
  fi
  bpo_sources | sed 's/\[signed-by=[^]]*\] //' >"$root/etc/apt/sources.list"
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  bpg_cleanup_cmd "umount '$root/proc'"
  log "building the zfs $zver module for $kver in $root (zfs-dkms; about 10 minutes on 2 cores)"
  chroot "$root" apt-get -q -o Dpkg::Use-Pty=0 update >/dev/null
  DEBIAN_FRONTEND=noninteractive nice -n 10 chroot "$root" apt-get -y -q -o Dpkg::Use-Pty=0 \
    --no-install-recommends install "linux-headers-$kver" "zfs-dkms=$zver" >"$ROOT23/dkms.log" 2>&1 ||
    { tail -n 40 "$ROOT23/dkms.log" >&2; die "installing zfs-dkms $zver in $root failed (log: $ROOT23/dkms.log)"; }
  if [[ -z "$(find "$root/lib/modules/$kver" -name 'zfs.ko*' 2>/dev/null | head -1)" ]]; then
    local dv=${zver%%-*}; dv=${dv#*:}
    nice -n 10 chroot "$root" dkms install "zfs/$dv" -k "$kver" >>"$ROOT23/dkms.log" 2>&1 ||
      { tail -n 40 "$ROOT23/dkms.log" >&2; die "dkms build of zfs $dv for $kver failed (log: $ROOT23/dkms.log)"; }
  fi
  umount "$root/proc" || true
}

ensure_module23() {
  local kver=$1 zver=$2 tarball
  tarball="$CACHE/zfs-modules-$kver-${zver//[:~+]/_}.tar"
  if module_present "$kver"; then ok "zfs module present for $kver"; return 0; fi
  if (( CHECK )); then MISSING+=("zfs $zver kernel module for $kver"); return 0; fi
  if [[ ! -f "$tarball" ]]; then
    build_module23 "$kver" "$zver"
    save_module "$kver" "$tarball" "$ROOT23/chroot"
  fi
  log "restoring zfs module for $kver from $tarball"
  tar -C / -xf "$tarball"
  depmod "$kver"
  module_present "$kver" || die "zfs module for $kver still missing"
  ok "zfs $zver module for $kver"
}

ensure_userland23() {
  local zver=$1 root=$ROOT23/openzfs-root p
  if [[ -x "$root/sbin/zfs" && "$(cat "$root/.version" 2>/dev/null)" == "$zver" ]]; then
    ok "OpenZFS userland $zver in $root"; return 0
  fi
  if (( CHECK )); then MISSING+=("OpenZFS $zver userland in $root"); return 0; fi
  local -a specs=() debs
  for p in "${USERLAND_PKGS_23[@]}"; do specs+=("$p=$zver"); done
  log "downloading ${USERLAND_PKGS_23[*]} $zver (unpacked, never installed)"
  download23 "$ROOT23/debs" "${specs[@]}"
  rm -rf "$root.tmp"; mkdir -p "$root.tmp"
  for p in "${USERLAND_PKGS_23[@]}"; do
    debs=("$ROOT23/debs/${p}_${zver#*:}_"*.deb)
    [[ -f "${debs[0]}" ]] || die "apt-get download gave no $p $zver"
    dpkg -x "${debs[0]}" "$root.tmp"
  done
  echo "$zver" >"$root.tmp/.version"
  rm -rf "$root"; mv "$root.tmp" "$root"
  ok "OpenZFS userland $zver unpacked in $root"
}

main23() {
  local kver zver
  ensure_apt23
  kver=$(kver23) || true
  zver=$(zver23) || true
  [[ -n "$kver" && -n "$zver" && "$zver" != "(none)" ]] ||
    { MISSING+=("bookworm-backports kernel/zfs-dkms not resolvable (kernel '$kver', zfs '$zver')"); return 0; }
  [[ "$zver" == 2.3.* ]] || MISSING+=("bookworm-backports zfs-dkms is $zver, not 2.3")
  ensure_kernel23 "$kver"
  ensure_module23 "$kver" "$zver"
  ensure_userland23 "$zver"
  KVER=$kver ZROOT=$ROOT23/openzfs-root ZVER=$zver
}

main() {
  [[ -r /etc/debian_version ]] || die "not a Debian system"
  guard_zfs_fuse
  mkdir -p "$CACHE"
  ensure_contrib
  install_pkgs busybox-static qemu-system-x86 libzfslinux-dev
  if [[ "$RELEASE" == 2.3 ]]; then
    main23
  else
    install_pkgs linux-image-amd64
    KVER=$(guest_kver) || { MISSING+=("linux-image-amd64"); KVER=; }
    if [[ -n "$KVER" ]]; then
      [[ -f "/boot/vmlinuz-$KVER" ]] || MISSING+=("/boot/vmlinuz-$KVER")
      ensure_module "$KVER"
    fi
    ensure_userland
    ZROOT=$CACHE/openzfs-root
    ZVER=$(cat "$ZROOT/.version" 2>/dev/null || true)
  fi
  ensure_vng
  if (( ${#MISSING[@]} )); then
    printf '[%s] missing: %s\n' "$BPG_PROG" "${MISSING[@]}" >&2
    exit 1
  fi
  echo "KVER=$KVER"
  echo "ZROOT=$ZROOT"
  echo "ZFS=$ZVER"
}
KVER= ZROOT= ZVER=
main
