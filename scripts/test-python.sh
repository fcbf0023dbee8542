#!/usr/bin/env bash
# Build the Python module (betterpg-py) and test it, for real:
#   1. a virtualenv in target/py-venv with maturin, pytest, pytest-xdist and
#      psycopg[binary] (installed once; reinstalled only when this list
#      changes or the venv is broken);
#   2. the crate's Rust unit tests (cargo nextest run -p betterpg-py);
#   3. `maturin develop` (editable install of the package), then a real
#      abi3 wheel: checks what it ships (stubs, py.typed, the pytest11 entry
#      point) and imports it from a throwaway venv;
#   4. pytest betterpg-py/tests against real ZFS (zfs-fuse) and
#      PostgreSQL 15: the API end to end, every exception class, the stubs,
#      fork safety, and the pytest plugin driving examples/python and the
#      suites in tests/suites (serial and with -n 2).
# The tests make their own file-backed pools (bpgpy-*, files in
# /tmp/betterpg-test/) and use ports 57000-57999. Servers on those pools, the
# pools, their files and homes are removed before the run (leftovers of a
# killed run) and on exit, also on failure, so it can run again at once.
# Exits non-zero on any failure.
#
# Usage: scripts/test-python.sh [PYTEST_ARGS...]   e.g. -k plugin -x
# Environment: PYTHON (default python3) makes the venv.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
esac

CRATE=betterpg-py
VENV=$ROOT/target/py-venv
PYTHON=${PYTHON:-python3}
POOL_PREFIX=bpgpy
POOL_DIR=/tmp/betterpg-test
REQUIREMENTS=(maturin pytest pytest-xdist "psycopg[binary]")

T0=$SECONDS
need_root "the tests create ZFS pools and run PostgreSQL as user postgres"
scripts/setup.sh --quiet   # idempotent: zfs-fuse running, PostgreSQL 15, python3-venv
need_cmd cargo "install the Rust toolchain"
need_cmd "$PYTHON" "install python3 and python3-venv (scripts/setup.sh)"
need_cmd zpool "run scripts/setup.sh (zfs-fuse)"
zpool list >/dev/null 2>&1 || die "zpool list fails: start zfs-fuse (scripts/setup.sh)"

# --- cleanup: only what carries this suite's prefix ---------------------------
cleanup_pools() {
  local pool mp pid
  for pool in $(zpool list -H -o name 2>/dev/null); do
    [[ "$pool" == "$POOL_PREFIX"-* ]] || continue
    # Stop the servers whose data directories live on the pool.
    while read -r mp; do
      [[ -n "$mp" && -f "$mp/pgdata/postmaster.pid" ]] || continue
      pid=$(head -1 "$mp/pgdata/postmaster.pid" 2>/dev/null || true)
      [[ "$pid" =~ ^[0-9]+$ ]] || continue
      kill -QUIT "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done < <(zfs get -r -H -o value mountpoint "$pool" 2>/dev/null || true)
    for _ in $(seq 1 40); do
      zpool destroy -f "$pool" >/dev/null 2>&1 && break
      sleep 0.25
    done
    if zpool list "$pool" >/dev/null 2>&1; then
      warn "could not destroy pool $pool: $(zpool destroy -f "$pool" 2>&1)"
    else
      log "destroyed test pool $pool"
    fi
  done
  rm -f "$POOL_DIR/$POOL_PREFIX"-*.img
  rm -rf "$POOL_DIR/$POOL_PREFIX"-*-home "$POOL_DIR/$POOL_PREFIX"-*-home2
  return 0
}
cleanup_pools
bpg_cleanup_cmd cleanup_pools

# --- 1. virtualenv -----------------------------------------------------------------
stamp=$VENV/.betterpg-requirements
want="${REQUIREMENTS[*]}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]] || ! "$VENV/bin/python" -c 'import maturin, pytest, xdist, psycopg' 2>/dev/null; then
  log "installing ${REQUIREMENTS[*]} into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${REQUIREMENTS[@]}"
  printf '%s' "$want" >"$stamp"
else
  ok "venv $VENV has ${REQUIREMENTS[*]}"
fi
export VIRTUAL_ENV=$VENV
export PATH=$VENV/bin:$PATH
unset PYTHONPATH BPG_HOME PYTEST_ADDOPTS

# --- 2. Rust unit tests ---------------------------------------------------------
log "cargo nextest run -p betterpg-py"
cargo nextest run --profile ci --no-tests=fail -p betterpg-py --features fault-injection

# --- 3. build and install --------------------------------------------------------
# The test build has fault injection (BETTERPG_FAULT), like every test
# build; the wheel below is built as shipped, without it.
log "maturin develop ($CRATE, with fault injection)"
(cd "$CRATE" && maturin develop -q --features fault-injection)
python -c 'import betterpg, betterpg.pytest_plugin; print("betterpg", betterpg.__version__, "from", betterpg.__file__)'

# --- 3b. the wheel: what it ships, and that it works installed (not editable) ----
wheel_dir=$(mktemp -d); bpg_cleanup_add "$wheel_dir"
(cd "$CRATE" && maturin build -q -o "$wheel_dir" >/dev/null)
wheel=$(ls "$wheel_dir"/betterpg-*-cp39-abi3-*.whl)
python - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"betterpg/__init__.py", "betterpg/exceptions.py", "betterpg/pytest_plugin.py",
        "betterpg/_internal.pyi", "betterpg/py.typed", "betterpg/_internal.abi3.so",
        *(f"betterpg/_plugin/{m}.py" for m in ("__init__", "options", "identity", "janitor", "fixtures"))}
missing = need - names
assert not missing, f"wheel lacks {sorted(missing)}"
ep = [n for n in names if n.endswith("entry_points.txt")]
text = zipfile.ZipFile(sys.argv[1]).read(ep[0]).decode()
assert "[pytest11]" in text and "betterpg=betterpg.pytest_plugin" in text.replace(" ", ""), text
PY
# Import it with the venv's Python and, when present, the oldest and newest
# CPython the abi3 wheel claims (3.9 / 3.13, e.g. from pyenv); every file must
# also compile there.
abi3_pythons=("$PYTHON")
for v in 3.9 3.13; do
  for cand in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v".*/bin/python3; do
    if [[ -n "$cand" ]] && "$cand" -c 'import sys' >/dev/null 2>&1; then abi3_pythons+=("$cand"); break; fi
  done
done
for py in "${abi3_pythons[@]}"; do
  wheel_venv=$(mktemp -d); bpg_cleanup_add "$wheel_venv"
  "$py" -m venv "$wheel_venv"
  "$wheel_venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"
  (cd / && "$wheel_venv/bin/python" - <<'PY'
import sys, betterpg, betterpg.exceptions
assert betterpg.NotFoundError.code == 3 and issubclass(betterpg.InvalidNameError, ValueError)
print("wheel imports on", sys.version.split()[0], "from", betterpg.__file__)
PY
  )
  "$wheel_venv/bin/python" - "$CRATE/python" "$CRATE/tests" examples/python <<'PY'
import pathlib, sys
for d in sys.argv[1:]:
    for f in pathlib.Path(d).rglob("*.py"):
        compile(f.read_text(), str(f), "exec")  # syntax of this Python version; nothing written
PY
done

# --- 4. the tests ----------------------------------------------------------------------
# zfs-fuse is shared by everyone testing on this machine and may have been
# stopped while we built: make sure it runs (idempotent, quick).
scripts/setup.sh --quiet
log "pytest $CRATE/tests"
(cd "$CRATE" && python -m pytest tests -ra "$@")

ok "python tests passed in $((SECONDS - T0)) s"
