#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is needed
# (scripts/setup.sh and friends), builds once, runs every stage, and cleans up
# what it started even on failure. Exits non-zero when anything fails.
#
# Usage: scripts/test.sh [STAGE...]   (default: all stages, in order)
# Stages: lint unit core cli versions safety isolation lifecycle sources protection ffi python examples docker demo bench
#         openzfs daemon-restart
# (openzfs boots a guest with the real OpenZFS 2.1 or 2.3 kernel module, one
# release per run by the day, BPG_VM_ZFS=both for both; times in docs/openzfs.md.)
# (daemon-restart kills and restarts the zfs-fuse daemon: it runs last.)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ALL_STAGES=(lint unit core cli versions safety isolation lifecycle sources protection ffi python examples docker demo bench openzfs daemon-restart)
STAGES=("$@")
[[ ${#STAGES[@]} -gt 0 ]] || STAGES=("${ALL_STAGES[@]}")

need_root "tests create ZFS pools and run PostgreSQL as user postgres"
scripts/setup.sh --quiet
log "PostgreSQL 14-18 binaries (cached) and the local Docker image"
scripts/pg-versions.sh >/dev/null
scripts/build-image.sh >/dev/null
scripts/cleanup-test-pools.sh
bpg_cleanup_cmd "scripts/cleanup-test-pools.sh"
export RUST_BACKTRACE=1

# The tests' servers listen on ports 43000-59999, inside Linux's ephemeral
# range: an outgoing connection of anything on the machine may take one of
# them as its source port, and a server the tests start by hand (an attached
# cluster, a remote primary) then fails with "Address already in use" (seen
# in CI). bpg itself moves its servers to another free port; the tests
# reserve their range from ephemeral use instead, restoring it at the end.
RESERVED_FILE=/proc/sys/net/ipv4/ip_local_reserved_ports
if [[ -w $RESERVED_FILE ]]; then
  OLD_RESERVED=$(cat "$RESERVED_FILE")
  echo "${OLD_RESERVED:+$OLD_RESERVED,}43000-59999" > "$RESERVED_FILE"
  bpg_cleanup_cmd "echo '$OLD_RESERVED' > $RESERVED_FILE"
else
  die "cannot reserve the tests' ports 43000-59999 from ephemeral use: $RESERVED_FILE is not writable (run as root with CAP_NET_ADMIN)"
fi

# Fault injection (BETTERPG_FAULT) exists only in builds with the cargo
# feature betterpg-core/fault-injection: every test build here has it. What
# ships has not: a bpg built without it is kept aside for the isolation
# stage, which checks that it ignores BETTERPG_FAULT.
FEAT=(--features betterpg-core/fault-injection)
NO_FAULT_BIN=$PWD/target/no-fault-injection/bpg
log "building bpg without fault injection (as shipped) -> $NO_FAULT_BIN"
cargo build -q -p betterpg-cli
install -D -m 0755 target/debug/bpg "$NO_FAULT_BIN"
log "building the workspace with fault injection (once; every stage reuses it)"
cargo build --workspace --all-targets -q "${FEAT[@]}"
cargo test --workspace --no-run -q "${FEAT[@]}" 2>/dev/null

FAILED=()
# Tests run under cargo-nextest (.config/nextest.toml, profile `ci`): each
# test in its own process; the integration tests that make pools, run
# servers or drive bpg in the test group `zfs`, one at a time across every
# binary (zfs-fuse has been seen to wedge when two tests create pools and
# mount datasets at the same moment; concurrency is still tested on purpose,
# by the concurrency test's eight bpg processes on one pool); pure tests in
# parallel; a test that hangs is killed by nextest's slow-timeout.
# A stage that hangs anyway (e.g. a wedged zfs-fuse daemon) fails after this
# long instead of eating CI's whole budget.
STAGE_TIMEOUT=${STAGE_TIMEOUT:-1200}
NEXTEST=(cargo nextest run --profile ci --no-tests=fail "${FEAT[@]}")

zfs_alive() { pgrep -x zfs-fuse >/dev/null 2>&1 && timeout 5 zpool list >/dev/null 2>&1; }

# Restart a dead zfs-fuse daemon and clear what it left: its mounts answer
# ENOTCONN forever, servers on them are orphans, pools are half-imported.
revive_zfs() {
  pkill -9 -x zfs-fuse 2>/dev/null || true
  awk '$3 == "fuse.zfs" {print $2}' /proc/mounts | sort -r | while read -r mp; do
    umount -l "$mp" 2>/dev/null || true
  done
  scripts/setup.sh --quiet
  scripts/cleanup-test-pools.sh
}

# zfs-fuse 0.7 itself has crashed a few times under tests that fill a
# dataset to its quota (docs/safety.md). A stage during which the daemon
# died says nothing about betterpg, and would make every later stage fail
# too: the daemon is restarted, and that stage (only) runs once more, loudly.
# A second failure fails the run; a stage that fails with the daemon alive
# is never retried.
RETRIED=()
# Every stage's output also goes to target/ci-logs/STAGE.log, so the end of
# the run can repeat why a stage failed: CI keeps only the tail of the output,
# and later stages (openzfs is verbose) would push the cause out of it. A
# process substitution, not a pipe: a daemon a stage starts (zfs-fuse, a
# server) may keep the stream open, which must not hold the stage.
LOG_DIR=$PWD/target/ci-logs
mkdir -p "$LOG_DIR"
run_stage() {
  local name=$1; shift
  local t0=$SECONDS attempt
  : > "$LOG_DIR/$name.log"
  for attempt in 1 2; do
    if (( attempt == 1 )); then log "=== stage $name"; else log "=== stage $name (second attempt)"; fi
    local rc=0
    timeout --kill-after=30 "$STAGE_TIMEOUT" "$@" > >(tee -a "$LOG_DIR/$name.log") 2>&1 || rc=$?
    if (( rc == 0 )); then
      log "=== stage $name passed ($((SECONDS - t0)) s)"
      zfs_alive || { warn "zfs-fuse died after stage $name passed: restarting it"; revive_zfs; }
      return 0
    fi
    if (( rc == 124 || rc == 137 )); then
      echo "stage $name timed out after $STAGE_TIMEOUT s (exit $rc)" >> "$LOG_DIR/$name.log"
    else
      echo "stage $name exited with status $rc" >> "$LOG_DIR/$name.log"
    fi
    if zfs_alive || (( attempt == 2 )); then
      break
    fi
    warn "=== stage $name FAILED and the zfs-fuse daemon died during it: restarting zfs-fuse and running stage $name once more"
    RETRIED+=("$name")
    revive_zfs
  done
  warn "=== stage $name FAILED ($((SECONDS - t0)) s)"
  FAILED+=("$name")
  zfs_alive || { warn "zfs-fuse is dead after stage $name: restarting it for the next stages"; revive_zfs; }
}

for s in "${STAGES[@]}"; do
  case "$s" in
    lint) run_stage lint bash -c 'cargo fmt --all -- --check && cargo clippy -q --workspace --all-targets -- -D warnings && cargo clippy -q --workspace --all-targets "$@" -- -D warnings && cargo nextest run --profile ci --no-tests=fail -p betterpg-core --test layers "$@"' _ "${FEAT[@]}" ;;
    unit) run_stage unit bash -c 'cargo nextest run --profile ci --no-tests=fail --workspace --lib --bins "$@" && cargo test -q --workspace --doc "$@"' _ "${FEAT[@]}" ;;
    # (with the library's user in examples/rust: its test branches a database)
    core) run_stage core "${NEXTEST[@]}" -p betterpg-core -p betterpg-example --lib --test branch --test storage --test doctor_logs --test rehearse ;;
    cli)  run_stage cli "${NEXTEST[@]}" -p betterpg-cli --test cli --test cli_json --test faults ;;
    # (and bpg follow of a remote primary of PostgreSQL 14 and 18)
    versions) run_stage versions "${NEXTEST[@]}" -p betterpg-core -p betterpg-cli --test versions --test fuzz_names --test follow_versions ;;
    safety) run_stage safety "${NEXTEST[@]}" -p betterpg-cli --test bad_input --test concurrency --test capacity --test perf_status ;;
    # A branch isolated from its source (docs/safety.md, "Isolation"): every
    # betterpg-cli/tests/isolation_*.rs (none found fails the stage).
    # BPG_NO_FAULT_BIN: the bpg built without fault injection (above), which
    # isolation_fault_injection.rs runs with BETTERPG_FAULT set.
    isolation) run_stage isolation env BPG_NO_FAULT_BIN="$NO_FAULT_BIN" "${NEXTEST[@]}" -p betterpg-cli -E 'binary(/^isolation_/)' ;;
    # Snapshots, points in time, expiry: every betterpg-cli/tests/lifecycle_*.rs.
    lifecycle) run_stage lifecycle "${NEXTEST[@]}" -p betterpg-cli -E 'binary(/^lifecycle_/)' ;;
    # Branching production (issue 13): every betterpg-cli/tests/sources_*.rs
    # (attach: a cluster made by hand; follow: a remote primary).
    sources) run_stage sources "${NEXTEST[@]}" -p betterpg-cli -E 'binary(/^sources_/)' ;;
    # Protecting copies: every betterpg-cli/tests/protect_*.rs.
    protection) run_stage protection "${NEXTEST[@]}" -p betterpg-cli -E 'binary(/^protect_/)' ;;
    # The criterion micro-benchmarks are compiled (so they stay built; run
    # them with `cargo bench -p betterpg-benches`), then the short harness run.
    bench) run_stage bench env BPG_BENCH_BIN="$PWD/target/debug/bpg" bash -c 'cargo bench -q -p betterpg-benches --no-run && scripts/bench.sh --short' ;;
    # One OpenZFS release per CI run (2.1 and 2.3 alternate by the day; the
    # log says which): both guests in every run do not fit CI's time budget
    # (docs/openzfs.md). BPG_VM_ZFS=both runs both. Its own timeout: a cold
    # machine builds the release's module first.
    openzfs) BPG_VM_ZFS=${BPG_VM_ZFS:-rotate} STAGE_TIMEOUT=${OPENZFS_STAGE_TIMEOUT:-3000} \
               run_stage openzfs scripts/test-openzfs-vm.sh ;;
    daemon-restart) run_stage daemon-restart env BPG_ALLOW_DAEMON_RESTART=1 "${NEXTEST[@]}" -p betterpg-cli --test daemon_restart --run-ignored only --no-capture ;;
    ffi)  run_stage ffi scripts/test-ffi.sh ;;
    python) run_stage python scripts/test-python.sh ;;
    # Every examples/*/README.md, run copy-paste as written.
    examples) run_stage examples scripts/test-examples.sh ;;
    docker) run_stage docker scripts/test-docker.sh ;;
    demo) run_stage demo bash -c 'export BPG=$PWD/target/debug/bpg DEMO_HOME=/tmp/betterpg-ci-demo DEMO_POOL=bpgcidemo; scripts/demo.sh && scripts/demo.sh --clean' ;;
    *) die "unknown stage $s (have: ${ALL_STAGES[*]})" ;;
  esac
done

if [[ ${#RETRIED[@]} -gt 0 ]]; then
  warn "stages run twice because zfs-fuse died during their first attempt: ${RETRIED[*]}"
fi
if [[ ${#FAILED[@]} -gt 0 ]]; then
  sleep 1   # let tee write the last lines
  for s in "${FAILED[@]}"; do
    warn "=== why stage $s failed: its error lines and last lines (whole output: $LOG_DIR/$s.log)"
    # (a panic's message is on the line after "panicked at")
    grep -n -A1 -E 'FAILED|panicked|error|Error|failure|assert|timed out' "$LOG_DIR/$s.log" | cut -c1-2000 | tail -n 60 || true
    echo "--- last 30 lines of stage $s"
    tail -n 30 "$LOG_DIR/$s.log"
  done
  die "failed stages: ${FAILED[*]}"
fi
log "all stages passed: ${STAGES[*]}"
