#!/usr/bin/env bash
# Build and test the C API (betterpg-ffi), for real:
#   1. builds the library with cargo (dev profile by default; an existing
#      build is reused; with the fault-injection feature the C test needs) and asks rustc which system libraries its static
#      archive needs; runs the crate's Rust unit tests;
#   2. regenerates include/betterpg.h with the pinned cbindgen (installed by
#      `cargo install --locked` when missing) and fails if the committed
#      header differs;
#   3. checks what the build made for C users (betterpg-ffi/build.rs, from
#      Cargo.toml): the SONAME libbetterpg.so.<major> and its link, and the
#      pkg-config files TARGET/<profile>/pkgconfig/betterpg{,-uninstalled}.pc
#      (their Libs.private must be what rustc says the archive needs);
#   4. compiles betterpg-ffi/tests/c/test_betterpg.c with
#      gcc -std=c11 -Wall -Wextra -Werror -pedantic against the static and the
#      dynamic library (and checks which one each binary uses), and the
#      examples/c program with its Makefile;
#   5. runs the C test against real ZFS (zfs-fuse) and PostgreSQL 15: the
#      static binary, the dynamic one, and the dynamic one under valgrind
#      (any leak or memory error fails); runs the example against the home
#      the static run initialised.
# Each run has its own file-backed pool (bpgffi-*, files in
# /tmp/betterpg-test/) and ports: 100 each from BPG_TEST_PORT_BASE (default
# 56000), 300 in all. Servers, pools, pool
# files and homes are removed on exit, also on failure, and before each run
# (leftovers of a killed run), so it can run again at once. Exits non-zero on
# any failure.
#
# Usage: scripts/test-ffi.sh [--update-header | --build-only]
#   --update-header  rewrite the committed header with the pinned cbindgen; exit
#   --build-only     steps 1-3 only, then print the PKG_CONFIG_PATH to use
# Environment: BETTERPG_FFI_PROFILE=dev|release (default dev);
# BPG_TEST_PORT_BASE, the first port of the runs (default 56000).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CBINDGEN_VERSION=0.29.4
CRATE=betterpg-ffi
HEADER=$CRATE/include/betterpg.h
TEST_SRC=$CRATE/tests/c/test_betterpg.c
VALGRIND_SUPP=$CRATE/tests/c/valgrind.supp
POOL_DIR=/tmp/betterpg-test
WORK=$POOL_DIR/bpgffi-work
PROFILE=${BETTERPG_FFI_PROFILE:-dev}
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -g -O1)
PORT_BASE=${BPG_TEST_PORT_BASE:-56000}
[[ "$PORT_BASE" =~ ^[0-9]+$ ]] && (( PORT_BASE >= 1024 && PORT_BASE + 300 <= 65535 )) \
  || die "BPG_TEST_PORT_BASE must be a port from 1024 to 65235, not '$PORT_BASE'"

MODE="test"
case "${1:-}" in
  "") ;;
  --update-header) MODE=update-header ;;
  --build-only) MODE=build-only ;;
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac
[[ $# -le 1 ]] || die "one argument at most (try --help)"
case "$PROFILE" in
  dev) PROFILE_DIR=debug ;;
  release) PROFILE_DIR=release ;;
  *) die "BETTERPG_FFI_PROFILE must be dev or release, not '$PROFILE'" ;;
esac

T0=$SECONDS
need_cmd cargo "install the Rust toolchain"

