#!/usr/bin/env bash
# Run betterpg's benchmarks (benches/run.py) with everything they need set up:
# time until a copy answers a query (betterpg branches vs CREATE DATABASE
# TEMPLATE, PG 18 reflink clone, pg_basebackup, pg_dump|pg_restore) at
# 100 MB / 1 GB / 4 GB, the cost to the source under pgbench (branches of
# the source, of a `bpg follow` replica of it, and its own CHECKPOINT, every
# few seconds, against baselines; idle references), branch space,
# betterpg's per-step breakdown, and per-test cost in pytest; then
# benches/recordsize.py: a branch's growth after the same UPDATE with the old
# (128K records) and new (8K) dataset properties.
#
# Usage: scripts/bench.sh [--short] [--no-docker] [run.py options...]
#        scripts/bench.sh --many [many.py options...]
# Env:   BPG_BENCH_BIN=PATH  use this bpg instead of building a release one.
#   --short      CI mode: smallest size (100 MB), 1-3 repeats, 6 s load
#                phases, 5 pytest tests. A few minutes. Writes to
#                target/bench-short/. Exits non-zero if anything failed.
#   (default)    full mode: all sizes, 3 repeats (5 for betterpg), 60 s load
#                phases, 20 pytest tests. Writes benches/results/. Run by hand.
#   --no-docker  leave out betterpg's Docker runtime (otherwise a Docker
#                engine that does not answer is an error).
#   --many       only the many-branches phase (benches/many.py, issue 16
#                item 4; not part of the short or full run, ~8 min here): a
#                hundred live branches of a 1 GB source, PSS per idle
#                branch, status time, first vs 100th branch, pool space,
#                then branching on to find what breaks first (--probe-max
#                N, default 300). Writes benches/results/many.json. Pool
#                bpgmany, ports 59500-59899. Options after it go to many.py
#                (--count, --scale, --probe-max, --branch-arg).
#   Anything else goes to benches/run.py (--sizes 100M,1G, --repeats N,
#   --skip load,space,pytest,pg_dump_restore,replica,checkpoint, --out DIR;
#   see run.py --help). With pytest skipped the Python module is not built;
#   --skip recordsize leaves out benches/recordsize.py, which otherwise
#   writes recordsize.json into --out DIR (default as run.py's).
#
# Idempotent setup: scripts/setup.sh (zfs-fuse, PostgreSQL 15), xfsprogs,
# PostgreSQL 18 (scripts/pg-versions.sh 18), the release bpg binary, a venv in
# target/bench-venv (matplotlib, psycopg, pytest, pytest-postgresql), the
# betterpg Python module (built in place with maturin if it is not importable)
# and the Docker image (scripts/build-image.sh).
#
# Uses pool names bpgbench*, files /tmp/betterpg-test/bpgbench-*, ports
# 59000-59499, a loop device for the XFS file system; removes all of it at
# the end, also on failure or when interrupted.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

