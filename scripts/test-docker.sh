#!/usr/bin/env bash
# The docker runtime's end-to-end tests against the running Docker engine:
# builds the local image betterpg/postgres:15 (scripts/build-image.sh, a no-op
# when it is up to date), runs `cargo nextest run -p betterpg-core --test docker`,
# and removes what a run may leave (bpgdk* test pools and their files,
# containers labelled betterpg.test=true) before and after, also on failure.
# Exits non-zero when anything fails, including a missing or unreachable
# Docker engine (the tests never skip).
#
# Usage: scripts/test-docker.sh [extra arguments for cargo nextest run]
#   e.g. scripts/test-docker.sh containerised_database_lifecycle --no-capture
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_root "the tests create ZFS pools and run PostgreSQL as user postgres"
need_cmd docker "install docker.io"
need_cmd cargo
timeout 20 docker info >/dev/null 2>&1 \
  || die "the Docker engine is not reachable ('docker info' fails): start dockerd"

scripts/setup.sh --quiet
cleanup() { scripts/cleanup-test-pools.sh bpgdk; }
cleanup
bpg_cleanup_cmd cleanup

log "building the image (skipped when up to date)"
scripts/build-image.sh >/dev/null

log "running the docker runtime tests"
t0=$SECONDS
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# One test at a time: the docker tests are in nextest's `zfs` test group.
if cargo nextest run --profile ci --no-tests=fail -p betterpg-core --test docker "$@"; then
  ok "docker runtime tests passed ($((SECONDS - t0)) s)"
else
  die "docker runtime tests failed ($((SECONDS - t0)) s)"
fi
