#!/usr/bin/env python3
"""betterpg benchmarks: time until a copy of a database answers a query,
betterpg against every other way to copy a PostgreSQL database, in one run
on one machine.

Run it through scripts/bench.sh (which installs what is needed, builds bpg
and cleans up even when killed). Direct use:

    benches/run.py [--short] [--out DIR] [--sizes 100M,1G,4G] ...
    benches/run.py report --out DIR       # re-render table + plot from DIR/results.json

What is measured (see docs/benchmarks.md for how to read it):

* copy: for each source size (pgbench data, scales 7/70/270 ~ 100 MB/1 GB/4 GB)
  and each method, the wall time from "start making the copy" until a new
  connection to the copy has answered ``SELECT count(*) FROM pgbench_branches``.
  Methods: betterpg application-consistent, --fast and stopped-source branches
  (native runtime and Docker runtime), PostgreSQL 15 CREATE DATABASE ...
  TEMPLATE with STRATEGY WAL_LOG and FILE_COPY, PostgreSQL 18 CREATE DATABASE
  ... STRATEGY FILE_COPY with file_copy_method = clone on reflink XFS,
  pg_basebackup + start, pg_dump | pg_restore. Repeats are interleaved
  (round robin over methods) so machine noise hits every method alike.
* source cost (the load section): pgbench TPS and latency on a betterpg
  source (the primary) with no branches, with an application-consistent
  branch every few seconds, with a --fast branch every few seconds, with a
  branch of a replica of it (``bpg follow`` from the same source, on this
  machine) every few seconds, and with the source's own ``CHECKPOINT``
  every few seconds (the floor of an application-consistent branch), the
  cycle repeated and a baseline between and after (drift check). Idle
  references (the same branches with no load, the source checkpointed) are
  taken before every baseline, so ``--fast`` under load and idle compare
  within the run.
* space: pool space of a fresh branch, and after updating N MB of rows in it.
* breakdown: betterpg's per-step timings of every branch above.
* pytest: per-test wall time of a suite whose every test gets a private
  database of the pgbench data set: betterpg's pytest plugin against
  pytest-postgresql's template databases.

Every result carries the machine (nproc, memory, loadavg before/after each
section), versions and the date. Nothing here asserts on time. The process
exits non-zero when any measurement failed (a broken harness or a broken
method must be seen in CI); sizes that do not fit on the disk are skipped
and recorded as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
BENCHES = REPO / "benches"
sys.path.insert(0, str(BENCHES))

import report  # noqa: E402  (benches/report.py)

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
QUERY = "SELECT count(*) FROM pgbench_branches"
SEED = 42
# Rows of pgbench_accounts per MB of heap (8 kB pages hold 61 rows).
ACCOUNT_ROWS_PER_MB = 61 * 128

SIZES = {"100M": 7, "1G": 70, "4G": 270}

# Ports (the brief: 59000-59499 for this harness; betterpg allocates from
# 59000-59399, the comparison servers use 59400-59499).
BPG_PORTS = "59000-59399"
PORT_PG15 = 59400
PORT_PG18 = 59401
PORT_BASEBACKUP = 59402
PORT_SPARE = range(59403, 59500)  # for a server whose port was taken


def port_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound now (as PostgreSQL binds it,
    with SO_REUSEADDR)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spare_port(exclude: set) -> int:
    for p in PORT_SPARE:
        if p not in exclude and port_free(p):
            return p
    raise BenchError(f"no free port in {PORT_SPARE.start}-{PORT_SPARE.stop - 1}: what listens there?")

#: Method keys in table order; label, family.
METHODS = [
    ("bpg_app", "betterpg branch (application-consistent)", "betterpg"),
    ("bpg_fast", "betterpg branch --fast", "betterpg"),
    ("bpg_stopped", "betterpg branch of a stopped source", "betterpg"),
    ("bpg_docker_app", "betterpg branch, Docker runtime", "betterpg"),
    ("bpg_docker_fast", "betterpg branch --fast, Docker runtime", "betterpg"),
    ("bpg_docker_stopped", "betterpg branch of a stopped source, Docker runtime", "betterpg"),
    ("pg18_clone", "PG 18 CREATE DATABASE FILE_COPY, file_copy_method=clone (XFS reflink)", "other"),
    ("pg15_file_copy", "PG 15 CREATE DATABASE TEMPLATE, STRATEGY FILE_COPY", "other"),
    ("pg15_wal_log", "PG 15 CREATE DATABASE TEMPLATE, STRATEGY WAL_LOG", "other"),
    ("pg_basebackup", "pg_basebackup + start (PG 15)", "other"),
    ("pg_dump_restore", "pg_dump -Fc | pg_restore into a new database (PG 15)", "other"),
]
METHOD_LABEL = {k: v for k, v, _ in METHODS}
BPG_METHODS = [k for k, _, f in METHODS if f == "betterpg"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A measurement or setup step failed (with what to do)."""


class ZfsRestarted(BenchError):
    """The zfs-fuse daemon went away mid-run: every server on the pool died."""