SHORT=0
DOCKER=1
PASS=()
if [[ "${1:-}" == --many ]]; then
  shift
  need_root "the many-branches benchmark creates a ZFS pool and runs PostgreSQL"
  scripts/setup.sh --quiet
  if [[ -n "${BPG_BENCH_BIN:-}" ]]; then BPG=$BPG_BENCH_BIN; else cargo build --release -q -p betterpg-cli; BPG=target/release/bpg; fi
  MWORK=/tmp/betterpg-test/bpgmany-work
  # What many.py could not remove itself (it cleans up on every normal exit
  # and on SIGTERM; this covers SIGKILL and crashes): as many.py does, an
  # immediate shutdown of every server on the pool (hundreds of branches:
  # not a destroy each), then the pool and the work directory.
  mbackstop() {
    local mp pid
    if zpool list -H -o name 2>/dev/null | grep -qx bpgmany; then
      while read -r mp; do
        pid=$(head -1 "$mp/pgdata/postmaster.pid" 2>/dev/null || true)
        [[ "$pid" =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null || true
      done < <(zfs list -H -r -o mountpoint bpgmany 2>/dev/null)
      sleep 2
      for _ in $(seq 1 40); do zpool destroy -f bpgmany >/dev/null 2>&1 && break; sleep 0.5; done
    fi
    rm -rf -- "$MWORK"
  }
  mbackstop
  mkdir -p /tmp/betterpg-test
  bpg_cleanup_cmd mbackstop
  MPID=
  # SIGTERM/SIGINT/SIGHUP reach many.py first (it records, then cleans up),
  # then the backstop: never the pool destroyed under a running many.py.
  on_many_signal() {
    if [[ -n "$MPID" ]]; then kill -TERM "$MPID" 2>/dev/null || true; wait "$MPID" 2>/dev/null || true; fi
    exit 143
  }
  trap on_many_signal TERM INT HUP
  log "running benches/many.py $*"
  rc=0
  python3 benches/many.py --bpg "$BPG" --work "$MWORK" --pool bpgmany --ports 59500-59899 \
    --probe-max 300 --out benches/results/many.json "$@" &
  MPID=$!
  wait "$MPID" || rc=$?
  MPID=
  (( rc == 0 )) || die "benches/many.py failed (exit $rc); see above and benches/results/many.json"
  ok "many-branches benchmark done: benches/results/many.json"
  exit 0
fi
OUT=
prev=
for arg in "$@"; do
  case "$arg" in
    --short) SHORT=1; PASS+=("$arg") ;;
    --no-docker) DOCKER=0; PASS+=("$arg") ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    --out=*) OUT=${arg#--out=}; PASS+=("$arg") ;;
    *) [[ $prev == --out ]] && OUT=$arg; PASS+=("$arg") ;;
  esac
  prev=$arg
done
# --skip LIST names a section: pytest (then no Python module is built) or
# recordsize (then benches/recordsize.py is not run).
skipped() { [[ " ${PASS[*]} " =~ [\ =]([a-z0-9_]+,)*$1(,|\ ) ]]; }
TAG=$([[ $SHORT == 1 ]] && echo short || echo full)
WORK=/tmp/betterpg-test/bpgbench-$TAG-work
POOL=bpgbench$TAG
VENV=$REPO/target/bench-venv
BPG=$REPO/target/release/bpg

need_root "benchmarks create ZFS pools, loop devices and run PostgreSQL as user postgres"

