#!/usr/bin/env bash
# The main job, from a fresh machine: install what is needed, build `bpg`,
# create a file-backed ZFS pool, a database with sample data (pgbench), then
# branch it while a writer is committing, and show the result.
#
# Usage: scripts/demo.sh            run (re-running starts the demo afresh)
#        scripts/demo.sh --clean    remove the demo (servers, pool, home)
# Env:   DEMO_HOME (default /var/lib/betterpg-demo), DEMO_POOL (default bpgdemo),
#        BPG (a prebuilt bpg binary)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO_HOME=${DEMO_HOME:-/var/lib/betterpg-demo}
POOL=${DEMO_POOL:-bpgdemo}
PG_BIN=/usr/lib/postgresql/15/bin

clean() {
  if [[ -x "${BPG:-}" && -f "$DEMO_HOME/config.json" ]]; then
    "$BPG" --home "$DEMO_HOME" destroy prod --force >/dev/null 2>&1 || true
  fi
  scripts/cleanup-test-pools.sh "$POOL"
  rm -rf -- "$DEMO_HOME"
}

need_root "the demo creates a ZFS pool and runs PostgreSQL as user postgres"
scripts/setup.sh --quiet
if [[ -z "${BPG:-}" ]]; then
  log "building bpg (release)"
  cargo build --release -q -p betterpg-cli
  BPG=$PWD/target/release/bpg
fi
if [[ "${1:-}" == "--clean" ]]; then clean; log "demo removed"; exit 0; fi
clean

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
export BPG_HOME=$DEMO_HOME
step "$BPG" init --pool-file "$DEMO_HOME/pool.img" --size 4G --pool "$POOL"
step "$BPG" create prod
URL=$("$BPG" url prod)
log "loading sample data (pgbench scale 10, ~160 MB)"
"$PG_BIN/pgbench" -q -i -s 10 "$URL" >/dev/null 2>&1
log "starting a writer on prod (pgbench, 20 s)"
"$PG_BIN/pgbench" -n -T 20 -c 2 "$URL" >/dev/null 2>&1 &
WRITER=$!
bpg_cleanup_cmd "kill $WRITER"
sleep 2
step "$BPG" branch prod dev
step "$BPG" branch prod scratch --fast
step "$BPG" status
DEV=$("$BPG" url dev)
printf '\nrows in pgbench_accounts: prod=%s dev=%s\n' \
  "$(psql -Atq "$URL" -c 'select count(*) from pgbench_accounts')" \
  "$(psql -Atq "$DEV" -c 'select count(*) from pgbench_accounts')"
printf 'branch log:\n'
"$BPG" logs dev | grep -E 'backup recovery|consistent recovery' || true
wait "$WRITER" 2>/dev/null || true
cat <<MSG

The demo is left running. Try:
  export BPG_HOME=$DEMO_HOME
  psql "\$($BPG url dev)"
  $BPG status
Remove it with: scripts/demo.sh --clean
MSG
