#!/usr/bin/env bash
# Test betterpg against the real OpenZFS kernel module, 2.1 (Debian 12) and
# 2.3 (bookworm-backports), each in a guest kernel booted with virtme-ng under
# software emulation (nested KVM hangs on these machines). A separate, slow CI
# stage; times in docs/openzfs.md.
#
#   1. scripts/vm/setup.sh --zfs R for each release R tested: kernel, zfs-dkms
#      module (built once, cached), OpenZFS userland unpacked for the guest
#      (zfsutils-linux is NEVER installed on the host: it would remove
#      zfs-fuse; 2.3 is built in a debootstrap'd root), qemu, virtme-ng;
#   2. builds on the host (no cargo feature: the libzfs backend loads its
#      libraries at run time) `bpg` and the storage suite's test binary
#      (tests/storage.rs), checks they are not linked with libzfs, runs the
#      libzfs unit tests against each release's libraries (2.1 installed,
#      2.3 unpacked);
#   3. boots a guest per release (scripts/vm/guest.sh): storage suite with
#      the CLI and the libzfs backends, the storage benchmark, branch tests
#      with `bpg` under a writer; writes benches/results/openzfs-storage.json
#      (2.1) and benches/results/openzfs-2.3-storage.json (ratios CLI/libzfs);
#   4. runs the storage suite on the host (zfs-fuse: the libzfs backend must
#      fall back to the CLI there, as there is no /dev/zfs).
#
# Which releases: BPG_VM_ZFS = both (default: 2.1 then 2.3), 2.1, 2.3, or
# rotate (one per run, by the UTC day: 2.1 on even days of the year, 2.3 on
# odd ones; the choice is printed). Exits non-zero on any failure; a missing
# prerequisite that cannot be installed is a failure, never a skip.
#
# Usage: scripts/test-openzfs-vm.sh
# Environment: BPG_VM_ZFS (both), BPG_VM_CACHE (default
# /var/cache/betterpg/vm), BPG_VM_OUT (run directory, default /tmp/bpgvm-run;
# logs stay there, one directory per release), BPG_VM_MEMORY (2G),
# BPG_VM_CPUS (2), BPG_VM_TIMEOUT (seconds per guest, 2400),
# BPG_VM_BENCH_ITERS (15), BPG_VM_STAGES (guest stages, default all; see
# scripts/vm/guest.sh; results are only written when all ran),
# BPG_VM_HOST_LOCK (a lock file held around the host's zfs-fuse suite),
# CARGO_TARGET_DIR.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

[[ "${1:-}" == -h || "${1:-}" == --help ]] && { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0; }
need_root "installs packages, loads a guest kernel, creates ZFS pools"
need_cmd cargo "install the Rust toolchain"
need_cmd python3

CACHE=${BPG_VM_CACHE:-/var/cache/betterpg/vm}
OUT=${BPG_VM_OUT:-/tmp/bpgvm-run}
MEMORY=${BPG_VM_MEMORY:-2G}
CPUS=${BPG_VM_CPUS:-2}
GUEST_TIMEOUT=${BPG_VM_TIMEOUT:-2400}
T0=$SECONDS
phase() { log "--- $* (t=$((SECONDS - T0)) s)"; }

