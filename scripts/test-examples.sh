#!/usr/bin/env bash
# Run every example's README as a new user would: copy-paste, in order.
#
# In examples/*/README.md, a fenced shell block right after the line
# `<!-- example: run -->` is part of the example; one after
# `<!-- example: cleanup -->` removes what it made. For each README that
# has them, the run blocks are pasted, as written, into one bash script
# (`set -euo pipefail`, started at the repository root), and its cleanup
# blocks run after it from the repository root, also when it failed, and
# once before it (leftovers of a killed run); the example's pool, named
# bpgex-NAME, must be gone afterwards. examples/c and examples/python must
# have run blocks; any other README with them is run too.
# Exits non-zero when any example fails.
#
# Usage: scripts/test-examples.sh [NAME...]   e.g. c python (default: all)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac

REQUIRED=(c python)
need_root "the examples create ZFS pools and run PostgreSQL as user postgres"
need_cmd python3 "scripts/setup.sh installs it"

# extract README KIND: the blocks of that kind, each preceded by a comment
# naming its line, or nothing.
extract() {
  python3 - "$1" "$2" <<'PY'
import re, sys
path, kind = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
i, out = 0, []
while i < len(lines):
    if lines[i].strip() == f"<!-- example: {kind} -->":
        j = i + 1
        if j >= len(lines) or not re.match(r"^```(sh|bash|console)?\s*$", lines[j]):
            sys.exit(f"{path}:{i + 1}: '<!-- example: {kind} -->' is not followed by a ```sh block")
        k = j + 1
        while k < len(lines) and lines[k].strip() != "```":
            k += 1
        if k == len(lines):
            sys.exit(f"{path}:{j + 1}: unterminated block")
        out.append(f"# --- {path}:{j + 2}")
        out.extend(lines[j + 1 : k])
        i = k
    i += 1
print("\n".join(out))
PY
}

# remove_pool POOL: what a killed run left on an example's pool (its README
# names it bpgex-NAME): servers on it stopped, then the pool destroyed.
remove_pool() {
  local pool=$1 mp pid
  zpool list "$pool" >/dev/null 2>&1 || return 0
  while read -r mp; do
    [[ -n "$mp" && -f "$mp/pgdata/postmaster.pid" ]] || continue
    pid=$(head -1 "$mp/pgdata/postmaster.pid" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    kill -QUIT "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done < <(zfs get -r -H -o value mountpoint "$pool" 2>/dev/null || true)
  for _ in $(seq 20); do zpool destroy -f "$pool" >/dev/null 2>&1 && break; sleep 0.5; done
  zpool list "$pool" >/dev/null 2>&1 && warn "could not destroy the leftover pool $pool"
  return 0
}

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for d in examples/*/; do names+=("$(basename "$d")"); done
fi

WORK=$(mktemp -d); bpg_cleanup_add "$WORK"
FAILED=() RAN=()
for name in "${names[@]}"; do
  readme=examples/$name/README.md
  [[ -f $readme ]] || die "$readme does not exist"
  extract "$readme" run >"$WORK/$name-run.sh" || die "cannot read the blocks of $readme"
  extract "$readme" cleanup >"$WORK/$name-cleanup.sh" || die "cannot read the blocks of $readme"
  if [[ ! -s $WORK/$name-run.sh ]]; then
    if [[ " ${REQUIRED[*]} " == *" $name "* ]]; then
      warn "$readme has no '<!-- example: run -->' block"
      FAILED+=("$name")
    else
      log "$readme has no run blocks: not run"
    fi
    continue
  fi
  # The cleanup runs from the root, in the shell the example left (its
  # venv, PATH), and goes on past a failing line.
  {
    echo 'set -uo pipefail'
    echo "cleanup() { cd \"$ROOT\" || return"
    echo 'set +e -x'
    cat "$WORK/$name-cleanup.sh"
    echo 'set +x; }'
  } >"$WORK/$name-cleanup-fn.sh"
  log "=== example $name: cleaning up what an earlier run may have left"
  (cd "$ROOT" && bash -c ". '$WORK/$name-cleanup-fn.sh'; cleanup" >"$WORK/$name-pre.log" 2>&1) || true
  remove_pool "bpgex-$name"
  log "=== example $name: $readme, as written"
  t=$SECONDS
  if (cd "$ROOT" && env -u BPG_HOME -u VIRTUAL_ENV -u PYTHONPATH bash -c "
        . '$WORK/$name-cleanup-fn.sh'
        trap cleanup EXIT
        set -euxo pipefail
        . '$WORK/$name-run.sh'
      "); then
    if zpool list "bpgex-$name" >/dev/null 2>&1; then
      warn "example $name ran, but its cleanup left the pool bpgex-$name behind"
      remove_pool "bpgex-$name"
      FAILED+=("$name")
      continue
    fi
    ok "example $name ran from its README and cleaned up ($((SECONDS - t)) s)"
    RAN+=("$name")
  else
    warn "example $name FAILED ($((SECONDS - t)) s): the commands above are those of $readme"
    FAILED+=("$name")
  fi
done

if [[ ${#FAILED[@]} -gt 0 ]]; then
  die "examples failed: ${FAILED[*]}"
fi
ok "examples ran from their READMEs: ${RAN[*]}"