# Backstop cleanup for what run.py could not remove itself (it cleans up on
# every normal exit and on SIGTERM; this covers SIGKILL and crashes).
backstop() {
  local pidfile mp loop
  if [[ -x "$BPG" && -d "$WORK/home" ]]; then
    "$BPG" --home "$WORK/home" --json status 2>/dev/null \
      | python3 -c 'import json,sys; [print(i["name"]) for i in json.load(sys.stdin)["entries"] if i.get("parent") is None]' 2>/dev/null \
      | while read -r n; do "$BPG" --home "$WORK/home" destroy "$n" --force >/dev/null 2>&1 || true; done
  fi
  if [[ -d "$WORK" ]]; then
    # An immediate shutdown (SIGQUIT to the postmaster), whatever OS user
    # the server runs as (a branch's is a uid of its own).
    local pid
    while read -r pidfile; do
      pid=$(head -1 "$pidfile" 2>/dev/null || true)
      [[ "$pid" =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null || true
    done < <(find "$WORK" -maxdepth 5 -name postmaster.pid 2>/dev/null)
  fi
  local p
  for p in "$POOL" "${POOL}rs128k" "${POOL}rs8k"; do
    if zpool list -H -o name 2>/dev/null | grep -qx "$p"; then
      for _ in $(seq 1 40); do zpool destroy -f "$p" >/dev/null 2>&1 && break; sleep 0.5; done
    fi
  done
  rm -f "/tmp/betterpg-test/${POOL}rs128k.img" "/tmp/betterpg-test/${POOL}rs8k.img"
  mp=$WORK/xfs
  if mountpoint -q "$mp" 2>/dev/null; then umount -l "$mp" || true; fi
  for loop in $(losetup -j "/tmp/betterpg-test/bpgbench-$TAG-xfs.img" -O NAME -n 2>/dev/null); do
    losetup -d "$loop" || true
  done
  rm -rf -- "$WORK" "/tmp/betterpg-test/bpgbench-$TAG.img" "/tmp/betterpg-test/bpgbench-$TAG-xfs.img"
}

log "setup (idempotent)"
scripts/setup.sh --quiet
if ! command -v mkfs.xfs >/dev/null 2>&1; then
  log "installing xfsprogs (mkfs.xfs, for PostgreSQL 18's reflink clone on XFS)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends xfsprogs >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends xfsprogs >/dev/null; } \
    || die "could not install xfsprogs"
fi
[[ -e /dev/loop-control ]] || die "no /dev/loop-control: loop devices are needed for the XFS reflink file system (or pass --skip pg18_clone)"
PG18_BIN=$(scripts/pg-versions.sh 18 | awk '$1 == 18 {print $2}')
[[ -x "$PG18_BIN/postgres" ]] || die "PostgreSQL 18 not available (scripts/pg-versions.sh 18 printed '$PG18_BIN')"

if [[ -n "${BPG_BENCH_BIN:-}" ]]; then
  # CI's short mode reuses the suite's build (its timings only prove the
  # harness runs); published numbers come from the release build.
  BPG=$BPG_BENCH_BIN
  [[ -x "$BPG" ]] || die "BPG_BENCH_BIN=$BPG is not an executable"
  log "using $BPG"
else
  log "building bpg (release)"
  cargo build --release -q -p betterpg-cli
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import matplotlib, psycopg, pytest, xdist, pytest_postgresql' >/dev/null 2>&1; then
  log "installing matplotlib, psycopg, pytest, pytest-xdist, pytest-postgresql into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'matplotlib>=3.8' 'psycopg[binary]>=3.1' 'pytest>=8' 'pytest-xdist>=3' 'pytest-postgresql>=6'
fi
if skipped pytest; then
  log "--skip pytest: the betterpg Python module is not needed"
elif ! PYTHONPATH=$REPO/betterpg-py/python "$VENV/bin/python" -c 'import betterpg, betterpg.pytest_plugin' >/dev/null 2>&1; then
  log "building the betterpg Python module in place (maturin develop --release)"
  "$VENV/bin/python" -c 'import maturin' >/dev/null 2>&1 || "$VENV/bin/pip" install -q --disable-pip-version-check 'maturin>=1.9,<2'
  (cd betterpg-py && VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH "$VENV/bin/maturin" develop --release -q) \
    || warn "building the betterpg Python module failed: the pytest section will be reported as failed"
fi

if (( DOCKER )); then
  if ! { have_cmd docker && timeout 20 docker info >/dev/null 2>&1; }; then
    die "no Docker engine answers: start it, or pass --no-docker to leave out the Docker runtime"
  fi
  log "Docker image (scripts/build-image.sh, reused when unchanged)"
  scripts/build-image.sh >/dev/null
fi

backstop   # leftovers of an earlier, killed run
mkdir -p /tmp/betterpg-test

PYPID=
on_signal() {
  if [[ -n "$PYPID" ]]; then kill -TERM "$PYPID" 2>/dev/null || true; wait "$PYPID" 2>/dev/null || true; fi
  backstop
  exit 143
}
trap on_signal TERM INT HUP
bpg_cleanup_cmd backstop

log "running benches/run.py ${PASS[*]}"
rc=0
"$VENV/bin/python" benches/run.py --pg18-bin "$PG18_BIN" --bpg "$BPG" "${PASS[@]}" &
PYPID=$!
wait "$PYPID" || rc=$?
PYPID=
(( rc == 0 )) || die "benchmark harness failed (exit $rc); see the failures listed above"

# Branch growth for the same UPDATE with the old dataset properties
# (recordsize=128K, atime=on) and betterpg's (8K, off), side by side
# (docs/benchmarks.md, "Dataset properties").
if skipped recordsize; then
  ok "benchmarks done (recordsize skipped)"
  exit 0
fi
RS_DIR=${OUT:-$([[ $SHORT == 1 ]] && echo "$REPO/target/bench-short" || echo "$REPO/benches/results")}
RS_OUT=$RS_DIR/recordsize.json
log "running benches/recordsize.py -> $RS_OUT"
"$VENV/bin/python" benches/recordsize.py --bpg "$BPG" --work "$WORK/recordsize" --out "$RS_OUT" \
  --pool-prefix "${POOL}rs" --ports 59450-59489 $([[ $SHORT == 1 ]] && echo --pages 4096) \
  || die "benches/recordsize.py failed; see above"
ok "benchmarks done"
