"""Render benches/run.py's results.json as Markdown (results.md) and a PNG
plot (results.png). Pure presentation: every number comes from the JSON."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional

LABELS = {
    "bpg_app": "betterpg branch (application-consistent)",
    "bpg_fast": "betterpg branch --fast",
    "bpg_stopped": "betterpg branch, stopped source",
    "bpg_docker_app": "betterpg branch, Docker runtime",
    "bpg_docker_fast": "betterpg branch --fast, Docker runtime",
    "bpg_docker_stopped": "betterpg branch, stopped source, Docker",
    "pg18_clone": "PG 18 CREATE DATABASE, FILE_COPY + clone (XFS reflink)",
    "pg15_file_copy": "PG 15 CREATE DATABASE TEMPLATE, FILE_COPY",
    "pg15_wal_log": "PG 15 CREATE DATABASE TEMPLATE, WAL_LOG",
    "pg_basebackup": "pg_basebackup + start",
    "pg_dump_restore": "pg_dump -Fc \\| pg_restore",
}
ORDER = list(LABELS)
STEPS = ["reserve", "prepare", "space", "backup_start", "checkpoint", "snapshot", "backup_stop", "clone", "chown",
         "prepare_clone", "wal_copy", "private_start", "isolate_sql", "private_stop", "reserve_wait", "start",
         "catalog", "info"]
# Since the branch's private first start (the isolation step), recovery runs
# in `isolate`; the server log's figures are compared with both starts.
STARTS = ("private_start", "isolate_sql", "private_stop", "reserve_wait", "start")


def starts_ms(r: Dict[str, Any]) -> float:
    """Both starts of a branch: the private one (`isolate`) and the real one."""
    return sum(r.get("timings", {}).get(s, 0.0) for s in STARTS)
BASELINE = "bpg_app"


def ok_runs(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in runs if "seconds" in r]


def med(xs: List[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def fmt_s(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x < 10:
        return f"{x:.2f}"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_bytes(b: Optional[float]) -> str:
    if b is None:
        return "-"
    for unit, div in [("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)]:
        if abs(b) >= div:
            return f"{b / div:.1f} {unit}"
    return f"{int(b)} B"


def method_stats(data: Dict[str, Any]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """size -> method -> {median, min, max, n, errors}"""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for size, res in data.get("sizes", {}).items():
        for m, runs in res.get("copy", {}).items():
            good = [r["seconds"] for r in ok_runs(runs)]
            out.setdefault(size, {})[m] = {
                "median": med(good),
                "min": min(good) if good else None,
                "max": max(good) if good else None,
                "n": len(good),
                "errors": len(runs) - len(good),
            }
    return out


def headline(data: Dict[str, Any]) -> List[str]:
    st = method_stats(data)
    sizes = [z for z in data.get("sizes", {}) if z in st]
    if not sizes:
        return ["(no copy measurements)"]
    methods = [m for m in ORDER if any(m in st[z] for z in sizes)]
    hdr = ["method"]
    for z in sizes:
        res = data["sizes"][z]
        hdr.append(f"{z} (`-s {res['scale']}`, {fmt_bytes(res.get('source_bytes'))}): s, ×betterpg")
    if len(sizes) > 1:
        hdr.append(f"scaling t({sizes[-1]})/t({sizes[0]})")
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for m in methods:
        row = [LABELS[m]]
        for z in sizes:
            s = st[z].get(m)
            base = st[z].get(BASELINE, {}).get("median")
            if not s or s["median"] is None:
                row.append("failed" if s and s["errors"] else "-")
                continue
            ratio = f"×{s['median'] / base:.1f}" if base else ""
            spread = f" ({fmt_s(s['min'])}–{fmt_s(s['max'])})" if s["n"] > 1 else ""
            bold = "**" if m == BASELINE else ""
            row.append(f"{bold}{fmt_s(s['median'])}{bold}{spread} {ratio}")
        if len(sizes) > 1:
            a = st[sizes[0]].get(m, {}).get("median")
            b = st[sizes[-1]].get(m, {}).get("median")
            row.append(f"{b / a:.1f}" if a and b else "-")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def breakdown(data: Dict[str, Any]) -> List[str]:
    lines = ["| size | method | " + " | ".join(STEPS) + " | sum of steps | bpg total | wall (incl. process start + query) |",
             "|" + "---|" * (len(STEPS) + 5)]
    for size, res in data.get("sizes", {}).items():
        for m in ORDER:
            runs = ok_runs(res.get("copy", {}).get(m, []))
            if not runs or "timings" not in runs[0]:
                continue
            cells = []
            total = 0.0
            for step in STEPS:
                vals = [r["timings"][step] for r in runs if step in r.get("timings", {})]
                v = med(vals)
                total += v or 0.0
                cells.append(f"{v:.0f}" if v is not None else "")
            bt = med([r["bpg_total_ms"] for r in runs])
            wall = med([r["seconds"] * 1000 for r in runs])
            lines.append(f"| {size} | {LABELS[m]} | " + " | ".join(cells) + f" | {total:.0f} | {bt:.0f} | {wall:.0f} |")
    return lines


SERVER = ["boot", "sync_data_dir", "redo", "end_of_recovery_checkpoint", "server_total"]


def start_split(data: Dict[str, Any]) -> List[str]:
    """The `start` step split with the branch server's own log timestamps."""
    lines = ["| size | method | isolate + start steps | " + " | ".join(SERVER)
             + " | isolate + start − server_total (two pg_ctl runs, polling, connect, isolation SQL, stop) |",
             "|" + "---|" * (len(SERVER) + 4)]
    any_row = False
    for size, res in data.get("sizes", {}).items():
        for m in ORDER:
            runs = [r for r in ok_runs(res.get("copy", {}).get(m, [])) if r.get("server_ms")]
            if not runs:
                continue
            any_row = True
            cells = []
            for k in SERVER:
                v = med([r["server_ms"][k] for r in runs if k in r["server_ms"]])
                cells.append(f"{v:.0f}" if v is not None else "")
            st = med([starts_ms(r) for r in runs])
            outside = med([starts_ms(r) - r["server_ms"]["server_total"]
                           for r in runs if "server_total" in r["server_ms"]])
            lines.append(f"| {size} | {LABELS[m]} | {st:.0f} | " + " | ".join(cells)
                         + f" | {outside:.0f} |" if outside is not None else " | |")
    return lines if any_row else ["(no server logs parsed)"]


