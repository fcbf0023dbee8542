#!/usr/bin/env bash
# Runs INSIDE the guest booted by scripts/test-openzfs-vm.sh (Debian kernel +
# the OpenZFS module built by zfs-dkms: 2.1, or 2.3 from bookworm-backports). The guest's root is the host's,
# read-only; /tmp is writable (pools and homes live there) and OUT is a
# host directory shared read-write.
#
#   1. modprobe zfs; OpenZFS's userland (unpacked from the .debs, never
#      installed on the host) goes first on PATH / LD_LIBRARY_PATH;
#   2. the storage suite (tests/storage.rs, built on the host) with the CLI
#      backend, then with the libzfs backend (which must have loaded the
#      declarations of the module's release);
#   3. the storage benchmark (both backends side by side) -> OUT/openzfs-storage.json;
#   4. branch tests with `bpg` for each backend: a PG 15 database under the
#      native runtime, rows written (a writer keeps inserting during the
#      branch), an application-consistent branch; the branch must hold every
#      row committed before the branch call and its log must show
#      "completed backup recovery".
#
# Usage (in the guest): guest.sh OUT ZROOT BIN_DIR [STAGES [RELEASE]]
#   BIN_DIR holds `bpg` and `storage` (the suite's test binary); STAGES is
#   "all" (default) or a comma-separated subset of: storage_cli,
#   storage_libzfs, bench, branch_cli, branch_libzfs (for debugging);
#   RELEASE (2.1 or 2.3) is the OpenZFS release the module must be and the
#   libzfs backend must use (default 2.1).
# Writes OUT/result (PASS or FAIL: <stage>) and one log per stage.
set -euo pipefail
OUT=$1 ZROOT=$2 BIN=$3 ONLY=${4:-all} RELEASE=${5:-2.1}
PROG=guest
PG_BIN=/usr/lib/postgresql/15/bin
STAGE=start
TIMES=()

log() { printf '[%s %4ss] %s\n' "$PROG" "$SECONDS" "$*" >&2; }
fail() {
  log "FAILED in stage $STAGE: $*"
  echo "FAIL: $STAGE: $*" >"$OUT/result"
  exit 1
}
on_exit() {
  local rc=$1
  [[ -n "$WRITER" ]] && kill "$WRITER" 2>/dev/null
  if [[ $rc -ne 0 ]] && ! grep -q '^FAIL' "$OUT/result" 2>/dev/null; then
    log "FAILED in stage $STAGE (exit $rc)"
    echo "FAIL: $STAGE (exit $rc)" >"$OUT/result"
  fi
}
WRITER=""
trap 'on_exit $?' EXIT
echo "RUNNING" >"$OUT/result"

# Stages run under `set -e` (not in a `||` context, which would switch it
# off inside them): the first failing command ends the run, and the EXIT trap
# records the stage.
stage() {
  local name=$1 t0=$SECONDS
  shift
  if [[ "$ONLY" != all && ",$ONLY," != *",$name,"* && "$name" != load_zfs ]]; then
    log "=== $name: not selected (stages: $ONLY)"
    return 0
  fi
  STAGE=$name
  log "=== $name"
  "$@"
  TIMES+=("$name $((SECONDS - t0))")
  log "=== $name ok ($((SECONDS - t0)) s)"
}

export PATH="$ZROOT/sbin:$ZROOT/usr/sbin:$ZROOT/usr/bin:$PATH"
export LD_LIBRARY_PATH="$ZROOT/lib/x86_64-linux-gnu:$ZROOT/usr/lib/x86_64-linux-gnu"
export RUST_BACKTRACE=1
mkdir -p /tmp/betterpg-test
# bpg init refuses a pool file larger than its file system's free space
# (docs/safety.md, isolation item 12), and the guest's /tmp is a tmpfs of
# half its memory (~1G): the tests' 1G pools (sparse files holding a few
# hundred MB) get a tmpfs of their own that may hold them.
mountpoint -q /tmp/betterpg-test || mount -t tmpfs -o size=6G tmpfs /tmp/betterpg-test

load_zfs() {
  modprobe zfs
  [[ -c /dev/zfs ]] || { log "no /dev/zfs after modprobe"; return 1; }
  [[ "$(command -v zfs)" == "$ZROOT/"* ]] || { log "zfs is $(command -v zfs), not OpenZFS's from $ZROOT"; return 1; }
  zfs version | tee "$OUT/zfs-version.txt"
  local kv
  kv=$(cat /sys/module/zfs/version)
  [[ "$kv" == "$RELEASE".* ]] || { log "the zfs module is $kv, not OpenZFS $RELEASE"; return 1; }
}

