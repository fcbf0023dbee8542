#!/usr/bin/env python3
"""A/B timing of two bpg binaries on one home: the check for an optimisation.

    benches/ab.py --a OLD_BPG --b NEW_BPG [--cycles 15] [--rows 100000]
                  [--pool bpgab] [--ports 59000-59099] [--steps] [--docker]
                  [--rewind]

Makes a file-backed pool and home (pool --pool, ports --ports: by default
those of the benchmark harness, so run it when the harness is not running),
one database with --rows rows (--docker: in the Docker runtime),
then runs --cycles rounds; each round, for A and then B in alternating
order: `bpg branch` (application-consistent), `bpg branch --fast`, `bpg stop`
+ `bpg start` of the branch, `bpg destroy`. With --rewind, each round also
rewinds a `--rewindable` branch after an UPDATE of a quarter of its rows
(`bpg rewind`, and its stop/rollback/start steps). Prints the median
(min-max) of each in ms, and of the `start` step bpg reports, as a Markdown table;
--steps adds every step bpg reports (`timings`), the part of bpg's total
outside every step (`unaccounted`), and the part of the wall time outside
bpg's total (process start, argument parsing, the JSON).
Everything it made is removed at the end, also on failure. Needs root,
scripts/setup.sh done.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

POOL = "bpgab"
PORTS = "59000-59099"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr.strip()}")
    return p


def timed(*cmd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = sh(*cmd)
    return (time.perf_counter() - t0) * 1000, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="bpg binary A (e.g. the old one)")
    ap.add_argument("--b", required=True, help="bpg binary B (e.g. the new one)")
    ap.add_argument("--cycles", type=int, default=15)
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--pool", default=POOL)
    ap.add_argument("--ports", default=PORTS)
    ap.add_argument("--steps", action="store_true", help="every reported step too")
    ap.add_argument("--docker", action="store_true", help="the database in the Docker runtime")
    ap.add_argument("--rewind", action="store_true", help="time `bpg rewind` too")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bpgab-", dir="/tmp"))
    work.chmod(0o755)  # the server user must reach the home's mounts
    home = work / "home"
    a = [args.a, "--home", str(home), "--json"]
    b = [args.b, "--home", str(home), "--json"]
    res: Dict[str, Dict[str, List[float]]] = {"A": {}, "B": {}}
    try:
        sh(args.a, "--home", str(home), "init", "--pool-file", str(work / "pool.img"),
           "--size", "2G", "--pool", args.pool, "--ports", args.ports)
        sh(*a, "create", "prod", *(["--runtime", "docker"] if args.docker else []))
        url = json.loads(sh(*a, "status", "prod").stdout)["entries"][0]["url"]
        sh("psql", "-q", url, "-c",
           f"CREATE TABLE t AS SELECT i, md5(i::text) v FROM generate_series(1, {args.rows}) i")
        rw_url = ""
        if args.rewind:
            rw = json.loads(sh(*a, "branch", "prod", "rw", "--rewindable").stdout)
            rw_url = rw["branch"]["url"]
        for cycle in range(args.cycles):
            order = [("A", a), ("B", b)] if cycle % 2 == 0 else [("B", b), ("A", a)]
            for label, bpg in order:
                r = res[label]
                for mode, extra in (("branch", []), ("branch --fast", ["--fast"])):
                    ms, out = timed(*bpg, "branch", "prod", "ab", *extra)
                    rep = json.loads(out)
                    r.setdefault(mode, []).append(ms)
                    start = next(t["millis"] for t in rep["timings"] if t["step"] == "start")
                    r.setdefault(f"{mode}: start step", []).append(start)
                    if args.steps:
                        steps: Dict[str, float] = {}
                        for t in rep["timings"]:
                            steps[t["step"]] = steps.get(t["step"], 0.0) + t["millis"]
                        for step, v in steps.items():
                            if step != "start":
                                r.setdefault(f"{mode}: {step}", []).append(v)
                        total = rep["total_millis"]
                        r.setdefault(f"{mode}: bpg total", []).append(total)
                        r.setdefault(f"{mode}: unaccounted", []).append(total - sum(steps.values()))
                        r.setdefault(f"{mode}: outside bpg total", []).append(ms - total)
                    if mode == "branch":
                        r.setdefault("stop", []).append(timed(*bpg, "stop", "ab")[0])
                        r.setdefault("start (restart)", []).append(timed(*bpg, "start", "ab")[0])
                    r.setdefault("destroy", []).append(timed(*bpg, "destroy", "ab")[0])
                if args.rewind:
                    sh("psql", "-q", rw_url, "-c", "UPDATE t SET v = v || 'x' WHERE i % 4 = 0")
                    ms, out = timed(*bpg, "rewind", "rw")
                    r.setdefault("rewind", []).append(ms)
                    for t in json.loads(out)["timings"]:
                        r.setdefault(f"rewind: {t['step']}", []).append(t["millis"])
        # A step only one binary reports shows with "-" for the other.
        rows = list(dict.fromkeys([*res["A"], *res["B"]]))
        print(f"\n{args.cycles} cycles, interleaved; ms, median (min-max)\n")
        print("| operation | A | B | B / A |")
        print("|---|---|---|---|")
        for k in rows:
            va, vb = res["A"].get(k, []), res["B"].get(k, [])
            ma = statistics.median(va) if va else None
            mb = statistics.median(vb) if vb else None
            fa = f"{ma:.0f} ({min(va):.0f}-{max(va):.0f})" if va else "-"
            fb = f"{mb:.0f} ({min(vb):.0f}-{max(vb):.0f})" if vb else "-"
            ratio = f"{mb / ma:.2f}" if ma and mb is not None else "-"
            print(f"| {k} | {fa} | {fb} | {ratio} |")
        print(f"\nA = {args.a}\nB = {args.b}")
        return 0
    finally:
        sh(args.b, "--home", str(home), "destroy", "prod", "--force", check=False)
        for _ in range(20):
            if sh("zpool", "destroy", "-f", args.pool, check=False).returncode == 0:
                break
            time.sleep(0.5)
        sh("rm", "-rf", str(work), check=False)


if __name__ == "__main__":
    sys.exit(main())
