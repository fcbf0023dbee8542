#!/usr/bin/env python3
"""Many live branches of one source (issue 16, item 4).

Makes N branches (default 100) of one pgbench source (default scale 70,
~1 GB) and measures, as the count grows:

* the wall time of each `bpg branch` (the first against the Nth) and the
  steps of its report (medians of the first and last ten, and of the last
  ten before the probe stopped: what grows with the count),
* `bpg --json status` with every entry (median of 3 calls),
* memory: the real PSS of every branch's servers (postmaster and all its
  children, /proc/PID/smaps_rollup, so touched shared buffers are counted
  once, shared among the processes that touched them) and MemAvailable,
* pool space (zpool ALLOC) and the space each branch uses.

Then, unless --no-probe, it keeps branching (up to --probe-max) to find what
breaks first on this machine, and records the error the failing branch gave.

Nothing here asserts on time. Writes a JSON file (--out) after every step.
Run it through scripts/bench.sh --many (which sets up and cleans up), or
directly as root with a bpg binary:

    benches/many.py --bpg target/release/bpg --work /tmp/betterpg-test/bpgmany \\
        --pool bpgmany --ports 59500-59899 --count 100 --scale 70 --out benches/results/many.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


class BenchError(Exception):
    pass


def run(cmd: List[Any], *, check: bool = True, timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run an argument list (never a shell string); capture its output."""
    full = list(map(str, cmd))
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=e, cwd="/")
    if check and p.returncode != 0:
        raise BenchError(f"command failed (exit {p.returncode}): {' '.join(full)}\n"
                         f"{(p.stderr or p.stdout).strip()[-2000:]}")
    return p