def start_sync_table(data: Dict[str, Any]) -> List[str]:
    ex = data.get("start_sync")
    if not ex:
        return ["(not measured in this run)"]
    lines = [
        f"Source {ex.get('size')}; `ALTER SYSTEM SET recovery_init_sync_method` on the source (the snapshot "
        "carries it to the branch), then branches timed as above; runs interleaved; medians.",
        "",
        "| mode | recovery_init_sync_method | runs | wall s | `isolate` + `start` ms | sync_data_dir ms | server_total ms | bpg total ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in ["app", "fast"]:
        for method in ["fsync", "syncfs"]:
            runs = [r for r in ex["runs"] if r.get("method") == method and r.get("mode") == mode]
            if not runs:
                continue
            sm = [r.get("server_ms", {}) for r in runs]
            lines.append(
                f"| {'application-consistent' if mode == 'app' else '--fast'} | {method}"
                f"{' (default)' if method == 'fsync' else ''} | {len(runs)} | {fmt_s(med([r['seconds'] for r in runs]))} | "
                f"{med([starts_ms(r) for r in runs]):.0f} | "
                f"{med([x.get('sync_data_dir', 0.0) for x in sm]):.0f} | "
                f"{med([x.get('server_total', 0.0) for x in sm]):.0f} | "
                f"{med([r['bpg_total_ms'] for r in runs]):.0f} |"
            )
    return lines


def _f(x: Optional[float], d: int = 1) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _steps(runs: List[Dict[str, Any]], keys: List[str]) -> str:
    """Median ms of the named steps of a list of branch reports."""
    parts = []
    for k in keys:
        m = med([r["timings"][k] for r in runs if k in r.get("timings", {})])
        if m is not None:
            parts.append(f"{k} {m:.0f}")
    wal = med([r["wal_bytes_copied"] for r in runs if r.get("wal_bytes_copied") is not None])
    if wal:
        parts.append(f"(WAL copied {wal / 2**20:.0f} MiB)")
    return ", ".join(parts) or "-"


def _checkpoints(runs: List[Dict[str, Any]]) -> str:
    """How often --fast's adaptive checkpoint was done / skipped."""
    cps = [r.get("checkpoint") for r in runs if r.get("checkpoint")]
    if not cps:
        return "-"
    done = sum(1 for c in cps if c.get("done"))
    return f"{done} done, {len(cps) - done} skipped"


LOAD_STEPS = ["prepare", "checkpoint", "backup_start", "snapshot", "backup_stop", "clone", "wal_copy", "private_start",
              "start"]


def load_table(data: Dict[str, Any]) -> List[str]:
    ld = data.get("load")
    if not ld:
        return ["(not measured)"]
    lines = [
        f"pgbench on the betterpg source ({ld['script']}, {ld['clients']} clients, {ld['seconds']} s per phase, "
        f"a branch (then its destroy) every {ld['branch_every_s']:g} s in the branch phases; in the CHECKPOINT "
        f"phase the source's own `CHECKPOINT` at the same pace):",
        "",
    ]
    rep = ld.get("replica")
    if rep:
        lines += [f"Replica `{rep['name']}`: `bpg follow` from the source ({rep.get('upstream')}, slot "
                  f"{rep.get('slot')}), base backup {fmt_bytes(rep.get('backup_bytes'))} in "
                  f"{rep['follow_seconds']:.1f} s; it streams and replays the load in every phase, baselines "
                  f"included.", ""]
    lines += [
        "| phase | TPS | latency avg ms | p50 ms | p99 ms | max ms | branches taken | wall s (median, min–max) | "
        "median step ms | --fast checkpoint |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, ph in enumerate(ld["phases"]):
        bw = [b["seconds"] for b in ph["branches"]]
        wall = "-" if not bw else f"{fmt_s(med(bw))} ({min(bw):.2f}–{max(bw):.2f})"
        steps = _steps(ph["branches"], LOAD_STEPS) if ph.get("mode") not in (None, "checkpoint") else "-"
        lines.append(
            f"| {i + 1}. {ph['phase']} | {_f(ph['tps'], 0)} | {_f(ph['latency_avg_ms'])} | {_f(ph['latency_p50_ms'])} | "
            f"{_f(ph['latency_p99_ms'])} | {_f(ph['latency_max_ms'], 0)} | {len(ph['branches'])} | {wall} | {steps} | "
            f"{_checkpoints(ph['branches']) if ph.get('mode') == 'fast' else '-'} |"
        )
    idle = ld.get("idle") or []
    if idle:
        lines += ["", "Idle references (no load, the source `CHECKPOINT`ed first, untimed; taken before every baseline):",
                  "", "| measure | n | wall s (median, min–max) | median step ms |", "|---|---|---|---|"]
        for m in ["fast", "app", "replica", "checkpoint"]:
            rs = [r for r in idle if r.get("mode") == m]
            if rs:
                xs = [r["seconds"] for r in rs]
                lines.append(f"| {LOAD_LABEL[m]} | {len(rs)} | {fmt_s(med(xs))} ({min(xs):.2f}–{max(xs):.2f}) | "
                             f"{_steps(rs, LOAD_STEPS) if m != 'checkpoint' else '-'} |")
    lines += ["", *load_goals(ld)]
    return lines


LOAD_LABEL = {"fast": "`--fast` branch of the source", "app": "application-consistent branch of the source",
              "replica": "branch of the replica", "checkpoint": "the source's own `CHECKPOINT`"}


def load_goals(ld: Dict[str, Any]) -> List[str]:
    """The goals of issues 13 and 16 as ratios within this run."""
    phases = ld["phases"]
    base = [p for p in phases if p["mode"] is None and p["tps"]]
    if not base:
        return []

    def under(mode: str) -> List[float]:
        return [b["seconds"] for p in phases if p["mode"] == mode for b in p["branches"]]

    def idle(mode: str) -> List[float]:
        return [r["seconds"] for r in ld.get("idle") or [] if r.get("mode") == mode]

    tps_lo, tps_hi = min(p["tps"] for p in base), max(p["tps"] for p in base)
    p99_lo = min(p["latency_p99_ms"] or 0 for p in base)
    p99_hi = max(p["latency_p99_ms"] or 0 for p in base)
    lines = [f"Goals (computed from this run; noise = the spread of the {len(base)} baselines: TPS "
             f"{tps_lo:.0f}–{tps_hi:.0f}, p99 {p99_lo:.1f}–{p99_hi:.1f} ms; a branch phase is within noise "
             f"when its TPS is at least the lowest baseline's and its p99 at most the highest baseline's):", "",
             "| goal | figure | met |", "|---|---|---|"]

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    for mode in ["replica", "app", "fast"]:
        ps = [p for p in phases if p["mode"] == mode and p["tps"]]
        if not ps:
            continue
        for p in ps:
            ok = p["tps"] >= tps_lo and (p["latency_p99_ms"] or 0) <= p99_hi
            i = phases.index(p) + 1
            lines.append(f"| source TPS and p99 within noise, {LOAD_LABEL[mode]} every {ld['branch_every_s']:g} s "
                         f"(phase {i}) | TPS {p['tps']:.0f}, p99 {_f(p['latency_p99_ms'])} ms | {yes(ok)} |")
    rb = under("replica")
    if rb:
        ok = max(rb) <= 1.5 and (max(rb) - min(rb)) <= 0.5
        lines.append(f"| branch of the replica under load: flat, about 1 s | median {fmt_s(med(rb))} s, "
                     f"{min(rb):.2f}–{max(rb):.2f} s over {len(rb)} | {yes(ok)} |")
    fb, fi = under("fast"), idle("fast")
    if fb and fi:
        r = med(fb) / med(fi)
        lines.append(f"| `--fast` under load within 1.5x of `--fast` idle | {fmt_s(med(fb))} s / "
                     f"{fmt_s(med(fi))} s = {r:.2f}x | {yes(r <= 1.5)} |")
    ab, cb = under("app"), under("checkpoint")
    if ab and cb:
        lim = med(cb) + 0.5
        lines.append(f"| application-consistent under load within the source's own `CHECKPOINT` + 0.5 s | "
                     f"{fmt_s(med(ab))} s vs {fmt_s(med(cb))} s + 0.5 s = {lim:.2f} s | {yes(med(ab) <= lim)} |")
    return lines


def space_table(data: Dict[str, Any]) -> List[str]:
    sp = data.get("space")
    if not sp:
        return ["(not measured)"]
    lines = [
        f"Source size {sp.get('size')}. `used` is the branch dataset's ZFS `used` (the space it holds alone), "
        "`refer` what it shows (shared with the source).",
        "",
        "| branch | fresh: used | rows updated (≈ heap MB) | WAL written | used after updates | refer |",
        "|---|---|---|---|---|---|",
    ]
    for k, label in [("app", "application-consistent"), ("fast", "--fast")]:
        v = sp.get(k)
        if not v:
            continue
        lines.append(
            f"| {label} | {fmt_bytes(v['fresh_used_bytes'])} | {v['rows_updated']} (≈ {v['updated_heap_mb']:.0f} MB) | "
            f"{fmt_bytes(v['wal_bytes'])} | {fmt_bytes(v['after_used_bytes'])} | {fmt_bytes(v['referenced_bytes'])} |"
        )
    return lines


PYTEST_LABELS = [
    ("betterpg", "betterpg plugin (`betterpg_conn`, warm pool of 2, recycled by rewind: the default)"),
    ("betterpg_norecycle", "betterpg plugin, pool of 2 without recycling (`--betterpg-no-recycle`)"),
    ("betterpg_pool4", "betterpg plugin, `--betterpg-pool-size=4 --betterpg-no-recycle`"),
    ("betterpg_nopool", "betterpg plugin, `--betterpg-pool-size=0`"),
    ("betterpg_sync", "betterpg plugin, no pool, `--betterpg-sync-destroy`"),
    ("pytest_postgresql", "pytest-postgresql (`postgresql_noproc` + template database)"),
    ("betterpg_xdist", "betterpg plugin (default), `-n 2`"),
    ("betterpg_norecycle_xdist", "betterpg plugin, `--betterpg-no-recycle`, `-n 2`"),
    ("pytest_postgresql_xdist", "pytest-postgresql, `-n 2`"),
]


def pytest_table(data: Dict[str, Any]) -> List[str]:
    by_size = data.get("pytest_by_size")
    if by_size:
        lines: List[str] = []
        for size, pt in by_size.items():
            lines += [f"### {size}", "", *pytest_size_table(pt), ""]
        return lines
    return pytest_size_table(data.get("pytest"))


def pytest_size_table(pt: Any) -> List[str]:
    if not pt:
        return ["(not measured)"]
    lines = [
        f"{pt['tests']} tests, each with a private database of the {pt['size']} pgbench data set "
        "(per test = setup + call + teardown as pytest reports them; the session fixture's own setup is shown apart).",
        "",
        "| fixture | per test, median s | min–max s | suite wall s | session setup s |",
        "|---|---|---|---|---|",
    ]
    for k, label in PYTEST_LABELS:
        v = pt.get(k)
        if not v:
            continue
        per = v["per_test_s"]
        lines.append(
            f"| {label} | {fmt_s(v['median_per_test_s'])} | {fmt_s(min(per))}–{fmt_s(max(per))} | "
            f"{fmt_s(v['suite_wall_s'])} | {fmt_s(v['session_setup_s'])} |"
        )
    b, p = pt.get("betterpg"), pt.get("pytest_postgresql")
    if b and p and b["median_per_test_s"]:
        lines += ["", f"pytest-postgresql per test / betterpg per test: ×{p['median_per_test_s'] / b['median_per_test_s']:.1f}"]
    return lines


def environment(data: Dict[str, Any]) -> List[str]:
    e = data.get("environment", {})
    mem = e.get("memory_bytes") or 0
    mods = e.get("git_crates_modified") or []
    return [
        f"- date: {e.get('date_utc')} – {e.get('date_utc_end', '?')} (harness {e.get('harness_seconds', 0):.0f} s, mode {e.get('mode')})",
        f"- machine: {e.get('nproc')} CPUs ({e.get('cpu')}), {mem / 2**30:.1f} GiB RAM, kernel {e.get('kernel')}; "
        f"shared with other jobs: loadavg {e.get('loadavg_start')} at start, {e.get('loadavg_end')} at end",
        f"- betterpg: {e.get('bpg')} at {str(e.get('git_head'))[:12]}"
        + (f" (+ uncommitted changes in {len(mods)} crate files)" if mods else ""),
        f"- {e.get('postgresql_15')}; {e.get('postgresql_18')}; {e.get('zfs')}; xfsprogs {e.get('xfsprogs')}; "
        f"Docker server {e.get('docker_server')}",
        f"- Python {e.get('python')}, psycopg {e.get('psycopg')}, pytest {e.get('pytest')}, "
        f"pytest-postgresql {e.get('pytest_postgresql')}, matplotlib {e.get('matplotlib')}",
    ]


def generation(data: Dict[str, Any]) -> List[str]:
    lines = ["| size | scale | database size | load time s: " + " / ".join(
        ["betterpg native (zfs-fuse)", "betterpg Docker", "PG 15 (ext4)", "PG 18 (XFS)"]) + " | loadavg before → after |",
             "|---|---|---|---|---|"]
    for size, res in data.get("sizes", {}).items():
        if "skipped" in res:
            lines.append(f"| {size} | {res['scale']} | skipped: {res['skipped']} | | |")
            continue
        g = res.get("generate_seconds", {})
        gs = " / ".join(fmt_s(g.get(k)) for k in ["betterpg_native", "betterpg_docker", "pg15_ext4", "pg18_xfs"])
        lines.append(f"| {size} | {res['scale']} | {fmt_bytes(res.get('source_bytes'))} | {gs} | "
                     f"{res.get('loadavg_before')} → {res.get('loadavg_after')} |")
    return lines


def markdown(data: Dict[str, Any]) -> str:
    e = data.get("environment", {})
    cmd = "scripts/bench.sh --short" if e.get("mode") == "short" else "scripts/bench.sh"
    parts = [
        "# betterpg benchmark results",
        "",
        f"Reproduce: `{cmd}` (writes results.json, results.md, results.png). Generated by benches/report.py.",
        "",
        "## Time until the copy answers a query",
        "",
        "Wall seconds from the start of the copy until a new connection to it answered "
        "`SELECT count(*) FROM pgbench_branches`; median (min–max) over the repeats, and the ratio to "
        "betterpg's application-consistent branch of the same source in the same run. Sources idle and "
        "checkpointed before every measurement; repeats interleaved across methods.",
        "",
        *headline(data),
        "",
        "## Where a betterpg branch's time goes (median ms per step)",
        "",
        *breakdown(data),
        "",
        "A branch starts twice: privately (`isolate`: recovery, its own password, subscriptions detached, "
        "then a stop) and for real (`start`). Both together split with the new server's own log of its first "
        "start (ms, median): boot = postmaster up until the startup process logs; sync_data_dir = PostgreSQL's "
        "sync of the data directory before crash or backup recovery; redo; the synchronous end-of-recovery "
        "checkpoint; server_total = first log line to the first \"ready to accept connections\"; the last column "
        "is everything else in both steps (two pg_ctl runs and their polling, connections, the isolation SQL, "
        "the stop and the second start).",
        "",
        *start_split(data),
        "",
        "### Experiment: the fsync of the data directory at a recovering start",
        "",
        *start_sync_table(data),
        "",
        "## Cost to the source",
        "",
        *load_table(data),
        "",
        "## Space",
        "",
        *space_table(data),
        "",
        "## Per-test cost in pytest",
        "",
        *pytest_table(data),
        "",
        "## Data sets",
        "",
        *generation(data),
        "",
        "## Machine and versions",
        "",
        *environment(data),
    ]
    if data.get("failures"):
        parts += ["", "## Failures", ""] + [f"- {f.splitlines()[0]}" for f in data["failures"]]
    return "\n".join(parts) + "\n"


def plot(data: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = method_stats(data)
    sizes = [z for z in data.get("sizes", {}) if z in st]
    fig, axes = plt.subplots(1, 3, figsize=(19, 6.2), gridspec_kw={"width_ratios": [1.35, 1, 0.8]})
    ax = axes[0]
    xb = {z: data["sizes"][z].get("source_bytes") or 1 for z in sizes}
    for m in ORDER:
        pts = [(xb[z] / 2**20, st[z][m]) for z in sizes if m in st[z] and st[z][m]["median"] is not None]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [p[1]["median"] for p in pts]
        lo = [p[1]["median"] - p[1]["min"] for p in pts]
        hi = [p[1]["max"] - p[1]["median"] for p in pts]
        style = "-" if m.startswith("bpg") else "--"
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o" + style, capsize=3, label=LABELS[m].replace("\\|", "|"),
                    linewidth=2.5 if m == BASELINE else 1.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("source database size (MiB, pgbench data)")
    ax.set_ylabel("seconds until the copy answers a query (median, min–max)")
    ax.set_title("Time to a queryable copy")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    labels: List[str] = []
    # `start` is split with the server's own log: the fsync of the data
    # directory, the rest of the server's start, and what happens outside it.
    parts = [s for s in STEPS if s not in STARTS] + ["start: sync_data_dir", "start: rest of server", "start: outside server",
                                                  "bpg total − steps (catalog, status)"]
    bars: Dict[str, List[float]] = {s: [] for s in parts}
    for z in sizes:
        for m in ["bpg_app", "bpg_fast", "bpg_stopped"]:
            runs = ok_runs(data["sizes"][z].get("copy", {}).get(m, []))
            if not runs:
                continue
            labels.append(f"{z}\n{m[4:]}")
            for s in STEPS:
                if s not in STARTS:
                    bars[s].append(med([r["timings"].get(s, 0.0) for r in runs]) or 0.0)
            sm = [r.get("server_ms", {}) for r in runs]
            sync = med([x.get("sync_data_dir", 0.0) for x in sm]) or 0.0
            total = med([x.get("server_total", 0.0) for x in sm]) or 0.0
            start = med([starts_ms(r) for r in runs]) or 0.0
            bars["start: sync_data_dir"].append(sync)
            bars["start: rest of server"].append(max(0.0, total - sync))
            bars["start: outside server"].append(max(0.0, start - total))
            steps_sum = med([sum(r["timings"].values()) for r in runs]) or 0.0
            bpg_total = med([r["bpg_total_ms"] for r in runs]) or 0.0
            bars["bpg total − steps (catalog, status)"].append(max(0.0, bpg_total - steps_sum))
    bottoms = [0.0] * len(labels)
    xs = list(range(len(labels)))
    cmap = plt.get_cmap("tab20")
    for i, s in enumerate(parts):
        if not any(bars[s]):
            continue
        ax.bar(xs, bars[s], bottom=bottoms, label=s, color=cmap(i))
        bottoms = [b + v for b, v in zip(bottoms, bars[s])]
    if bottoms:
        ax.set_ylim(0, max(bottoms) * 1.6)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels)
    ax.set_ylabel("ms (median per step)")
    ax.set_title("betterpg branch: time per step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.tick_params(axis="x", labelsize=7)

    ax = axes[2]
    ld = data.get("load")
    if ld:
        names = [f"{i + 1}. " + p["phase"].replace(" branches", "\nbranches") for i, p in enumerate(ld["phases"])]
        tps = [p["tps"] or 0 for p in ld["phases"]]
        xs = list(range(len(names)))
        colors = [{None: "tab:gray", "replica": "tab:green", "checkpoint": "tab:olive"}.get(p["mode"], "tab:blue")
                  for p in ld["phases"]]
        ax.bar(xs, tps, color=colors)
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel("pgbench TPS on the source", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(xs, [p["latency_p99_ms"] or 0 for p in ld["phases"]], "o", color="tab:red")
        ax2.set_ylabel("p99 latency ms", color="tab:red")
        ax.set_title(f"Cost to the source (branch every {ld['branch_every_s']:g} s)")
        ax.tick_params(axis="x", labelsize=7)
    else:
        ax.set_axis_off()
    e = data.get("environment", {})
    fig.suptitle(f"betterpg benchmarks, {e.get('date_utc', '')[:10]}, {e.get('nproc')} CPUs, "
                 f"loadavg {e.get('loadavg_start')} → {e.get('loadavg_end')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(data: Dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(data))
    plot(data, out / "results.png")