# --- cbindgen, pinned ---------------------------------------------------------
ensure_cbindgen() {
  if [[ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $CBINDGEN_VERSION" ]]; then
    log "installing cbindgen $CBINDGEN_VERSION (cargo install --locked)"
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet --force
  fi
  [[ "$(cbindgen --version)" == "cbindgen $CBINDGEN_VERSION" ]] \
    || die "cbindgen on PATH is '$(cbindgen --version)', not $CBINDGEN_VERSION (is ~/.cargo/bin first on PATH?)"
}

generate_header() { # OUTPUT
  (cd "$CRATE" && cbindgen --quiet --config cbindgen.toml --crate betterpg-ffi --output "$1")
}

ensure_cbindgen
if [[ $MODE == update-header ]]; then
  generate_header "$ROOT/$HEADER"
  ok "wrote $HEADER with cbindgen $CBINDGEN_VERSION"
  exit 0
fi

# --- 1. build -----------------------------------------------------------------
log "building betterpg-ffi ($PROFILE)"
build_log=$(mktemp); bpg_cleanup_add "$build_log"
# With fault injection (cargo feature fault-injection): the C test pauses a
# branch with BETTERPG_FAULT=after_clone:pause. A library built without the
# feature (what ships) never reads that variable.
if ! cargo rustc -q -p betterpg-ffi --lib --profile "$PROFILE" --features fault-injection -- --print native-static-libs >"$build_log" 2>&1; then
  cat "$build_log" >&2
  die "cargo build of betterpg-ffi failed"
fi
NATIVE_LIBS=$(sed -n 's/^note: native-static-libs: //p' "$build_log" | tail -1)
[[ -n "$NATIVE_LIBS" ]] || { cat "$build_log" >&2; die "rustc printed no native-static-libs line"; }
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
LIBDIR=$TARGET_DIR/$PROFILE_DIR
for f in libbetterpg.a libbetterpg.so; do
  [[ -f "$LIBDIR/$f" ]] || die "$LIBDIR/$f was not built"
done
ok "built $LIBDIR/libbetterpg.{a,so}; static archive needs: $NATIVE_LIBS"

if [[ $MODE == test ]]; then
  log "Rust unit tests of betterpg-ffi"
  cargo test -q -p betterpg-ffi --lib --profile "$PROFILE" --features fault-injection >&2 \
    || die "cargo test -p betterpg-ffi failed"
fi

# --- 2. header ----------------------------------------------------------------
fresh_header=$(mktemp --suffix=.h); bpg_cleanup_add "$fresh_header"
generate_header "$fresh_header"
if ! diff -u "$HEADER" "$fresh_header" >&2; then
  die "$HEADER is out of date (diff above): run scripts/test-ffi.sh --update-header and commit it"
fi
ok "$HEADER matches cbindgen $CBINDGEN_VERSION output"

# --- 3. SONAME and pkg-config files, made by build.rs ------------------------------
VERSION=$(sed -n 's/^#define BETTERPG_VERSION "\(.*\)"$/\1/p' "$HEADER")
[[ -n "$VERSION" ]] || die "no BETTERPG_VERSION in $HEADER"
need_cmd readelf "binutils, installed with gcc (scripts/setup.sh)"
SONAME=libbetterpg.so.${VERSION%%.*}
got_soname=$(readelf -d "$LIBDIR/libbetterpg.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ "$got_soname" == "$SONAME" ]] \
  || die "libbetterpg.so has SONAME '$got_soname', not $SONAME (betterpg-ffi/build.rs sets it)"
[[ "$(readlink "$LIBDIR/$SONAME")" == libbetterpg.so ]] \
  || die "$LIBDIR/$SONAME is not a link to libbetterpg.so (betterpg-ffi/build.rs makes it)"
PC_DIR=$LIBDIR/pkgconfig
for pc in betterpg.pc betterpg-uninstalled.pc; do
  [[ -f "$PC_DIR/$pc" ]] || die "$PC_DIR/$pc was not written by betterpg-ffi/build.rs"
  grep -qx "Version: $VERSION" "$PC_DIR/$pc" || die "$PC_DIR/$pc is not of version $VERSION"
  # build.rs cannot ask rustc; the list it writes must be what rustc says.
  pc_private=$(sed -n 's/^Libs.private: //p' "$PC_DIR/$pc")
  [[ "$pc_private" == "$NATIVE_LIBS" ]] \
    || die "$PC_DIR/$pc: Libs.private is '$pc_private' but rustc says the archive needs '$NATIVE_LIBS': update native_static_libs in betterpg-ffi/build.rs"
done
export PKG_CONFIG_PATH=$PC_DIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
need_cmd pkg-config "scripts/setup.sh installs it"
pkg-config --exists betterpg || die "pkg-config cannot read $PC_DIR/betterpg-uninstalled.pc"
[[ "$(pkg-config --variable=libdir betterpg)" == "$LIBDIR" ]] \
  || die "pkg-config did not take the uninstalled build's file (libdir $(pkg-config --variable=libdir betterpg))"
ok "SONAME $SONAME; $PC_DIR/betterpg{,-uninstalled}.pc (version $VERSION)"
if [[ $MODE == build-only ]]; then
  printf 'PKG_CONFIG_PATH=%s\n' "$PC_DIR"
  exit 0
fi

# --- prerequisites of the real tests -------------------------------------------
need_root "the test creates ZFS pools and runs PostgreSQL as user postgres"
need_cmd gcc "scripts/setup.sh installs it"
need_cmd make "scripts/setup.sh installs it"
need_cmd valgrind "scripts/setup.sh installs it"
need_cmd zpool "zfs-fuse: run scripts/setup.sh"
zpool list >/dev/null 2>&1 || die "zpool does not answer: is zfs-fuse running? (scripts/setup.sh starts it)"
pkg-config --exists libpq || die "libpq not found by pkg-config: install libpq-dev (scripts/setup.sh)"
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || die "PostgreSQL 15 missing in /usr/lib/postgresql/15/bin (scripts/setup.sh)"
id postgres >/dev/null 2>&1 || die "OS user postgres missing (scripts/setup.sh)"

# --- cleanup of one run's pool, servers, files, home -----------------------------
# Runs: NAME -> pool bpgffi-NAME, file POOL_DIR/bpgffi-NAME.img, home WORK/home-NAME.
cleanup_run() {
  local pool="bpgffi-$1" home="$WORK/home-$1" mp pid i mounts
  if zpool list "$pool" >/dev/null 2>&1; then
    # Servers whose data directories live on the pool: immediate shutdown.
    while read -r mp; do
      [[ -n "$mp" && -f "$mp/pgdata/postmaster.pid" ]] || continue
      pid=$(head -1 "$mp/pgdata/postmaster.pid" 2>/dev/null || true)
      [[ "$pid" =~ ^[0-9]+$ ]] || continue
      kill -QUIT "$pid" 2>/dev/null || continue
      for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done < <(zfs get -r -H -o value mountpoint "$pool" 2>/dev/null || true)
    for _ in 1 2 3 4 5; do
      zpool destroy -f "$pool" >/dev/null 2>&1 && break
      sleep 1
    done
    zpool list "$pool" >/dev/null 2>&1 && warn "could not destroy pool $pool"
  fi
  # Mounts left under the home when the zfs-fuse daemon died mid-run
  # ("Transport endpoint is not connected") would make rm fail.
  mounts=$(findmnt -rn -o TARGET 2>/dev/null | grep "^$home/" | sort -r || true)
  while read -r mp; do
    [[ -z "$mp" ]] || umount -l "$mp" 2>/dev/null || true
  done <<<"$mounts"
  rm -f "$POOL_DIR/$pool.img" || warn "could not remove $POOL_DIR/$pool.img"
  rm -rf "$home" "$home-does-not-exist" || warn "could not remove $home"
}
RUNS=(static dynamic valgrind)
cleanup_all() {
  local r
  for r in "${RUNS[@]}"; do cleanup_run "$r" || true; done
  rm -rf "$WORK"
}
cleanup_all
bpg_cleanup_cmd cleanup_all
mkdir -p "$POOL_DIR" "$WORK"

# --- 4. compile ------------------------------------------------------------------
PKG_CFLAGS=$(pkg-config --cflags betterpg libpq)
LIBPQ_LIBS=$(pkg-config --libs libpq)
DYN_LIBS=$(pkg-config --libs betterpg)
STATIC_LIBS=$(pkg-config --static --libs betterpg)
# Both archives sit in libdir; -l:libbetterpg.a makes the linker take the static one.
STATIC_LIBS=${STATIC_LIBS//-lbetterpg/-l:libbetterpg.a}

log "compiling $TEST_SRC (gcc ${CFLAGS[*]})"
# shellcheck disable=SC2086  # pkg-config output is a list of words
gcc "${CFLAGS[@]}" $PKG_CFLAGS "$TEST_SRC" -o "$WORK/test_static" $STATIC_LIBS $LIBPQ_LIBS
# shellcheck disable=SC2086
gcc "${CFLAGS[@]}" $PKG_CFLAGS "$TEST_SRC" -o "$WORK/test_dynamic" \
  -Wl,-rpath,"$(pkg-config --variable=libdir betterpg)" $DYN_LIBS $LIBPQ_LIBS
readelf -d "$WORK/test_static" | grep -q 'NEEDED.*libbetterpg' \
  && die "test_static depends on libbetterpg.so: it must link the static archive"
readelf -d "$WORK/test_dynamic" | grep -qE "\(NEEDED\) +Shared library: \[${SONAME//./\\.}\]" \
  || die "test_dynamic does not depend on $SONAME (the library's SONAME)"
ok "built test_static (libbetterpg.a) and test_dynamic (libbetterpg.so)"

log "compiling examples/c with its Makefile"
make -s -C examples/c OUT="$WORK/hello" >&2
ok "built examples/c/hello.c"

# --- 5. run ------------------------------------------------------------------------
FAILED=()
# run_test NAME FIRST_PORT LAST_PORT COMMAND...   (the test's arguments are appended)
run_test() {
  local name=$1 first=$2 last=$3; shift 3
  local pool="bpgffi-$name" t=$SECONDS
  log "=== C test, $name: pool $pool, ports $first-$last"
  if "$@" "$WORK/home-$name" "$POOL_DIR/$pool.img" "$pool" "$first" "$last"; then
    ok "C test $name passed ($((SECONDS - t)) s)"
    return 0
  fi
  warn "C test $name FAILED ($((SECONDS - t)) s)"
  FAILED+=("$name")
  return 1
}

if run_test static "$PORT_BASE" $((PORT_BASE + 99)) "$WORK/test_static"; then
  log "=== example, on the home of the static run"
  if "$WORK/hello" "$WORK/home-static"; then
    ok "example ran"
  else
    warn "example FAILED"
    FAILED+=(example)
  fi
fi
cleanup_run static

run_test dynamic $((PORT_BASE + 100)) $((PORT_BASE + 199)) "$WORK/test_dynamic" || true
cleanup_run dynamic

# valgrind prints "unhandled amd64-linux syscall: 434" (pidfd_open, tried by
# Rust's process spawning, which falls back to waitpid): harmless noise.
# shellcheck disable=SC2054  # the commas belong to valgrind options
VG=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1
    --num-callers=40 --suppressions="$ROOT/$VALGRIND_SUPP")
run_test valgrind $((PORT_BASE + 200)) $((PORT_BASE + 299)) "${VG[@]}" "$WORK/test_dynamic" || true
cleanup_run valgrind

if [[ ${#FAILED[@]} -gt 0 ]]; then
  die "failed: ${FAILED[*]} ($((SECONDS - T0)) s)"
fi
ok "C API: header, static, dynamic, valgrind and example all passed ($((SECONDS - T0)) s)"