def log(msg: str) -> None:
    print(f"[many {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def meminfo() -> Dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0]) * 1024
    return out


def children_map() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def pss_of_tree(pid: int, kids: Dict[int, List[int]]) -> (int, int):
    """PSS bytes of `pid` and its descendants, and how many processes."""
    total, n, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    n += 1
                    break
        except OSError:
            pass
    return total, n


def postmaster_pid(data_dir: Path) -> Optional[int]:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


class Bpg:
    def __init__(self, binary: Path, home: Path):
        self.binary, self.home = binary, home

    def __call__(self, *args: str, json_out: bool = True, check: bool = True,
                 timeout: float = 1800) -> Any:
        cmd = [self.binary, "--home", self.home] + (["--json"] if json_out else []) + list(args)
        p = run(cmd, check=check, timeout=timeout)
        if not json_out or p.returncode != 0:
            return p
        return json.loads(p.stdout)


class Many:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.work = Path(a.work)
        self.pool_file = self.work / f"{a.pool}.img"
        self.bpg = Bpg(Path(a.bpg).resolve(), self.work / "home")
        self.results: Dict[str, Any] = {
            "environment": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": platform.node(), "kernel": platform.release(),
                "nproc": os.cpu_count(), "mem_total_bytes": meminfo()["MemTotal"],
                "loadavg_before": os.getloadavg(),
            },
            "settings": {"count": a.count, "scale": a.scale, "probe_max": a.probe_max,
                         "pool_size": a.pool_size, "ports": a.ports, "branch_args": a.branch_arg},
            "branches": [], "samples": [], "failures": [],
        }

    def save(self) -> None:
        out = Path(self.a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1))
        tmp.replace(out)

    def setup(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.bpg("init", "--pool-file", self.pool_file, "--size", self.a.pool_size,
                 "--pool", self.a.pool, "--ports", self.a.ports, json_out=False)
        info = self.bpg("create", "src")
        u = urllib.parse.urlparse(info["url"])
        env = {"PGHOST": u.hostname, "PGPORT": str(u.port), "PGUSER": u.username,
               "PGPASSWORD": urllib.parse.unquote(u.password or ""), "PGDATABASE": "postgres"}
        log(f"pgbench -i -s {self.a.scale} in the source")
        t = time.perf_counter()
        run([PG15_BIN / "pgbench", "-i", "-q", "-s", self.a.scale, "-I", "dtGvp"], env=env, timeout=7200)
        run([PG15_BIN / "psql", "-Atc", "CHECKPOINT"], env=env)
        self.results["generate_seconds"] = time.perf_counter() - t
        self.results["source"] = {"referenced_bytes": self.status_of("src")["referenced_bytes"]}
        self.save()

    def status_of(self, name: str) -> Dict[str, Any]:
        return self.bpg("status", name)["entries"][0]

    def teardown(self) -> None:
        # Hundreds of branches: an immediate shutdown of every server (the
        # home is thrown away with the pool), not a destroy each.
        pids = []
        p = run(["zfs", "list", "-H", "-r", "-o", "mountpoint", self.a.pool], check=False)
        for mp in p.stdout.split():
            pid = postmaster_pid(Path(mp) / "pgdata")
            if pid:
                try:
                    os.kill(pid, signal.SIGQUIT)
                    pids.append(pid)
                except OSError:
                    pass
        deadline = time.time() + 60
        while pids and time.time() < deadline:
            pids = [q for q in pids if Path(f"/proc/{q}").exists()]
            time.sleep(0.2)
        for _ in range(60):
            p = run(["zpool", "destroy", "-f", self.a.pool], check=False)
            if p.returncode == 0 or "no such pool" in p.stderr:
                break
            time.sleep(0.5)
        self.pool_file.unlink(missing_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def sample(self, n: int) -> Dict[str, Any]:
        """Status time, memory and space with n branches."""
        times = []
        for _ in range(3):
            t = time.perf_counter()
            st = self.bpg("status")
            times.append(time.perf_counter() - t)
        entries = st["entries"]
        kids = children_map()
        pss, procs, servers = 0, 0, 0
        src_pss = 0
        mounts = dict(line.split("\t", 1) for line in run(
            ["zfs", "list", "-H", "-r", "-o", "name,mountpoint", self.a.pool]).stdout.splitlines())
        for e in entries:
            pid = postmaster_pid(Path(mounts.get(e["dataset"], "/nonexistent")) / "pgdata")
            if pid is None:
                continue
            b, k = pss_of_tree(pid, kids)
            if e["kind"] == "branch":
                pss, procs, servers = pss + b, procs + k, servers + 1
            else:
                src_pss = b
        # zfs-fuse's zpool has no -p: the root dataset's exact numbers.
        used, avail = (int(x) for x in run(
            ["zfs", "get", "-Hp", "-o", "value", "used,available", self.a.pool]).stdout.split())
        pool = [used + avail, used, avail]
        m = meminfo()
        s = {
            "branches": n, "status_seconds": times, "status_median_seconds": statistics.median(times),
            "entries": len(entries), "running_branches": servers,
            "branch_pss_bytes": pss, "branch_processes": procs,
            "pss_per_branch_bytes": pss // servers if servers else None,
            "source_pss_bytes": src_pss,
            "mem_available_bytes": m["MemAvailable"], "shmem_bytes": m["Shmem"],
            "pool_size_bytes": int(pool[0]), "pool_allocated_bytes": int(pool[1]),
            "pool_free_bytes": int(pool[2]),
            "branch_used_bytes": sum(e["used_bytes"] for e in entries if e["kind"] == "branch"),
            "loadavg": os.getloadavg(),
        }
        self.results["samples"].append(s)
        self.save()
        log(f"{n} branches: status {s['status_median_seconds']:.3f}s, "
            f"PSS/branch {(s['pss_per_branch_bytes'] or 0) / 2**20:.1f} MiB, "
            f"MemAvailable {m['MemAvailable'] / 2**30:.1f} GiB, pool {int(pool[1]) / 2**30:.2f} GiB")
        return s

    def branch(self, i: int) -> bool:
        name = f"b{i:03d}"
        t = time.perf_counter()
        p = run([self.bpg.binary, "--home", self.bpg.home, "--json", "branch", "src", name,
                 *self.a.branch_arg], check=False, timeout=600)
        took = time.perf_counter() - t
        rec: Dict[str, Any] = {"n": i, "name": name, "seconds": took, "ok": p.returncode == 0}
        if p.returncode == 0:
            # The report's steps (docs/cli-json.md): what grows with the count.
            report = json.loads(p.stdout)
            rec["total_millis"] = report["total_millis"]
            rec["steps"] = {}
            for st in report["timings"]:
                rec["steps"][st["step"]] = rec["steps"].get(st["step"], 0.0) + st["millis"]
        else:
            rec["error"] = (p.stderr or p.stdout).strip()[-3000:]
            rec["exit"] = p.returncode
            self.results["failures"].append(rec)
            log(f"branch {i} failed after {took:.2f}s: {rec['error'][-400:]}")
        self.results["branches"].append(rec)
        return p.returncode == 0

    def step_medians(self, lo: int, hi: int) -> Dict[str, float]:
        """Median millis of each step (and the total) of branches lo..hi that succeeded."""
        recs = [b for b in self.results["branches"] if b["ok"] and lo <= b["n"] <= hi and "steps" in b]
        steps: Dict[str, List[float]] = {"total": [b["total_millis"] for b in recs]}
        for b in recs:
            for k, v in b["steps"].items():
                steps.setdefault(k, []).append(v)
        return {k: round(statistics.median(v), 1) for k, v in steps.items() if v}

    def go(self) -> int:
        self.setup()
        self.sample(0)
        every = max(1, self.a.count // 10)
        for i in range(1, self.a.count + 1):
            if not self.branch(i):
                self.results["limit"] = {"branches": i - 1, "error": self.results["failures"][-1]["error"]}
                self.sample(i - 1)
                return 1
            if i % every == 0 or i == 1:
                self.sample(i)
        ok = [b["seconds"] for b in self.results["branches"] if b["ok"]]
        self.results["summary"] = {
            "first_seconds": ok[0], "last_seconds": ok[-1],
            "first10_median": statistics.median(ok[:10]), "last10_median": statistics.median(ok[-10:]),
            "ratio_last10_first10": statistics.median(ok[-10:]) / statistics.median(ok[:10]),
            "first10_step_medians_millis": self.step_medians(1, 10),
            "last10_step_medians_millis": self.step_medians(self.a.count - 9, self.a.count),
        }
        self.save()
        sm = self.results["summary"]
        log(f"branch {self.a.count} {sm['last_seconds']:.2f}s vs the first {sm['first_seconds']:.2f}s; "
            f"medians of the last ten {sm['last10_median']:.2f}s, of the first ten {sm['first10_median']:.2f}s "
            f"({sm['ratio_last10_first10']:.2f}x)")
        if self.a.probe_max > self.a.count:
            i = self.a.count
            while i < self.a.probe_max:
                i += 1
                if not self.branch(i):
                    self.results["limit"] = {"branches": i - 1, "error": self.results["failures"][-1]["error"]}
                    self.results["failures"][-1]["probe"] = True
                    break
                if i % 50 == 0:
                    self.sample(i)
            else:
                self.results["limit"] = {"branches": None, "note": f"no failure up to {self.a.probe_max}"}
            last = self.results["limit"]["branches"] or i
            self.results["probe_last10_step_medians_millis"] = self.step_medians(last - 9, last)
            self.sample(last)
        self.results["environment"]["loadavg_after"] = os.getloadavg()
        self.save()
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpg", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pool", default="bpgmany")
    ap.add_argument("--pool-size", default="24G")
    ap.add_argument("--ports", default="59500-59899")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ~ 1 GB)")
    ap.add_argument("--probe-max", type=int, default=0,
                    help="after --count, keep branching up to this many to find what breaks first")
    ap.add_argument("--branch-arg", action="append", default=[], help="extra argument to bpg branch (repeat)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", action="store_true", help="leave the pool and servers (debugging)")
    a = ap.parse_args()
    # SIGTERM ends the run like Ctrl-C: recorded, then cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    m = Many(a)
    rc = 1
    try:
        rc = m.go()
    except (Exception, KeyboardInterrupt) as e:  # recorded, then cleaned up
        m.results["failures"].append({"error": repr(e)})
        m.save()
        log(f"failed: {e}" if str(e) else f"stopped ({type(e).__name__}: SIGTERM or Ctrl-C); cleaning up")
    finally:
        if not a.keep:
            m.teardown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
