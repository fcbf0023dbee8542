# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Source it after `set -euo pipefail`:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Messages go to stderr, so a script's stdout stays machine-readable.
# BPG_QUIET=1 (or SETUP_QUIET=1) silences log(); warnings and errors still print.

BPG_PROG=${BPG_PROG:-$(basename "$0")}

bpg_quiet() { [[ "${BPG_QUIET:-${SETUP_QUIET:-0}}" == 1 ]]; }

log()  { bpg_quiet || printf '[%s] %s\n' "$BPG_PROG" "$*" >&2; }
ok()   { bpg_quiet || printf '[%s] ok: %s\n' "$BPG_PROG" "$*" >&2; }
warn() { printf '[%s] warning: %s\n' "$BPG_PROG" "$*" >&2; }
die()  { printf '[%s] error: %s\n' "$BPG_PROG" "$*" >&2; exit 1; }

# An unexpected failing command still ends the script with a one-line reason.
set -o errtrace
# shellcheck disable=SC2154  # rc is assigned inside the trap string
trap 'rc=$?; printf "[%s] error: command failed (exit %s) at line %s: %s\n" "$BPG_PROG" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

have_cmd() { command -v "$1" >/dev/null 2>&1; }

# need_cmd CMD [HINT]
need_cmd() {
  have_cmd "$1" || die "required command '$1' not found${2:+ ($2)}"
}

need_root() {
  [[ ${EUID:-$(id -u)} -eq 0 ]] || die "must run as root${1:+ ($1)}"
}

# Debian package installed? (status "ii")
pkg_installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == "ii"* ]]
}

# Run a command as the unprivileged `postgres` OS user (PostgreSQL refuses to
# run as root). When not root, run it as the current user instead.
as_postgres() {
  if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Temporary paths removed on exit: bpg_cleanup_add PATH
BPG_CLEANUP_PATHS=()
BPG_CLEANUP_CMDS=()
bpg_cleanup_add() { BPG_CLEANUP_PATHS+=("$1"); }
# bpg_cleanup_cmd 'shell snippet' runs (last added first) on exit, errors ignored.
bpg_cleanup_cmd() { BPG_CLEANUP_CMDS+=("$1"); }
bpg_cleanup() {
  local i
  for (( i=${#BPG_CLEANUP_CMDS[@]}-1; i>=0; i-- )); do
    eval "${BPG_CLEANUP_CMDS[i]}" >/dev/null 2>&1 || true
  done
  for i in "${BPG_CLEANUP_PATHS[@]}"; do
    [[ -n "$i" && "$i" != / ]] && rm -rf -- "$i"
  done
  return 0
}
trap bpg_cleanup EXIT
