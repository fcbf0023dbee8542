#!/usr/bin/env python3
"""How much a branch grows for the same UPDATE, with betterpg's old dataset
properties (ZFS's default recordsize=128K, atime=on) and its new ones
(recordsize=8K: PostgreSQL's page; atime=off), side by side in one run.

For each setting: a home on its own file-backed pool (`bpg init`, the old
setting through `--recordsize 128K --zfs-property atime=on`), a database
with a table of PAGES heap pages (fillfactor 50, so an UPDATE stays on its
page; VACUUM FREEZE + CHECKPOINT first, so no hint bit dirties a page in a
branch), then two branches, each touching the same number of pages
(PAGES/16), one row per page:

* sparse: every 16th page (one page per 128K record: scattered OLTP updates);
* dense: the first PAGES/16 pages, contiguous (no amplification possible).

After a CHECKPOINT in the branch and once ZFS's accounting settled, the
growth of the branch's clone (`used` after minus before) and the WAL the
branch wrote are recorded. Nothing asserts on the numbers; the script fails
only when a step fails.

Usage (scripts/bench.sh runs it; direct use needs root, zfs-fuse, PG 15):
    benches/recordsize.py --bpg target/release/bpg --work DIR --out FILE.json
        [--pages 32768] [--pool-prefix bpgbenchrs] [--ports 59450-59489]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

PSQL = "/usr/lib/postgresql/15/bin/psql"
PG_BIN = "/usr/lib/postgresql/15/bin"
STRIDE = 16  # pages per 128K record

SETTINGS = [
    ("old (recordsize=128K, atime=on)", "128k", ["--recordsize", "128K", "--zfs-property", "atime=on"]),
    ("new (betterpg's defaults)", "8k", []),
]


def log(msg: str) -> None:
    print(f"[recordsize] {msg}", file=sys.stderr, flush=True)


def run(cmd: List[str], **kw: Any) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}... failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def sql(url: str, q: str) -> str:
    return run([PSQL, url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", q]).strip()


def used(dataset: str) -> int:
    return int(run(["zfs", "get", "-H", "-p", "-o", "value", "used", dataset]).strip())


def settled_used(dataset: str) -> int:
    """`used` once ZFS committed what was written: ZFS updates the figure
    when a transaction group syncs, and creating (and destroying) a snapshot
    forces that sync. Repeated until two readings agree (at most 10)."""
    last = -1
    for i in range(10):
        snap = f"{dataset}@bench-settle-{i}"
        run(["zfs", "snapshot", snap])
        run(["zfs", "destroy", snap])
        u = used(dataset)
        if u == last:
            return u
        last = u
        time.sleep(1)
    return last


def zfs_props(dataset: str) -> Dict[str, str]:
    out = run(["zfs", "get", "-H", "-o", "property,value", "recordsize,atime,compression", dataset])
    return dict(line.split("\t", 1) for line in out.strip().splitlines())


class Home:
    def __init__(self, bpg: str, work: Path, pool: str, ports: str, extra: List[str], size: str):
        self.bpg, self.pool = bpg, pool
        self.home = work / f"{pool}-home"
        self.file = Path("/tmp/betterpg-test") / f"{pool}.img"
        self.cmd([
            "init", "--pool-file", str(self.file), "--size", size, "--pool", pool,
            "--ports", ports, "--pg-bin", PG_BIN, *extra,
        ])

    def cmd(self, args: List[str]) -> Any:
        return json.loads(run([self.bpg, "--home", str(self.home), "--json", *args]) or "null")

    def destroy(self) -> None:
        subprocess.run([self.bpg, "--home", str(self.home), "destroy", "src", "--force"], capture_output=True)
        for _ in range(40):
            if subprocess.run(["zpool", "destroy", "-f", self.pool], capture_output=True).returncode == 0:
                break
            if subprocess.run(["zpool", "list", self.pool], capture_output=True).returncode != 0:
                break
            time.sleep(0.5)
        self.file.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(self.home)])


def one_setting(h: Home, pages: int) -> Dict[str, Any]:
    src = h.cmd(["create", "src"])
    url = src["url"]
    # ~100-byte rows, fillfactor 50: an UPDATE of one row stays on its page (HOT).
    sql(url, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, pad text) WITH (fillfactor = 50)")
    rows = 0
    while int(sql(url, "SELECT pg_relation_size('t') / 8192")) < pages:
        sql(url, f"INSERT INTO t (id, pad) SELECT g, repeat(md5(g::text), 3) FROM generate_series({rows + 1}, {rows + 20000}) g")
        rows += 20000
    sql(url, "VACUUM (FREEZE, ANALYZE) t")
    sql(url, "CHECKPOINT")
    heap_pages = int(sql(url, "SELECT pg_relation_size('t') / 8192"))
    touched = heap_pages // STRIDE
    out: Dict[str, Any] = {"heap_pages": heap_pages, "touched_pages": touched, "props": zfs_props(src["dataset"])}
    for shape, first_pages in [
        ("sparse", f"generate_series(0, {touched * STRIDE - 1}, {STRIDE})"),
        ("dense", f"generate_series(0, {touched - 1})"),
    ]:
        rep = h.cmd(["branch", "src", shape])
        b = rep["branch"]
        burl, ds = b["url"], b["dataset"]
        sql(burl, "CHECKPOINT")
        before = settled_used(ds)
        lsn0 = sql(burl, "SELECT pg_current_wal_lsn()")
        n = int(sql(
            burl,
            "WITH u AS (UPDATE t SET v = v + 1 WHERE ctid = ANY(ARRAY(SELECT format('(%s,1)', g)::tid "
            f"FROM {first_pages} g)) RETURNING 1) SELECT count(*) FROM u",
        ))
        sql(burl, "CHECKPOINT")
        wal = int(sql(burl, f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn0}')"))
        after = settled_used(ds)
        out[shape] = {
            "rows_updated": n,
            "used_before": before,
            "used_after": after,
            "growth_bytes": after - before,
            "wal_bytes": wal,
            "growth_per_touched_page": (after - before) / max(touched, 1),
        }
        log(f"{h.pool} {shape}: {n} rows on {touched} pages, branch grew {(after - before) / 2**20:.1f} MiB (WAL {wal / 2**20:.1f} MiB)")
        h.cmd(["destroy", shape])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bpg", required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pages", type=int, default=32768, help="heap pages of the table (default 32768 = 256 MiB)")
    ap.add_argument("--pool-prefix", default="bpgbenchrs")
    ap.add_argument("--ports", default="59450-59489", help="FIRST-LAST, split between the two homes")
    a = ap.parse_args()
    first, last = (int(x) for x in a.ports.split("-"))
    half = (last - first + 1) // 2
    a.work.mkdir(parents=True, exist_ok=True)
    size = "1G" if a.pages <= 8192 else "2G"
    result: Dict[str, Any] = {
        "what": "branch growth after the same UPDATE, old vs new dataset properties",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"host": platform.node(), "kernel": platform.release()},
        "zfs": "openzfs" if subprocess.run(["zfs", "version"], capture_output=True).returncode == 0 else "zfs-fuse",
        "pages": a.pages,
        "stride": STRIDE,
        "settings": {},
    }
    failed = False
    for i, (label, tag, extra) in enumerate(SETTINGS):
        pool = f"{a.pool_prefix}{tag}"
        ports = f"{first + i * half}-{first + (i + 1) * half - 1}"
        h = None
        try:
            log(f"{label}: pool {pool}, ports {ports}")
            h = Home(a.bpg, a.work, pool, ports, extra, size)
            result["settings"][label] = one_setting(h, a.pages)
        except Exception as e:  # noqa: BLE001  (recorded, and the run fails)
            failed = True
            result["settings"][label] = {"error": str(e)}
            log(f"FAILED {label}: {e}")
        finally:
            if h is not None:
                h.destroy()
    try:
        a.work.rmdir()  # only when empty: every home was removed above
    except OSError:
        pass
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 1 if failed else 0


def render(r: Dict[str, Any]) -> str:
    lines = [
        f"Branch growth after updating one row on each of N pages ({r['pages']} heap pages, {r['zfs']}):",
        "",
        "| dataset properties | pages touched | sparse (every 16th page): branch growth | per page | dense (contiguous): branch growth | per page | WAL written (sparse) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s in r["settings"].items():
        if "error" in s:
            lines.append(f"| {label} | failed: {s['error'][:80]} | | | | | |")
            continue
        sp, de = s["sparse"], s["dense"]
        lines.append(
            f"| {label} | {s['touched_pages']} | {sp['growth_bytes'] / 2**20:.1f} MiB | "
            f"{sp['growth_per_touched_page'] / 1024:.1f} KiB | {de['growth_bytes'] / 2**20:.1f} MiB | "
            f"{de['growth_per_touched_page'] / 1024:.1f} KiB | {sp['wal_bytes'] / 2**20:.1f} MiB |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
