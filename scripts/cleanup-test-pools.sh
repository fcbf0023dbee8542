#!/usr/bin/env bash
# Remove what test runs may have left on this machine: PostgreSQL servers
# running on test pools, the test pools themselves (names starting with one
# of the test prefixes), their pool files, and betterpg-labelled containers of
# test homes. Safe to run at any time no test is running (CI runs it before
# and after the suite).
#
# Usage: scripts/cleanup-test-pools.sh [PREFIX...]   (default: the test suites' prefixes;
# the benchmark (bpgbench) and OpenZFS guest (bpgvm) scripts clean their own)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PREFIXES=("$@")
[[ ${#PREFIXES[@]} -gt 0 ]] || PREFIXES=(bpgt bpgc bpgffi bpgpy bpgdk bpgsafe bpgcidemo bpgex)
have_cmd zpool || exit 0
zpool_answers() { zpool list >/dev/null 2>&1; }
zpool_answers || exit 0

pools=$(zpool list -H -o name 2>/dev/null || zpool list | awk 'NR>1{print $1}')
for pool in $pools; do
  for p in "${PREFIXES[@]}"; do
    [[ "$pool" == "$p"* ]] || continue
    # Stop servers whose data directories live on this pool.
    while read -r mp; do
      [[ -n "$mp" && -f "$mp/pgdata/postmaster.pid" ]] || continue
      pid=$(head -1 "$mp/pgdata/postmaster.pid" 2>/dev/null || true)
      [[ "$pid" =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null || true
    done < <(zfs get -r -H -o value mountpoint "$pool" 2>/dev/null || true)
    done_it=0
    for _ in $(seq 1 40); do
      if zpool destroy -f "$pool" >/dev/null 2>&1; then done_it=1; break; fi
      sleep 0.25
    done
    if (( done_it )); then log "destroyed leftover test pool $pool"; else warn "could not destroy pool $pool: $(zpool destroy -f "$pool" 2>&1)"; fi
    break
  done
done
# Servers whose pool is already gone (e.g. the zfs-fuse daemon crashed under
# them) are found by their data directory, HOME/mnt/POOL/..., instead.
for p in "${PREFIXES[@]}"; do
  if pkill -QUIT -f "postgres -D [^ ]*/mnt/${p}[^/]*/" 2>/dev/null; then
    log "stopped leftover servers of pools $p*"
  fi
  rm -f /tmp/betterpg-test/"$p"*.img 2>/dev/null || true
done
if have_cmd docker && docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq --filter label=betterpg.managed=true --filter label=betterpg.test=true 2>/dev/null || true)
  [[ -z "$ids" ]] || docker rm -f $ids >/dev/null 2>&1 || true
fi
exit 0