def zfs_fuse_pid() -> Optional[int]:
    try:
        return int(Path("/run/zfs-fuse.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------
# processes


def run(
    cmd: List[str],
    *,
    env: Optional[Dict[str, str]] = None,
    as_postgres: bool = False,
    check: bool = True,
    timeout: Optional[float] = None,
    cwd: Optional[str] = None,
) -> subprocess.CompletedProcess:
    """Run a command (an argument list, never a shell string); capture output."""
    full = list(map(str, cmd))
    if as_postgres and os.geteuid() == 0:
        full = ["runuser", "-u", "postgres", "--"] + full
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(
        full, env=e, capture_output=True, text=True, timeout=timeout, cwd=cwd or "/"
    )
    if check and p.returncode != 0:
        raise BenchError(
            f"command failed (exit {p.returncode}): {' '.join(full)}\n"
            f"{(p.stderr or p.stdout).strip()[-2000:]}"
        )
    return p


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \S+ \[\d+\] \w+:\s+(.*)$")


def server_phases(log_text: str) -> Dict[str, float]:
    """Split a branch server's start, from its own log (ms timestamps), into
    phases: boot (postmaster up -> startup process running), sync_data_dir
    (the fsync of every file PostgreSQL does before crash/backup recovery,
    recovery_init_sync_method), redo, end-of-recovery checkpoint, and
    ready (last step -> "ready to accept connections"); total = first line
    -> ready. Keys are absent when the log has no such lines."""
    import datetime as dt

    ev: List[tuple] = []
    for line in log_text.splitlines():
        m = LOG_TS.match(line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000
            ev.append((t, m.group(2)))
    if not ev:
        return {}

    def first(prefix: str) -> Optional[float]:
        for t, msg in ev:
            if msg.startswith(prefix):
                return t
        return None

    t0 = first("starting PostgreSQL")
    t_int = first("database system was interrupted") or first("database system was shut down")
    t_after_sync = first("starting backup recovery") or first("database system was not properly shut down")
    t_redo0, t_redo1 = first("redo starts"), first("redo done")
    t_ck0, t_ck1 = first("checkpoint starting: end-of-recovery"), first("checkpoint complete")
    t_ready = first("database system is ready to accept connections")
    out: Dict[str, float] = {}
    if t0 is not None and t_int is not None:
        out["boot"] = t_int - t0
    if t_int is not None and t_after_sync is not None and t_int <= t_after_sync:
        out["sync_data_dir"] = t_after_sync - t_int
    if t_redo0 is not None and t_redo1 is not None:
        out["redo"] = t_redo1 - t_redo0
    if t_ck0 is not None and t_ck1 is not None:
        out["end_of_recovery_checkpoint"] = t_ck1 - t_ck0
    if t0 is not None and t_ready is not None:
        out["server_total"] = t_ready - t0
    return out


def loadavg() -> List[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# ---------------------------------------------------------------------------
# connections


def connect(params: Dict[str, Any]):
    import psycopg

    return psycopg.connect(**params, connect_timeout=30, autocommit=True)


def query_copy(params: Dict[str, Any]) -> int:
    """Open a new connection to a copy and run the check query."""
    with connect(params) as c:
        return c.execute(QUERY).fetchone()[0]


def wait_query(params: Dict[str, Any], timeout: float = 120.0) -> int:
    """Like query_copy, retrying while the server is not up yet."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            return query_copy(params)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def url_params(url: str) -> Dict[str, Any]:
    u = urllib.parse.urlparse(url)
    return {
        "host": u.hostname,
        "port": u.port,
        "user": urllib.parse.unquote(u.username or "postgres"),
        "password": urllib.parse.unquote(u.password or ""),
        "dbname": (u.path or "/postgres").lstrip("/") or "postgres",
    }


def libpq_env(params: Dict[str, Any]) -> Dict[str, str]:
    return {
        "PGHOST": str(params["host"]),
        "PGPORT": str(params["port"]),
        "PGUSER": str(params["user"]),
        "PGPASSWORD": str(params["password"]),
        "PGDATABASE": str(params["dbname"]),
    }


# ---------------------------------------------------------------------------
# plain PostgreSQL clusters for the comparison methods


class Cluster:
    """A PostgreSQL cluster run as `postgres` with pg_ctl, TCP + scram only."""

    def __init__(self, bin_dir: Path, data_dir: Path, port: int, password: str, extra_conf: str = ""):
        self.bin = bin_dir
        self.data = data_dir
        self.port = port
        self.password = password
        self.extra_conf = extra_conf
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    def params(self, db: str = "postgres") -> Dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "password": self.password, "dbname": db}

    def initdb(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data.parent, "postgres", "postgres")
        pwfile = self.data.parent / f".{self.data.name}.pw"
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        run([self.tool("initdb"), "-D", self.data, "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"], as_postgres=True)
        pwfile.unlink()
        self.write_port_conf(self.data, self.port)

    def write_port_conf(self, data: Path, port: int) -> None:
        conf = (
            f"\n# benches/run.py\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = ''\n{self.extra_conf}\n"
        )
        p = data / "postgresql.auto.conf"
        with open(p, "a") as f:
            f.write(conf)

    def start(self, data: Optional[Path] = None, port: Optional[int] = None) -> int:
        """Start the cluster in `data` (default: this one) on `port` (default:
        this cluster's) and return the port it listens on. Our fixed ports lie
        in Linux's ephemeral range (32768-60999), so an outgoing connection
        can hold one: a server that cannot bind moves to a spare port (the
        same fix as betterpg's own). Errors carry the server log's new lines."""
        main = data is None or data == self.data
        data = data or self.data
        port = port or self.port
        logf = data.parent / f"{data.name}.log"
        for attempt in range(3):
            seen = logf.stat().st_size if logf.exists() else 0
            try:
                run([self.tool("pg_ctl"), "start", "-w", "-s", "-t", "300", "-D", data, "-l", logf],
                    as_postgres=True, cwd=str(data.parent))
                break
            except BenchError as e:
                with open(logf, "rb") as f:
                    f.seek(seen)
                    new_lines = f.read().decode(errors="replace").strip()[-3000:]
                taken = "could not bind" in new_lines or "Address already in use" in new_lines
                if taken and attempt < 2:
                    spare = spare_port(exclude={port, PORT_PG15, PORT_PG18, PORT_BASEBACKUP})
                    log(f"port {port} of {data} was taken before the server bound it; moving to {spare}")
                    self.write_port_conf(data, spare)
                    port = spare
                    continue
                raise BenchError(f"{e}\nserver log {logf}:\n{new_lines}") from None
        if main:
            self.port = port
        return port

    def stop(self, data: Optional[Path] = None, mode: str = "fast") -> None:
        data = data or self.data
        if (data / "postmaster.pid").exists():
            run([self.tool("pg_ctl"), "stop", "-w", "-s", "-m", mode, "-t", "300", "-D", data],
                as_postgres=True, check=False, cwd=str(data.parent))

    def version(self) -> str:
        return run([self.tool("postgres"), "--version"]).stdout.strip()


# ---------------------------------------------------------------------------
# betterpg through the bpg binary


class Bpg:
    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.home = home

    def __call__(self, *args: str, json_out: bool = True, check: bool = True, timeout: float = 1800) -> Any:
        cmd = [self.binary, "--home", self.home] + (["--json"] if json_out else []) + list(args)
        p = run(cmd, check=check, timeout=timeout)
        if not json_out or p.returncode != 0:
            return p
        return json.loads(p.stdout)

    def info(self, name: str) -> Dict[str, Any]:
        return self("status", name)["entries"][0]


# ---------------------------------------------------------------------------
# the run


@dataclass
class Settings:
    short: bool
    out: Path
    sizes: List[str]
    repeats: int
    bpg_repeats: int
    load_size: str
    load_seconds: int
    load_cycles: int
    branch_every: float
    idle_sets: int
    space_mb: int
    pytest_sizes: List[str]
    pytest_tests: int
    pytest_xdist: bool
    docker: bool
    docker_sizes: List[str]
    skip: List[str]
    work: Path
    pool: str
    pool_file: Path
    xfs_file: Path
    bpg: Path
    pg18_bin: Optional[Path]
    python_module: bool


class Bench:
    def __init__(self, s: Settings):
        self.s = s
        self.bpg = Bpg(s.bpg, s.work / "home")
        self.results: Dict[str, Any] = {}
        self.failures: List[str] = []
        self.undo: List[Callable[[], None]] = []
        self.counter = 0
        self.pg15: Optional[Cluster] = None
        self.pg18: Optional[Cluster] = None
        self.password = "bench-" + os.urandom(9).hex()
        self.zfs_pid: Optional[int] = None

    # -- bookkeeping ------------------------------------------------------
    def save(self) -> None:
        self.s.out.mkdir(parents=True, exist_ok=True)
        tmp = self.s.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, sort_keys=False))
        tmp.replace(self.s.out / "results.json")

    def fail(self, what: str, e: BaseException) -> None:
        msg = f"{what}: {e}"
        log("FAILED " + msg)
        self.failures.append(msg)
        self.results.setdefault("failures", []).append(msg)
        self.save()

    def next_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def cleanup(self) -> None:
        while self.undo:
            f = self.undo.pop()
            try:
                f()
            except Exception as e:  # best effort, keep going
                log(f"cleanup step failed: {e}")

    # -- environment ------------------------------------------------------
    def environment(self) -> Dict[str, Any]:
        def cmd_out(cmd: List[str]) -> str:
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                return (p.stdout or p.stderr).strip()
            except Exception as e:
                return f"unavailable ({e})"

        cpu = "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = 0
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
        dirty = cmd_out(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "betterpg-core", "betterpg-cli", "betterpg-ffi", "betterpg-py"])
        env = {
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "hostname": platform.node(),
            "kernel": platform.release(),
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "memory_bytes": mem,
            "loadavg_start": loadavg(),
            "disk_free_bytes": shutil.disk_usage(self.s.work.parent).free,
            "bpg": cmd_out([str(self.s.bpg), "--version"]),
            "git_head": cmd_out(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
            "git_crates_modified": [l.split(None, 1)[1] for l in dirty.splitlines() if len(l.split(None, 1)) == 2],
            "postgresql_15": cmd_out([str(PG15_BIN / "postgres"), "--version"]),
            "postgresql_18": cmd_out([str(self.s.pg18_bin / "postgres"), "--version"]) if self.s.pg18_bin else None,
            "zfs": "zfs-fuse " + cmd_out(["dpkg-query", "-W", "-f=${Version}", "zfs-fuse"]),
            "xfsprogs": cmd_out(["dpkg-query", "-W", "-f=${Version}", "xfsprogs"]),
            "docker_server": cmd_out(["docker", "version", "--format", "{{.Server.Version}}"]) if self.s.docker else None,
            "python": platform.python_version(),
            "mode": "short" if self.s.short else "full",
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.s.__dict__.items()},
        }
        for mod in ["psycopg", "matplotlib", "pytest", "pytest_postgresql"]:
            try:
                m = __import__(mod)
                env[mod] = getattr(m, "__version__", "?")
            except Exception:
                env[mod] = None
        return env

    def zfs_changed(self) -> bool:
        return zfs_fuse_pid() != self.zfs_pid

    def recover_zfs(self, ctx: Dict[str, Any], what: str, err: BaseException) -> None:
        """The zfs-fuse daemon was restarted under the run (another job on this
        shared machine did it; every server on every pool dies with it).
        Wait for the daemon and the pool, remove half-made branches, start the
        betterpg sources again. The interrupted measurement is discarded and
        redone by the caller; the event is recorded in the results."""
        old = self.zfs_pid
        log(f"zfs-fuse changed under the run during {what} (pid {old} -> {zfs_fuse_pid()}): recovering")
        self.results.setdefault("zfs_fuse_restarts", []).append({
            "at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "during": what,
            "old_pid": old, "new_pid": zfs_fuse_pid(), "error": str(err)[:500],
        })
        self.save()
        t0 = time.monotonic()
        started_daemon = False
        while True:
            if time.monotonic() - t0 > 600:
                raise ZfsRestarted(f"zfs-fuse or pool {self.s.pool} did not come back within 10 min after a restart")
            if zfs_fuse_pid() is None or run(["pgrep", "-x", "zfs-fuse"], check=False).returncode != 0:
                if time.monotonic() - t0 > 30 and not started_daemon:
                    log("zfs-fuse is not running: starting it (scripts/setup.sh)")
                    run([str(REPO / "scripts" / "setup.sh"), "--quiet"], check=False, timeout=300)
                    started_daemon = True
                time.sleep(2)
                continue
            p = run(["zpool", "list", "-H", "-o", "name"], check=False)
            if p.returncode == 0 and self.s.pool in p.stdout.split():
                break
            if p.returncode == 0:
                run(["zpool", "import", "-d", str(self.s.pool_file.parent), self.s.pool], check=False, timeout=120)
            time.sleep(2)
        time.sleep(3)
        self.zfs_pid = zfs_fuse_pid()
        st = self.bpg("status", check=False)
        for info in st.get("entries", []) if isinstance(st, dict) else []:
            if info.get("parent"):
                self.bpg("destroy", info["name"], "--force", json_out=False, check=False)
        for key, pkey in [("bpg_src", "bpg_params"), ("bpg_docker_src", "bpg_docker_params")]:
            if key in ctx:
                self.bpg("start", ctx[key], json_out=False, check=False, timeout=600)
                self.wait_up(ctx[pkey])
        if "bpg_replica" in ctx:
            self.bpg("start", ctx["bpg_replica"], json_out=False, check=False, timeout=600)
        self.zfs_pid = zfs_fuse_pid()
        log(f"recovered after {time.monotonic() - t0:.0f} s; redoing {what}")

    def wait_up(self, params: Dict[str, Any]) -> None:
        import psycopg

        deadline = time.monotonic() + 300
        while True:
            try:
                with connect(params) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def resilient(self, what: str, fn: Callable[[], Any], ctx: Dict[str, Any], tries: int = 4) -> Any:
        """Run fn; when the zfs-fuse daemon was restarted meanwhile (by
        another job), recover and run it again (the result is discarded)."""
        for _ in range(tries):
            try:
                out = fn()
            except Exception as e:
                if self.zfs_changed():
                    self.recover_zfs(ctx, what, e)
                    continue
                raise
            if self.zfs_changed():
                self.recover_zfs(ctx, what, BenchError("restart noticed after the measurement"))
                continue
            return out
        raise ZfsRestarted(f"{what}: the zfs-fuse daemon was restarted under it {tries} times")

    # -- setup ------------------------------------------------------------
    def setup(self) -> None:
        s = self.s
        self.zfs_pid = zfs_fuse_pid()
        self.results["environment"]["zfs_fuse_pid"] = self.zfs_pid
        s.work.mkdir(parents=True, exist_ok=True)
        self.undo.append(lambda: shutil.rmtree(s.work, ignore_errors=True))
        # betterpg pool (sparse file). 24 GB leaves room for the 4 GB source
        # twice (native + Docker), its WAL and the branches' writes.
        largest = max(SIZES[z] for z in s.sizes)
        pool_gb = max(4, int(largest * 15 / 1024 * 2.5) + 4)
        self.undo.append(self.destroy_pool)
        self.bpg("init", "--pool-file", str(s.pool_file), "--size", f"{pool_gb}G", "--pool", s.pool,
                 "--ports", BPG_PORTS, json_out=False)
        log(f"bpg home {self.bpg.home}, pool {s.pool} ({pool_gb}G sparse file {s.pool_file})")
        # PostgreSQL 15 on the root file system (ext4 here): the home turf of
        # CREATE DATABASE, pg_basebackup and pg_dump.
        self.pg15 = Cluster(PG15_BIN, s.work / "pg15" / "data", PORT_PG15, self.password)
        self.pg15.initdb()
        self.undo.append(lambda: self.pg15.stop(mode="immediate"))
        self.pg15.start()
        # PostgreSQL 18 on reflink XFS (a file on a loop device).
        if "pg18_clone" not in s.skip:
            self.setup_pg18()

    def destroy_pool(self) -> None:
        # Servers first (bpg destroy --force on every database), then the pool.
        try:
            for info in self.bpg("status")["entries"]:
                if info.get("parent") is None:
                    self.bpg("destroy", info["name"], "--force", json_out=False, check=False)
        except Exception as e:
            log(f"listing/destroying betterpg databases: {e}")
        for _ in range(60):
            p = run(["zpool", "destroy", "-f", self.s.pool], check=False)
            if p.returncode == 0 or "no such pool" in p.stderr:
                break
            time.sleep(0.5)
        else:
            log(f"could not destroy pool {self.s.pool}: {p.stderr.strip()}")
        self.s.pool_file.unlink(missing_ok=True)

    def setup_pg18(self) -> None:
        s = self.s
        if not s.pg18_bin or not (s.pg18_bin / "postgres").exists():
            raise BenchError("PostgreSQL 18 binaries not found: run scripts/pg-versions.sh 18 (scripts/bench.sh does)")
        largest = max(SIZES[z] for z in s.sizes)
        xfs_gb = max(3, int(largest * 15 / 1024 * 2) + 3)
        mnt = s.work / "xfs"
        mnt.mkdir(parents=True, exist_ok=True)
        s.xfs_file.unlink(missing_ok=True)
        run(["truncate", "-s", f"{xfs_gb}G", s.xfs_file])
        self.undo.append(lambda: s.xfs_file.unlink(missing_ok=True))
        run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", s.xfs_file])
        loop = run(["losetup", "-f", "--show", s.xfs_file]).stdout.strip()
        self.undo.append(lambda: run(["losetup", "-d", loop], check=False))
        run(["mount", "-t", "xfs", loop, mnt])
        self.undo.append(lambda: run(["umount", "-l", mnt], check=False))
        self.results["pg18_storage"] = {
            "loop_device": loop, "file": str(s.xfs_file), "size_gb": xfs_gb,
            "xfs_info": run(["xfs_info", mnt], check=False).stdout.strip(),
        }
        log(f"XFS (reflink=1) on {loop} ({xfs_gb}G file) mounted at {mnt}")
        self.pg18 = Cluster(s.pg18_bin, mnt / "pg18" / "data", PORT_PG18, self.password,
                            extra_conf="file_copy_method = clone")
        self.pg18.initdb()
        self.undo.append(lambda: self.pg18.stop(mode="immediate"))
        self.pg18.start()
        with connect(self.pg18.params()) as c:
            fcm = c.execute("SHOW file_copy_method").fetchone()[0]
        if fcm != "clone":
            raise BenchError(f"PostgreSQL 18 reports file_copy_method = {fcm}, expected clone")

    # -- data -------------------------------------------------------------
    def pgbench_init(self, pgbench: str, params: Dict[str, Any], scale: int) -> float:
        t0 = time.perf_counter()
        # Server-side generation (G): the data of pgbench -i is deterministic
        # (sequential keys, zero balances, blank filler): no seed involved.
        run([pgbench, "-i", "-q", "-s", str(scale), "-I", "dtGvp"], env=libpq_env(params), timeout=7200)
        with connect(params) as c:
            c.execute("CHECKPOINT")
        return time.perf_counter() - t0

    def db_size(self, params: Dict[str, Any]) -> int:
        with connect(params) as c:
            return int(c.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def prepare_size(self, size: str, res: Dict[str, Any], want_docker: bool) -> Dict[str, Any]:
        """Make the sources of one size; return their connection facts."""
        scale = SIZES[size]
        ctx: Dict[str, Any] = {"scale": scale}
        gen: Dict[str, float] = {}
        # Idempotent: a retry after a zfs-fuse restart starts from scratch.
        for n in [f"src{size.lower()}", f"dk{size.lower()}"]:
            self.bpg("destroy", n, "--force", json_out=False, check=False)
        # betterpg native source
        name = f"src{size.lower()}"
        info = self.bpg("create", name)
        ctx["bpg_src"] = name
        ctx["bpg_params"] = url_params(info["url"])
        log(f"[{size}] generating pgbench -s {scale} in betterpg database {name}")
        gen["betterpg_native"] = self.pgbench_init(str(PG15_BIN / "pgbench"), ctx["bpg_params"], scale)
        res["source_bytes"] = self.db_size(ctx["bpg_params"])
        res["source_referenced_bytes"] = self.bpg.info(name)["referenced_bytes"]
        if want_docker:
            dname = f"dk{size.lower()}"
            try:
                info = self.bpg("create", dname, "--runtime", "docker")
                ctx["bpg_docker_src"] = dname
                ctx["bpg_docker_params"] = url_params(info["url"])
                log(f"[{size}] generating pgbench -s {scale} in betterpg Docker database {dname}")
                gen["betterpg_docker"] = self.pgbench_init(str(PG15_BIN / "pgbench"), ctx["bpg_docker_params"], scale)
            except Exception as e:
                self.fail(f"[{size}] Docker runtime source ({dname})", e)
        # plain PostgreSQL 15: database `bench` (only when a PG 15 method or
        # the pytest section, which compares with it, is measured)
        pg15_users = ["pg15_file_copy", "pg15_wal_log", "pg_basebackup", "pg_dump_restore", "pytest"]
        if any(m not in self.s.skip for m in pg15_users):
            with connect(self.pg15.params()) as c:
                c.execute("DROP DATABASE IF EXISTS bench")
                c.execute("CREATE DATABASE bench")
            log(f"[{size}] generating pgbench -s {scale} in PG 15 (ext4) database bench")
            gen["pg15_ext4"] = self.pgbench_init(self.pg15.tool("pgbench"), self.pg15.params("bench"), scale)
            res["pg15_bench_bytes"] = self.db_size(self.pg15.params("bench"))
        if self.pg18:
            with connect(self.pg18.params()) as c:
                c.execute("DROP DATABASE IF EXISTS bench")
                c.execute("CREATE DATABASE bench")
            log(f"[{size}] generating pgbench -s {scale} in PG 18 (XFS) database bench")
            gen["pg18_xfs"] = self.pgbench_init(self.pg18.tool("pgbench"), self.pg18.params("bench"), scale)
            res["pg18_bench_bytes"] = self.db_size(self.pg18.params("bench"))
        res["generate_seconds"] = gen
        self.save()
        return ctx

    def drop_size(self, ctx: Dict[str, Any]) -> None:
        # A replica first: destroying it drops its slot on the source.
        for key in ["bpg_replica", "bpg_src", "bpg_docker_src"]:
            if key in ctx:
                self.bpg("destroy", ctx[key], "--force", json_out=False, check=False)

    # -- one measurement per method ------------------------------------------
    def checkpoint_all(self, ctx: Dict[str, Any]) -> None:
        """Untimed: every source starts each measurement checkpointed and idle."""
        for key in ["bpg_params", "bpg_docker_params"]:
            if key in ctx:
                with connect(ctx[key]) as c:
                    c.execute("CHECKPOINT")
        for cl in [self.pg15, self.pg18]:
            if cl:
                with connect(cl.params()) as c:
                    c.execute("CHECKPOINT")
        os.sync()

    def m_bpg(self, ctx: Dict[str, Any], src_key: str, fast: bool = False, stopped: bool = False) -> Dict[str, Any]:
        src = ctx[src_key]
        name = self.next_name("b")
        if stopped:
            self.bpg("stop", src)
        try:
            args = ["branch", src, name] + (["--fast"] if fast else [])
            t0 = time.perf_counter()
            rep = self.bpg(*args)
            n = query_copy(url_params(rep["branch"]["url"]))
            wall = time.perf_counter() - t0
            log_text = self.bpg("logs", name, json_out=False, check=False).stdout
        finally:
            self.bpg("destroy", name, "--force", json_out=False, check=False)
            if stopped:
                self.bpg("start", src)
        if n != ctx["scale"]:
            raise BenchError(f"branch {name} answered {n} rows in pgbench_branches, expected {ctx['scale']}")
        return {
            "seconds": wall,
            "bpg_total_ms": rep["total_millis"],
            "timings": {t["step"]: t["millis"] for t in rep["timings"]},
            "wal_bytes_copied": rep.get("wal_bytes_copied"),
            "mode": rep["branch"].get("mode"),
            "fresh_used_bytes": rep["branch"].get("used_bytes"),
            "server_ms": server_phases(log_text),
        }

    def timed_database_copy(self, cl: Cluster, name: str, make: Callable[[], None], scale: int) -> Dict[str, Any]:
        """Time ``make()`` (which makes database ``name`` in ``cl``) until the copy answers a
        query; drop it whatever happens; check it holds the source's rows."""
        try:
            t0 = time.perf_counter()
            make()
            n = query_copy(cl.params(name))
            wall = time.perf_counter() - t0
        finally:
            with connect(cl.params()) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name}")
        if n != scale:
            raise BenchError(f"copy {name} answered {n}, expected {scale}")
        return {"seconds": wall}

    def m_create_database(self, cl: Cluster, strategy: str, scale: int) -> Dict[str, Any]:
        name = self.next_name("copy")

        def make() -> None:
            with connect(cl.params()) as c:
                c.execute(f"CREATE DATABASE {name} TEMPLATE bench STRATEGY {strategy}")

        return self.timed_database_copy(cl, name, make, scale)

    def m_basebackup(self, scale: int) -> Dict[str, Any]:
        cl = self.pg15
        dest = self.s.work / "pg15" / self.next_name("bb")
        try:
            t0 = time.perf_counter()
            run([cl.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(cl.port), "-U", "postgres",
                 "-D", dest, "-X", "stream", "-c", "fast", "--no-sync"],
                env={"PGPASSWORD": cl.password}, as_postgres=True, timeout=7200)
            cl.write_port_conf(dest, PORT_BASEBACKUP)
            port = cl.start(dest, port=PORT_BASEBACKUP)
            n = wait_query({**cl.params("bench"), "port": port})
            wall = time.perf_counter() - t0
        finally:
            cl.stop(dest, mode="immediate")
            shutil.rmtree(dest, ignore_errors=True)
            Path(f"{dest}.log").unlink(missing_ok=True)
        if n != scale:
            raise BenchError(f"basebackup copy answered {n}, expected {scale}")
        return {"seconds": wall, "note": "--no-sync: the copy's files are not fsynced (faster than the default)"}

    def m_dump_restore(self, scale: int) -> Dict[str, Any]:
        cl = self.pg15
        name = self.next_name("dump")
        env = dict(os.environ, **libpq_env(cl.params("bench")))

        def make() -> None:
            with connect(cl.params()) as c:
                c.execute(f"CREATE DATABASE {name} TEMPLATE template0")
            dump = subprocess.Popen([cl.tool("pg_dump"), "-Fc", "-Z0", "bench"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)
            restore = subprocess.run([cl.tool("pg_restore"), "--no-owner", "-d", name], stdin=dump.stdout,
                                     capture_output=True, text=True, env=env, timeout=7200)
            dump.stdout.close()
            dump_err = dump.stderr.read().decode(errors="replace")
            dump.wait()
            if dump.returncode != 0 or restore.returncode != 0:
                raise BenchError(f"pg_dump|pg_restore failed: {dump_err.strip()} {restore.stderr.strip()}"[-2000:])

        return self.timed_database_copy(cl, name, make, scale)

    def measure(self, method: str, ctx: Dict[str, Any]) -> Dict[str, Any]:
        scale = ctx["scale"]
        if method == "bpg_app":
            return self.m_bpg(ctx, "bpg_src")
        if method == "bpg_fast":
            return self.m_bpg(ctx, "bpg_src", fast=True)
        if method == "bpg_stopped":
            return self.m_bpg(ctx, "bpg_src", stopped=True)
        if method == "bpg_docker_app":
            return self.m_bpg(ctx, "bpg_docker_src")
        if method == "bpg_docker_fast":
            return self.m_bpg(ctx, "bpg_docker_src", fast=True)
        if method == "bpg_docker_stopped":
            return self.m_bpg(ctx, "bpg_docker_src", stopped=True)
        if method == "pg15_wal_log":
            return self.m_create_database(self.pg15, "WAL_LOG", scale)
        if method == "pg15_file_copy":
            return self.m_create_database(self.pg15, "FILE_COPY", scale)
        if method == "pg18_clone":
            return self.m_create_database(self.pg18, "FILE_COPY", scale)
        if method == "pg_basebackup":
            return self.m_basebackup(scale)
        if method == "pg_dump_restore":
            return self.m_dump_restore(scale)
        raise BenchError(f"unknown method {method}")

    # -- sections -----------------------------------------------------------
    def copy_section(self, size: str, ctx: Dict[str, Any], res: Dict[str, Any]) -> None:
        methods = [m for m, _, _ in METHODS if m not in self.s.skip]
        if "bpg_docker_src" not in ctx:
            methods = [m for m in methods if not m.startswith("bpg_docker")]
        if not self.pg18:
            methods = [m for m in methods if m != "pg18_clone"]
        runs: Dict[str, List[Dict[str, Any]]] = {m: [] for m in methods}
        res["copy"] = runs
        res["loadavg_before"] = loadavg()
        rounds = max(self.s.repeats, self.s.bpg_repeats)
        for r in range(rounds):
            for m in methods:
                want = self.s.bpg_repeats if m in BPG_METHODS else self.s.repeats
                if r >= want:
                    continue
                try:
                    def one() -> Dict[str, Any]:
                        self.checkpoint_all(ctx)
                        la = loadavg()[0]
                        res1 = self.measure(m, ctx)
                        res1["loadavg_1m"] = la
                        return res1

                    out = self.resilient(f"[{size}] {m} round {r + 1}", one, ctx)
                    runs[m].append(out)
                    log(f"[{size}] round {r + 1}/{rounds} {m}: {out['seconds']:.3f} s")
                except Exception as e:
                    runs[m].append({"error": str(e)})
                    self.fail(f"[{size}] {m} round {r + 1}", e)
                    if isinstance(e, ZfsRestarted):
                        raise
                self.save()
        res["loadavg_after"] = loadavg()

    def branch_once(self, src: str, mode: str) -> Dict[str, Any]:
        """One branch of `src` (mode "app" or "fast"), timed as the bpg
        command's wall time, then destroyed (untimed). The same measure under
        load and idle, so the two compare."""
        name = self.next_name("l")
        try:
            t0 = time.perf_counter()
            rep = self.bpg("branch", src, name, *(["--fast"] if mode == "fast" else []))
            wall = time.perf_counter() - t0
        finally:
            self.bpg("destroy", name, "--force", json_out=False, check=False)
        out = {"seconds": wall, "bpg_total_ms": rep["total_millis"],
               "timings": {t["step"]: t["millis"] for t in rep["timings"]},
               "checkpoint": rep.get("checkpoint"), "wal_bytes_copied": rep.get("wal_bytes_copied")}
        if rep.get("replica_point") is not None:
            out["replica_point"] = rep["replica_point"]
        return out

    def source_checkpoint(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The source's own CHECKPOINT (a new connection, as a branch opens
        one): the floor of an application-consistent branch, whose
        backup_start asks for the same immediate checkpoint."""
        t0 = time.perf_counter()
        with connect(params) as c:
            t1 = time.perf_counter()
            c.execute("CHECKPOINT")
        t2 = time.perf_counter()
        return {"seconds": t2 - t0, "checkpoint_ms": (t2 - t1) * 1000.0}

    def start_replica(self, ctx: Dict[str, Any]) -> Dict[str, Any]:
        """A replica of the source: ``bpg follow`` from the source's URL (the
        primary is a betterpg database on 127.0.0.1 of this machine, its
        superuser has REPLICATION), with a slot so the primary keeps the WAL
        the replica still needs. Returns the follow report's facts."""
        name = f"rep{ctx['bpg_src']}"
        self.bpg("destroy", name, "--force", json_out=False, check=False)
        url = self.bpg.info(ctx["bpg_src"])["url"]
        t0 = time.perf_counter()
        rep = self.bpg("follow", name, "--from", url, "--slot", "bench_replica", timeout=3600)
        wall = time.perf_counter() - t0
        ctx["bpg_replica"] = name
        self.undo.append(lambda: self.bpg("destroy", name, "--force", json_out=False, check=False))
        repl = rep["replica"].get("replication") or {}
        log(f"load: replica {name} follows {repl.get('upstream')} ({rep['backup_bytes']} B base backup, {wall:.1f} s)")
        return {"name": name, "follow_seconds": wall, "backup_bytes": rep["backup_bytes"],
                "upstream": repl.get("upstream"), "state": repl.get("state"), "slot": rep.get("slot")}

    def load_section(self, ctx: Dict[str, Any]) -> Dict[str, Any]:
        """pgbench on the betterpg source (the primary) without / with a branch
        every few seconds: of the source (application-consistent, --fast), of
        a replica of it, and the source's own CHECKPOINT for comparison;
        idle references before every baseline."""
        s = self.s
        params = ctx["bpg_params"]
        t_section = time.perf_counter()
        out: Dict[str, Any] = {
            "clients": 2, "threads": 2, "seconds": s.load_seconds, "branch_every_s": s.branch_every,
            "script": "pgbench built-in tpcb-like, -M prepared, --random-seed 42",
            "loadavg_before": loadavg(), "phases": [], "idle": [],
        }
        replica = "replica" not in s.skip
        if replica:
            out["replica"] = self.start_replica(ctx)
        logdir = s.work / "pgbench-logs"
        # (phase, what branches: None, "app", "fast", "replica", "checkpoint")
        cycle = [("baseline", None)]
        if replica:
            cycle.append(("replica branches", "replica"))
        cycle += [("app-consistent branches", "app"), ("--fast branches", "fast")]
        if "checkpoint" not in s.skip:
            cycle.append(("source CHECKPOINTs", "checkpoint"))
        phases = cycle * s.load_cycles + [("baseline", None)]
        idle_left = s.idle_sets

        def one(mode: str) -> Dict[str, Any]:
            if mode == "checkpoint":
                return self.source_checkpoint(params)
            if mode == "replica":
                return self.branch_once(ctx["bpg_replica"], "app")
            return self.branch_once(ctx["bpg_src"], mode)

        for i, (phase, mode) in enumerate(phases):
            if mode is None and idle_left > 0:
                # Idle references (no load; the source checkpointed, untimed,
                # as in the copy section): the same measures as under load.
                idle_left -= 1
                for m in (["fast", "app"] + (["replica"] if replica else []) + ["checkpoint"]):
                    with connect(params) as c:
                        c.execute("CHECKPOINT")
                    time.sleep(0.5)
                    try:
                        r = one(m)
                        r.update(mode=m, before_phase=i + 1)
                        out["idle"].append(r)
                        log(f"load: idle {m}: {r['seconds']:.3f} s")
                    except Exception as e:
                        self.fail(f"load idle {m}", e)
            shutil.rmtree(logdir, ignore_errors=True)
            logdir.mkdir(parents=True)
            stop = threading.Event()
            branches: List[Dict[str, Any]] = []
            errors: List[str] = []

            def brancher() -> None:
                time.sleep(min(2.0, s.branch_every))
                while not stop.is_set():
                    t_next = time.monotonic() + s.branch_every
                    try:
                        branches.append(one(mode))
                    except Exception as e:
                        errors.append(str(e))
                    stop.wait(max(0.0, t_next - time.monotonic()))

            th = threading.Thread(target=brancher, daemon=True) if mode else None
            log(f"load: {phase} ({s.load_seconds} s)")
            if th:
                th.start()
            try:
                p = run([str(PG15_BIN / "pgbench"), "-c", "2", "-j", "2", "-T", str(s.load_seconds), "-M", "prepared",
                         "--random-seed", str(SEED), "-l", "--log-prefix", str(logdir / "tx"), "-n"],
                        env=libpq_env(params), timeout=s.load_seconds + 600, cwd=str(logdir))
            finally:
                stop.set()
                if th:
                    th.join()
            lat = []
            for f in logdir.glob("tx*"):
                for line in f.read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 3 and parts[2].isdigit():
                        lat.append(int(parts[2]) / 1000.0)
            lat.sort()
            tps = re.search(r"tps = ([0-9.]+) \(without initial", p.stdout)
            avg = re.search(r"latency average = ([0-9.]+) ms", p.stdout)
            ph = {
                "phase": phase, "mode": mode,
                "tps": float(tps.group(1)) if tps else None,
                "latency_avg_ms": float(avg.group(1)) if avg else None,
                "transactions": len(lat),
                "latency_p50_ms": pct(lat, 50), "latency_p99_ms": pct(lat, 99),
                "latency_max_ms": lat[-1] if lat else None,
                "branches": branches, "branch_errors": errors,
                "loadavg_after": loadavg(),
            }
            if errors:
                self.fail(f"load phase {phase}", BenchError("; ".join(errors[:3])))
            out["phases"].append(ph)
            log(f"load: {phase}: tps {ph['tps']}, p50 {ph['latency_p50_ms']} ms, p99 {ph['latency_p99_ms']} ms, "
                f"{len(branches)} branches")
        shutil.rmtree(logdir, ignore_errors=True)
        if replica:
            self.bpg("destroy", ctx.pop("bpg_replica"), "--force", json_out=False, check=False)
        out["loadavg_after"] = loadavg()
        out["section_seconds"] = time.perf_counter() - t_section
        return out

    def space_section(self, ctx: Dict[str, Any]) -> Dict[str, Any]:
        """Pool space of a fresh branch and after updating N MB of its rows."""
        out: Dict[str, Any] = {}
        for fast in [False, True]:
            name = self.next_name("sp")
            rep = self.bpg("branch", ctx["bpg_src"], name, *(["--fast"] if fast else []))
            try:
                bp = url_params(rep["branch"]["url"])
                with connect(bp) as c:
                    c.execute("CHECKPOINT")
                fresh = self.settled_used(name)
                rows = min(self.s.space_mb * ACCOUNT_ROWS_PER_MB, ctx["scale"] * 100000)
                with connect(bp) as c:
                    lsn0 = c.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
                    rel0 = c.execute("SELECT pg_relation_size('pgbench_accounts')").fetchone()[0]
                    c.execute(f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= {rows}")
                    c.execute("CHECKPOINT")
                    wal = c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn0,)).fetchone()[0]
                    rel1 = c.execute("SELECT pg_relation_size('pgbench_accounts')").fetchone()[0]
                after = self.settled_used(name, before=fresh)
                info = self.bpg.info(name)
                out["fast" if fast else "app"] = {
                    "fresh_used_bytes": fresh,
                    "rows_updated": rows,
                    "updated_heap_mb": rows / ACCOUNT_ROWS_PER_MB,
                    "wal_bytes": int(wal),
                    "table_growth_bytes": int(rel1 - rel0),
                    "after_used_bytes": after,
                    "referenced_bytes": info["referenced_bytes"],
                }
                log(f"space ({'fast' if fast else 'app'}): fresh {fresh} B, after {rows} rows updated {after} B")
            finally:
                self.bpg("destroy", name, "--force", json_out=False, check=False)
        return out

    def start_sync_section(self, ctx: Dict[str, Any]) -> Dict[str, Any]:
        """Experiment on the `start` step: the branch's first start with
        PostgreSQL's default recovery_init_sync_method = fsync (before crash
        or backup recovery, open and fsync every file of the data directory:
        on a fresh clone every one of those is a cold lookup through FUSE)
        against syncfs (one syncfs() per file system). The setting reaches
        the branch the way any source setting does: ALTER SYSTEM on the
        source lands in postgresql.auto.conf, which the snapshot carries.
        Nothing in betterpg is changed; the source is reset afterwards."""
        out: Dict[str, Any] = {"runs": [], "loadavg_before": loadavg()}
        try:
            # One round in short mode (CI: it proves the section runs).
            for r in range(1 if self.s.short else self.s.bpg_repeats):
                for method in ["fsync", "syncfs"]:
                    with connect(ctx["bpg_params"]) as c:
                        c.execute(f"ALTER SYSTEM SET recovery_init_sync_method = {method}")
                        c.execute("SELECT pg_reload_conf()")
                    for fast in [False, True]:
                        self.checkpoint_all(ctx)
                        res = self.m_bpg(ctx, "bpg_src", fast=fast)
                        res.update(method=method, mode="fast" if fast else "app")
                        out["runs"].append(res)
                        log(f"start_sync {method} {res['mode']}: {res['seconds']:.3f} s, start step "
                            f"{res['timings'].get('start', 0):.0f} ms, {res['server_ms']}")
        finally:
            with connect(ctx["bpg_params"]) as c:
                c.execute("ALTER SYSTEM RESET recovery_init_sync_method")
                c.execute("SELECT pg_reload_conf()")
        out["loadavg_after"] = loadavg()
        return out

    def settled_used(self, name: str, before: Optional[int] = None) -> int:
        """used_bytes once ZFS has committed it: zfs-fuse updates the figure at
        its next transaction-group sync, so wait until it differs from
        `before` (when given) and then reads the same twice 3 s apart
        (at most ~60 s; the last reading otherwise)."""
        os.sync()
        last = -1
        for _ in range(20):
            time.sleep(3)
            used = int(self.bpg.info(name)["used_bytes"])
            if used == last and (before is None or used != before):
                return used
            last = used
        return last

    def pytest_section(self, ctx: Dict[str, Any], size: str) -> Dict[str, Any]:
        out: Dict[str, Any] = {"tests": self.s.pytest_tests, "size": size, "loadavg_before": loadavg()}
        py = sys.executable
        suite = BENCHES / "pytest_suite"
        pymod = REPO / "betterpg-py" / "python"
        # betterpg: the default (a warm pool of 2 ready branches, each
        # rewound after its test and handed out again), the pool without
        # recycling (a finished test's branch destroyed in the background,
        # the pool makes new ones), a pool of 4 without recycling, no pool,
        # and --betterpg-sync-destroy (no pool, destroyed before the next
        # test starts); then the default, the pool without recycling and
        # pytest-postgresql again under pytest-xdist (-n 2: the whole
        # suite, a pool per worker).
        variants = [
            ("betterpg", "betterpg", []),
            ("betterpg_norecycle", "betterpg", ["--betterpg-no-recycle"]),
            ("betterpg_pool4", "betterpg", ["--betterpg-pool-size=4", "--betterpg-no-recycle"]),
            ("betterpg_nopool", "betterpg", ["--betterpg-pool-size=0"]),
            ("betterpg_sync", "betterpg", ["--betterpg-pool-size=0", "--betterpg-sync-destroy"]),
            ("pytest_postgresql", "pytest_postgresql", []),
        ]
        if self.s.pytest_xdist:
            variants += [
                ("betterpg_xdist", "betterpg", ["-n", "2", "-p", "xdist"]),
                ("betterpg_norecycle_xdist", "betterpg", ["-n", "2", "-p", "xdist", "--betterpg-no-recycle"]),
                ("pytest_postgresql_xdist", "pytest_postgresql", ["-n", "2", "-p", "xdist"]),
            ]
        for variant, kind, extra in variants:
            rep_file = self.s.work / f"pytest-{variant}.json"
            env = {
                "PYTHONPATH": os.pathsep.join([str(suite), str(pymod)]),
                "BENCH_VARIANT": kind,
                "BENCH_TESTS": str(self.s.pytest_tests),
                "BENCH_SCALE": str(ctx["scale"]),
                "BENCH_REPORT": str(rep_file),
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            }
            args = [py, "-m", "pytest", "-q", "-p", "recorder", "-p", "no:cacheprovider", str(suite / "test_private_db.py")]
            if kind == "betterpg":
                args += ["-p", "betterpg.pytest_plugin", f"--betterpg-home={self.bpg.home}",
                         f"--betterpg-source={ctx['bpg_src']}"]
            else:
                args += ["-p", "pytest_postgresql.plugin"]
                env.update({"BENCH_PG_PORT": str(self.pg15.port), "BENCH_PG_PASSWORD": self.pg15.password,
                            "BENCH_PGBENCH": self.pg15.tool("pgbench")})
            args += extra
            log(f"pytest: {variant}, {self.s.pytest_tests} tests")
            t0 = time.perf_counter()
            p = run(args, env=env, check=False, timeout=7200, cwd=str(suite))
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                raise BenchError(f"pytest suite ({variant}) failed:\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
            data = json.loads(rep_file.read_text())
            per = [t["setup"] + t["call"] + t["teardown"] for t in data["tests"]]
            if per:
                per[0] -= data.get("session_setup_s", 0.0)
            out[variant] = {
                "suite_wall_s": wall,
                "session_setup_s": data.get("session_setup_s"),
                "per_test_s": per,
                "median_per_test_s": statistics.median(per) if per else None,
                "summary": p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "",
            }
            log(f"pytest {variant}: median {out[variant]['median_per_test_s']:.3f} s/test, suite {wall:.1f} s")
        out["loadavg_after"] = loadavg()
        return out

    # -- driver -------------------------------------------------------------
    def run_all(self) -> None:
        s = self.s
        self.results = {"environment": self.environment(), "sizes": {}, "failures": []}
        self.save()
        self.setup()
        for size in s.sizes:
            res: Dict[str, Any] = {"scale": SIZES[size]}
            self.results["sizes"][size] = res
            need = int(SIZES[size] * 15 * 2**20 * 6 + 2 * 2**30)
            free = shutil.disk_usage(s.work).free
            if free < need:
                res["skipped"] = f"not enough disk: {free / 2**30:.1f} GiB free, about {need / 2**30:.1f} GiB needed"
                log(f"[{size}] skipped: {res['skipped']}")
                self.save()
                continue
            ctx: Dict[str, Any] = {}
            try:
                want_docker = s.docker and size in s.docker_sizes
                ctx = self.resilient(f"[{size}] data generation", lambda: self.prepare_size(size, res, want_docker), {})
                self.copy_section(size, ctx, res)
                if size == s.load_size and "load" not in s.skip:
                    try:
                        self.results["load"] = self.resilient("load section", lambda: self.load_section(ctx), ctx)
                    except Exception as e:
                        self.fail("load section", e)
                if size == s.load_size and "space" not in s.skip:
                    try:
                        self.results["space"] = dict(self.resilient("space section", lambda: self.space_section(ctx), ctx),
                                                     size=size)
                    except Exception as e:
                        self.fail("space section", e)
                if size == s.load_size and "start_sync" not in s.skip:
                    try:
                        self.results["start_sync"] = dict(self.resilient(
                            "start_sync section", lambda: self.start_sync_section(ctx), ctx), size=size)
                    except Exception as e:
                        self.fail("start_sync section", e)
                if size in s.pytest_sizes and "pytest" not in s.skip:
                    if not s.python_module:
                        self.fail("pytest section", BenchError(
                            "the betterpg Python module is not importable (build it: scripts/test-python.sh)"))
                    else:
                        try:
                            pt = self.resilient("pytest section", lambda: self.pytest_section(ctx, size), ctx)
                            self.results.setdefault("pytest_by_size", {})[size] = pt
                            if "pytest" not in self.results or size == s.pytest_sizes[0]:
                                self.results["pytest"] = pt
                        except Exception as e:
                            self.fail("pytest section", e)
            except ZfsRestarted as e:
                self.fail(f"[{size}] size", e)
                raise
            except Exception as e:
                self.fail(f"[{size}] size", e)
                traceback.print_exc()
            finally:
                self.drop_size(ctx)
                self.save()
        self.results["environment"]["loadavg_end"] = loadavg()
        self.results["environment"]["date_utc_end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save()


def pct(sorted_vals: List[float], p: float) -> Optional[float]:
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", nargs="?", default="run", choices=["run", "report"])
    ap.add_argument("--short", action="store_true", help="CI mode: smallest size, few repeats, short phases")
    ap.add_argument("--out", type=Path, help="output directory (default: benches/results, short: target/bench-short)")
    ap.add_argument("--sizes", help="comma list of 100M,1G,4G (default all; short: 100M)")
    ap.add_argument("--repeats", type=int, help="repeats of the non-betterpg methods (default 3; short 2)")
    ap.add_argument("--bpg-repeats", type=int, help="repeats of the betterpg methods (default 5; short 3)")
    ap.add_argument("--load-seconds", type=int, help="length of each pgbench phase (default 45; short 6)")
    ap.add_argument("--pytest-tests", type=int, help="tests in the pytest suite (default 20; short 5)")
    ap.add_argument("--pytest-sizes", help="comma list of sizes the pytest section runs at "
                    "(default the middle size; the report's main table shows the first)")
    ap.add_argument("--no-pytest-xdist", action="store_true",
                    help="leave out the pytest-xdist (-n 2) runs of the pytest section")
    ap.add_argument("--docker-sizes", help="sizes measured with the Docker runtime too (default all)")
    ap.add_argument("--no-docker", action="store_true", help="leave out the Docker runtime")
    ap.add_argument("--skip", default="", help="comma list of methods/sections to leave out (load,space,pytest,...)")
    ap.add_argument("--pg18-bin", type=Path, help="PostgreSQL 18 bin directory (scripts/pg-versions.sh 18)")
    ap.add_argument("--bpg", type=Path, default=REPO / "target" / "release" / "bpg")
    a = ap.parse_args()

    short = a.short
    out = a.out or (REPO / "target" / "bench-short" if short else BENCHES / "results")
    if a.command == "report":
        data = json.loads((out / "results.json").read_text())
        report.write_all(data, out)
        print((out / "results.md").read_text())
        return 0

    sizes = (a.sizes.split(",") if a.sizes else (["100M"] if short else ["100M", "1G", "4G"]))
    for z in sizes:
        if z not in SIZES:
            ap.error(f"unknown size {z} (have {', '.join(SIZES)})")
    middle = "1G" if "1G" in sizes else sizes[0]
    tag = "short" if short else "full"
    # The betterpg Python module (betterpg-py, built in place by
    # scripts/test-python.sh) is used from its source tree.
    python_module = subprocess.run(
        [sys.executable, "-c", "import betterpg, betterpg.pytest_plugin"],
        env=dict(os.environ, PYTHONPATH=str(REPO / "betterpg-py" / "python")),
        capture_output=True).returncode == 0
    s = Settings(
        short=short, out=out, sizes=sizes,
        repeats=a.repeats or (2 if short else 3),
        bpg_repeats=a.bpg_repeats or (3 if short else 5),
        load_size=middle, load_seconds=a.load_seconds or (6 if short else 45),
        load_cycles=1 if short else 2,
        branch_every=3.0 if short else 5.0,
        # Idle references of the load section: before the first baseline
        # only (short), or before every baseline (full).
        idle_sets=1 if short else 3,
        space_mb=10 if short else 100,
        pytest_sizes=a.pytest_sizes.split(",") if a.pytest_sizes else [middle],
        pytest_tests=a.pytest_tests or (5 if short else 20),
        pytest_xdist=not a.no_pytest_xdist,
        docker=not a.no_docker,
        docker_sizes=a.docker_sizes.split(",") if a.docker_sizes else sizes,
        skip=[x for x in a.skip.split(",") if x],
        work=Path(f"/tmp/betterpg-test/bpgbench-{tag}-work"),
        pool=f"bpgbench{tag}",
        pool_file=Path(f"/tmp/betterpg-test/bpgbench-{tag}.img"),
        xfs_file=Path(f"/tmp/betterpg-test/bpgbench-{tag}-xfs.img"),
        bpg=a.bpg, pg18_bin=a.pg18_bin, python_module=python_module,
    )
    if not s.bpg.exists():
        print(f"error: {s.bpg} not found: cargo build --release -p betterpg-cli", file=sys.stderr)
        return 1

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    b = Bench(s)
    t0 = time.time()
    try:
        b.run_all()
    except BaseException as e:  # noqa: BLE001 - record, clean up, fail
        b.fail("harness", e)
        traceback.print_exc()
    finally:
        log("cleaning up")
        b.cleanup()
    b.results.setdefault("environment", {})["harness_seconds"] = time.time() - t0
    b.save()
    try:
        report.write_all(b.results, out)
        print((out / "results.md").read_text())
    except Exception as e:
        b.fail("report", e)
        traceback.print_exc()
    if b.failures:
        print(f"\n{len(b.failures)} failure(s):", file=sys.stderr)
        for f in b.failures:
            print(f"  - {f.splitlines()[0]}", file=sys.stderr)
        return 1
    log(f"done in {time.time() - t0:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