case "${BPG_VM_ZFS:-both}" in
  both) RELEASES=(2.1 2.3) ;;
  2.1|2.3) RELEASES=("$BPG_VM_ZFS") ;;
  rotate)
    day=$((10#$(date -u +%j)))
    if (( day % 2 == 0 )); then RELEASES=(2.1); else RELEASES=(2.3); fi
    log "BPG_VM_ZFS=rotate: day $day of the year (UTC) -> this run tests OpenZFS ${RELEASES[0]}; the other release runs on the next day"
    ;;
  *) die "BPG_VM_ZFS must be both, 2.1, 2.3 or rotate, not '$BPG_VM_ZFS'" ;;
esac
log "OpenZFS releases tested in this run: ${RELEASES[*]}"

declare -A KVER ZROOT ZVER
for r in "${RELEASES[@]}"; do
  phase "prerequisites for OpenZFS $r (scripts/vm/setup.sh --zfs $r)"
  setup_out=$(BPG_VM_CACHE=$CACHE scripts/vm/setup.sh --zfs "$r") || die "scripts/vm/setup.sh --zfs $r failed: the guest cannot be prepared"
  KVER[$r]=$(sed -n 's/^KVER=//p' <<<"$setup_out")
  ZROOT[$r]=$(sed -n 's/^ZROOT=//p' <<<"$setup_out")
  ZVER[$r]=$(sed -n 's/^ZFS=//p' <<<"$setup_out")
  [[ -n "${KVER[$r]}" && -f "/boot/vmlinuz-${KVER[$r]}" ]] || die "no guest kernel found for $r (setup printed: $setup_out)"
  [[ -x "${ZROOT[$r]}/sbin/zfs" ]] || die "OpenZFS $r userland missing in ${ZROOT[$r]}"
  log "OpenZFS $r: kernel ${KVER[$r]}, zfs ${ZVER[$r]}, userland ${ZROOT[$r]}"
done
VNG=$CACHE/venv/bin/vng
[[ -x "$VNG" ]] || die "virtme-ng missing at $VNG"
need_cmd qemu-system-x86_64 "scripts/vm/setup.sh installs qemu-system-x86"
pkg_installed zfs-fuse || die "zfs-fuse is no longer installed on the host"

rm -rf "$OUT"
mkdir -p "$OUT/bin"

phase "build (no cargo feature: libzfs is loaded at run time)"
cargo build -q -p betterpg-cli
storage_bin=$(cargo test -q -p betterpg-core --test storage --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "storage" and m.get("executable"):
        print(m["executable"])')
[[ -x "$storage_bin" ]] || die "could not find the storage test binary"
target_dir=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# Copies: a concurrent build cannot change what the guest runs.
cp "$target_dir/debug/bpg" "$storage_bin" "$OUT/bin/"
mv "$OUT/bin/$(basename "$storage_bin")" "$OUT/bin/storage"
for b in bpg storage; do
  if ldd "$OUT/bin/$b" | grep -E 'libzfs|libnvpair'; then
    die "$b is linked with OpenZFS's libraries: it would not start where they are missing"
  fi
done

phase "host: libzfs unit tests against each release's libraries"
# The ignored unit test loads the libraries (no module needed) and checks
# that the declarations chosen from soname and symbols give that release's
# version: 2.1's installed ones, 2.3's unpacked ones.
# One thread: the line the test prints is not interleaved with progress output.
if ! cargo test -q -p betterpg-core --lib storage:: -- --include-ignored --nocapture --test-threads=1 2>&1 | tee "$OUT/host-unit.log"; then
  die "storage unit tests failed on the host (OpenZFS 2.1's libraries)"
fi
grep -q 'loaded libzfs.so.4 (zfs-2.1.*OpenZFS 2.1 declarations' "$OUT/host-unit.log" ||
  die "the host's libzfs (2.1) was not loaded with 2.1's declarations"
for r in "${RELEASES[@]}"; do
  [[ "$r" == 2.1 ]] && continue
  if ! LD_LIBRARY_PATH="${ZROOT[$r]}/lib/x86_64-linux-gnu" cargo test -q -p betterpg-core --lib storage::libzfs -- --include-ignored --nocapture --test-threads=1 2>&1 | tee "$OUT/host-unit-$r.log"; then
    die "libzfs unit tests failed against OpenZFS $r's libraries"
  fi
  grep -q "OpenZFS $r declarations" "$OUT/host-unit-$r.log" || die "OpenZFS $r's libzfs was not loaded with its declarations"
done
# results_file RELEASE
results_file() { if [[ "$1" == 2.1 ]]; then echo benches/results/openzfs-storage.json; else echo "benches/results/openzfs-$1-storage.json"; fi; }

declare -A GUEST_S
for r in "${RELEASES[@]}"; do
  ro=$OUT/zfs-$r
  mkdir -p "$ro"
  phase "guest: Linux ${KVER[$r]} + OpenZFS ${ZVER[$r]} module (software emulation, $CPUS cpus, $MEMORY)"
  t=$SECONDS rc=0
  PATH="$CACHE/venv/bin:$PATH" timeout --kill-after=30 "$GUEST_TIMEOUT" \
    "$VNG" --run "/boot/vmlinuz-${KVER[$r]}" --disable-kvm --memory "$MEMORY" --cpus "$CPUS" \
    --rwdir "$ro" --rodir "${ZROOT[$r]}" -- bash "$REPO/scripts/vm/guest.sh" "$ro" "${ZROOT[$r]}" "$OUT/bin" "${BPG_VM_STAGES:-all}" "$r" \
    </dev/null >"$ro/vm.log" 2>&1 || rc=$?
  GUEST_S[$r]=$((SECONDS - t))
  result=$(cat "$ro/result" 2>/dev/null || echo "no result (guest did not run the script)")
  if [[ $rc -ne 0 || "$result" != PASS ]]; then
    tail -n 60 "$ro/vm.log" >&2 || true
    die "OpenZFS $r guest run failed (vng exit $rc, result: $result); logs in $ro"
  fi
  log "OpenZFS $r guest: ${GUEST_S[$r]} s; stages: $(tr '\n' ' ' <"$ro/stage-times.txt")"
  if [[ "${BPG_VM_STAGES:-all}" != all ]]; then
    log "passed the selected guest stages (${BPG_VM_STAGES}); results not written"
    continue
  fi
  mkdir -p benches/results
  python3 - "$ro" "${KVER[$r]}" >"$(results_file "$r")" <<'PY'
import json, sys, datetime
out, kver = sys.argv[1], sys.argv[2]
bench = json.load(open(f"{out}/openzfs-storage.json"))
# Per branch: the steps of one `bpg branch` (PG 15 under a writer) with each
# backend, from the branch tests' --json output.
branch = {}
for b in ("cli", "libzfs"):
    info = json.load(open(f"{out}/branch-{b}.json"))
    branch[b] = {"total_ms": round(info["total_millis"], 1),
                 **{t["step"] + "_ms": round(t["millis"], 1) for t in info["timings"]}}
print(json.dumps({
    "what": "time per storage operation, libzfs/libzfs_core in-process vs the zfs CLI, same guest run",
    "generated_by": "scripts/test-openzfs-vm.sh",
    "date": datetime.date.today().isoformat(),
    "guest_kernel": kver,
    "zfs": open(f"{out}/zfs-version.txt").read().split(),
    "emulated": True,
    "note": "software-emulated guest (qemu TCG, --disable-kvm): absolute times are meaningless, compare ratios only",
    **bench,
    "branch": branch,
}, indent=2))
PY
  cat "$(results_file "$r")"
done
phase "host: storage suite on zfs-fuse (after the guests: it may wait for the shared daemon)"
# One test at a time on zfs-fuse: two tests creating pools and datasets at
# once can wedge the daemon (every `zfs create` blocks in D state; seen on a
# second CI run on one machine). The guest's kernel ZFS has no such problem.
# BPG_VM_HOST_LOCK: a lock file taken (flock) around this suite when others
# share the host's zfs-fuse daemon.
host_lock=()
[[ -n "${BPG_VM_HOST_LOCK:-}" ]] && host_lock=(flock "$BPG_VM_HOST_LOCK")
if ! BPG_STORAGE_BACKEND=auto "${host_lock[@]}" "$OUT/bin/storage" --test-threads=1 --show-output 2>&1 | tee "$OUT/host-storage.log"; then
  die "storage suite failed on the host (zfs-fuse)"
fi
grep -q 'libzfs not usable (no /dev/zfs' "$OUT/host-storage.log" ||
  die "on the host the libzfs backend should have fallen back to the CLI (no /dev/zfs)"

summary=""
for r in "${RELEASES[@]}"; do summary+="OpenZFS ${ZVER[$r]} (guest ${GUEST_S[$r]} s) "; done
log "passed: ${summary}with the CLI and libzfs backends; $((SECONDS - T0)) s in all; logs in $OUT"
