#!/usr/bin/env bash
# Test betterpg against the real OpenZFS 2.1 kernel module, in a guest kernel
# booted with virtme-ng under software emulation (nested KVM hangs on these
# machines). A separate, slow CI stage: cold (fresh machine: packages, module
# build, cargo build) about 21 minutes, warm about 9-12 minutes on 2 cores
# (see docs/openzfs.md).
#
#   1. scripts/vm/setup.sh: contrib apt source, Debian kernel, zfs-dkms
#      module (built once, cached), OpenZFS userland unpacked for the guest
#      (zfsutils-linux is NEVER installed on the host: it would remove
#      zfs-fuse), qemu, virtme-ng;
#   2. builds on the host, with cargo feature `libzfs`: `bpg` and the storage
#      suite's test binary (tests/storage.rs); runs the libzfs unit tests and
#      the storage suite on the host (zfs-fuse: the linked backend must fall
#      back to the CLI there, as there is no /dev/zfs);
#   3. boots the guest (scripts/vm/guest.sh): storage suite with the CLI and
#      the libzfs backends, the storage benchmark, branch tests with `bpg`;
#   4. writes benches/results/openzfs-storage.json (ratios CLI/libzfs).
#
# Exits non-zero on any failure; a missing prerequisite that cannot be
# installed is a failure, never a skip.
#
# Usage: scripts/test-openzfs-vm.sh
# Environment: BPG_VM_CACHE (default /var/cache/betterpg/vm), BPG_VM_OUT
# (run directory, default /tmp/bpgvm-run; logs stay there), BPG_VM_MEMORY
# (2G), BPG_VM_CPUS (2), BPG_VM_TIMEOUT (seconds for the guest, 2400),
# BPG_VM_BENCH_ITERS (15), BPG_VM_STAGES (guest stages, default all; see
# scripts/vm/guest.sh; results are only written when all ran), CARGO_TARGET_DIR.
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

phase "prerequisites (scripts/vm/setup.sh)"
setup_out=$(BPG_VM_CACHE=$CACHE scripts/vm/setup.sh) || die "scripts/vm/setup.sh failed: the guest cannot be prepared"
KVER=$(sed -n 's/^KVER=//p' <<<"$setup_out")
[[ -n "$KVER" && -f "/boot/vmlinuz-$KVER" ]] || die "no guest kernel found (setup printed: $setup_out)"
ZROOT=$CACHE/openzfs-root
VNG=$CACHE/venv/bin/vng
[[ -x "$VNG" ]] || die "virtme-ng missing at $VNG"
[[ -x "$ZROOT/sbin/zfs" ]] || die "OpenZFS userland missing in $ZROOT"
need_cmd qemu-system-x86_64 "scripts/vm/setup.sh installs qemu-system-x86"
pkg_installed zfs-fuse || die "zfs-fuse is no longer installed on the host"

rm -rf "$OUT"
mkdir -p "$OUT/bin"

phase "build with --features libzfs"
cargo build -q -p betterpg-cli --features betterpg-core/libzfs
storage_bin=$(cargo test -q -p betterpg-core --features libzfs --test storage --no-run --message-format=json |
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
[[ "$(ldd "$OUT/bin/storage")" == *libzfs_core.so* ]] || die "the storage test binary is not linked with libzfs_core"

phase "host: libzfs unit tests, storage suite on zfs-fuse with the libzfs build"
if ! cargo test -q -p betterpg-core --features libzfs --lib storage:: 2>&1 | tee "$OUT/host-unit.log"; then
  die "storage unit tests (with feature libzfs) failed on the host"
fi
# One test at a time on zfs-fuse: two tests creating pools and datasets at
# once can wedge the daemon (every `zfs create` blocks in D state; seen on a
# second CI run on one machine). The guest's kernel ZFS has no such problem.
if ! BPG_STORAGE_BACKEND=auto "$OUT/bin/storage" --test-threads=1 --show-output 2>&1 | tee "$OUT/host-storage.log"; then
  die "storage suite failed on the host (zfs-fuse)"
fi
grep -q 'libzfs not usable (no /dev/zfs' "$OUT/host-storage.log" ||
  die "on the host the linked backend should have fallen back to the CLI (no /dev/zfs)"

phase "guest: Linux $KVER + OpenZFS module (software emulation, $CPUS cpus, $MEMORY)"
rc=0
PATH="$CACHE/venv/bin:$PATH" timeout --kill-after=30 "$GUEST_TIMEOUT" \
  "$VNG" --run "/boot/vmlinuz-$KVER" --disable-kvm --memory "$MEMORY" --cpus "$CPUS" \
  --rwdir "$OUT" --rodir "$ZROOT" -- bash "$REPO/scripts/vm/guest.sh" "$OUT" "$ZROOT" "$OUT/bin" "${BPG_VM_STAGES:-all}" \
  </dev/null >"$OUT/vm.log" 2>&1 || rc=$?
result=$(cat "$OUT/result" 2>/dev/null || echo "no result (guest did not run the script)")
if [[ $rc -ne 0 || "$result" != PASS ]]; then
  tail -n 60 "$OUT/vm.log" >&2 || true
  die "guest run failed (vng exit $rc, result: $result); logs in $OUT"
fi
log "guest stages: $(tr '\n' ' ' <"$OUT/stage-times.txt")"

if [[ "${BPG_VM_STAGES:-all}" != all ]]; then
  log "passed the selected guest stages (${BPG_VM_STAGES}); results not written"
  exit 0
fi
phase "results"
mkdir -p benches/results
python3 - "$OUT" "$KVER" >benches/results/openzfs-storage.json <<'PY'
import json, sys, datetime
out, kver = sys.argv[1], sys.argv[2]
bench = json.load(open(f"{out}/openzfs-storage.json"))
print(json.dumps({
    "what": "time per storage operation, linked libzfs/libzfs_core vs the zfs CLI, same guest run",
    "generated_by": "scripts/test-openzfs-vm.sh",
    "date": datetime.date.today().isoformat(),
    "guest_kernel": kver,
    "zfs": open(f"{out}/zfs-version.txt").read().split(),
    "emulated": True,
    "note": "software-emulated guest (qemu TCG, --disable-kvm): absolute times are meaningless, compare ratios only",
    **bench,
}, indent=2))
PY
cat benches/results/openzfs-storage.json
log "passed: OpenZFS $(head -1 "$OUT/zfs-version.txt") in the guest, CLI and libzfs backends; $((SECONDS - T0)) s in all; logs in $OUT"