storage_suite() {
  local backend=$1
  BPG_STORAGE_BACKEND=$backend "$BIN/storage" --test-threads=2 --show-output 2>&1 | tee "$OUT/storage-$backend.log"
  grep -q '^test result: ok' "$OUT/storage-$backend.log" || fail "no passing test result"
  case $backend in
    libzfs)
      grep -q 'storage backend: libzfs' "$OUT/storage-$backend.log" || fail "the libzfs backend was not used"
      grep -q "OpenZFS $RELEASE declarations" "$OUT/storage-$backend.log" || fail "the libzfs backend did not use OpenZFS $RELEASE's declarations" ;;
    cli) grep -q 'storage backend: zfs-cli (OpenZFS)' "$OUT/storage-$backend.log" || fail "the CLI backend did not detect OpenZFS" ;;
  esac
}

bench() {
  BPG_STORAGE_BENCH_OUT="$OUT/openzfs-storage.json" BPG_STORAGE_BENCH_ITERS=${BPG_VM_BENCH_ITERS:-15} \
    "$BIN/storage" bench_storage_ops --exact --ignored --nocapture --test-threads=1 2>&1 | tee "$OUT/bench.log"
  [[ -s "$OUT/openzfs-storage.json" ]] || fail "no benchmark output"
}

# branch_test BACKEND PORT_BASE
branch_test() {
  local backend=$1 base=$2 pool="bpgvm$1" home="/tmp/bpgvm-home-$1"
  local bpg=("$BIN/bpg" --home "$home")
  local file="/tmp/betterpg-test/$pool.img"
  "${bpg[@]}" init --pool-file "$file" --size 1G --pool "$pool" \
    --ports "$base-$((base + 19))" --pg-bin "$PG_BIN" --storage-backend "$backend"
  "${bpg[@]}" doctor --json | tee "$OUT/doctor-$backend.json"
  grep -q "\"backend\": \"$backend\"" "$OUT/doctor-$backend.json" || fail "doctor does not report backend $backend"
  if [[ $backend == libzfs ]]; then
    grep -q "OpenZFS $RELEASE declarations" "$OUT/doctor-$backend.json" || fail "doctor does not name OpenZFS $RELEASE's declarations"
  fi
  "${bpg[@]}" create prod
  local url burl
  url=$("${bpg[@]}" url prod)
  psql -X -q -v ON_ERROR_STOP=1 "$url" -c "create table t(id bigserial primary key, at timestamptz default now(), pad text)" \
    -c "insert into t(pad) select repeat('x', 100) from generate_series(1, 20000)"
  # A writer committing one row at a time during the branch.
  ( while psql -X -q "$url" -c "insert into t(pad) values ('w')" >/dev/null 2>&1; do :; done ) &
  WRITER=$!
  sleep 2
  local before
  before=$(psql -X -tAq "$url" -c "select max(id) from t")
  "${bpg[@]}" --json branch prod dev | tee "$OUT/branch-$backend.json"
  kill "$WRITER" 2>/dev/null || true
  wait "$WRITER" 2>/dev/null || true
  WRITER=""
  burl=$("${bpg[@]}" url dev)
  local got
  got=$(psql -X -tAq "$burl" -c "select count(*) from t where id <= $before")
  log "rows committed before the branch call: $before; in the branch: $got"
  "${bpg[@]}" logs dev >"$OUT/branch-$backend-dev.log"
  "${bpg[@]}" status
  [[ "$got" =~ ^[0-9]+$ && "$got" -ge "$before" ]] || fail "the branch lost rows: $got < $before"
  grep -q "completed backup recovery" "$OUT/branch-$backend-dev.log" ||
    fail "the branch log lacks 'completed backup recovery'"
  grep -q '"mode": "application-consistent"' "$OUT/branch-$backend.json" ||
    fail "the branch is not application-consistent"
  grep -q '"source_was_running": true' "$OUT/branch-$backend.json" ||
    fail "the source was not running during the branch"
  "${bpg[@]}" destroy prod --force
  zpool destroy -f "$pool"
  rm -rf "$home" "$file"
}

log "guest $(uname -r), $(nproc) cpus, OpenZFS $RELEASE expected"
stage load_zfs load_zfs
stage storage_cli storage_suite cli
stage storage_libzfs storage_suite libzfs
stage bench bench
stage branch_cli branch_test cli 58600
stage branch_libzfs branch_test libzfs 58700
printf '%s\n' "${TIMES[@]}" >"$OUT/stage-times.txt"
echo PASS >"$OUT/result"
log "all guest stages passed"
