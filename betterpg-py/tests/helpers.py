"""Helpers of the betterpg Python tests: homes on real ZFS pools, subprocess pytest runs.

Pools are named bpgpy-<tag>-<random> (this suite's prefix), backed by files
in /tmp/betterpg-test/; homes sit next to them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import pytest

TEST_DIR = Path("/tmp/betterpg-test")
# scripts/test-python.sh uses the defaults; an engineer running one file by
# hand on a shared machine sets their own prefix, port base and number of
# ports (BPGPY_PORT_SPAN, default 1000: the main home gets the first 90 %,
# extra homes the rest).
POOL_PREFIX = os.environ.get("BPGPY_POOL_PREFIX", "bpgpy")
_PORT_BASE = int(os.environ.get("BPGPY_PORT_BASE", "57000"))
_PORT_SPAN = int(os.environ.get("BPGPY_PORT_SPAN", "1000"))
MAIN_PORTS = (_PORT_BASE, _PORT_BASE + _PORT_SPAN * 9 // 10 - 1)
EXTRA_PORTS = (_PORT_BASE + _PORT_SPAN * 9 // 10, _PORT_BASE + _PORT_SPAN - 1)
SOURCE = "src"
SOURCE_ROWS = 100

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "python"
SUITES = Path(__file__).resolve().parent / "suites"
assert EXAMPLES.is_dir(), f"examples/python not found at {EXAMPLES}"


def require() -> None:
    """Fail (never skip) with a message naming every missing prerequisite."""
    missing = []
    if shutil.which("zpool") is None or shutil.which("zfs") is None:
        missing.append("zfs/zpool commands (run scripts/setup.sh: zfs-fuse)")
    elif subprocess.run(["zpool", "list"], capture_output=True).returncode != 0:
        missing.append("a running ZFS daemon (`zpool list` fails: start zfs-fuse, scripts/setup.sh)")
    if not Path("/usr/lib/postgresql").is_dir():
        missing.append("PostgreSQL server binaries (/usr/lib/postgresql/*/bin; scripts/setup.sh)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing.append("psycopg 3 in this Python (pip install 'psycopg[binary]')")
    if os.geteuid() != 0:
        missing.append("root (ZFS pools are created with zpool)")
    if missing:
        pytest.fail("missing prerequisites: " + "; ".join(missing), pytrace=False)


def _destroy_pool(pool: str, file: Path, home: Path) -> None:
    """Best-effort teardown: stop servers on the pool, destroy it, remove files."""
    mnt = home / "mnt" / pool
    if mnt.is_dir():
        pidfiles = [
            *mnt.glob("betterpg/_branches/*/pgdata/postmaster.pid"),
            *mnt.glob("betterpg/*/pgdata/postmaster.pid"),
        ]
        for pidfile in pidfiles:
            data_dir = pidfile.parent
            pg_ctl = _pg_ctl()
            if pg_ctl:
                # As the data directory's owner: a branch's server runs
                # as a uid of its own, with no passwd entry.
                st = data_dir.stat()
                subprocess.run(
                    [
                        "setpriv",
                        f"--reuid={st.st_uid}",
                        f"--regid={st.st_gid}",
                        "--clear-groups",
                        pg_ctl,
                        "-D",
                        str(data_dir),
                        "stop",
                        "-m",
                        "immediate",
                        "-w",
                    ],
                    capture_output=True,
                )
    for _ in range(20):
        r = subprocess.run(["zpool", "destroy", "-f", pool], capture_output=True, text=True)
        if r.returncode == 0 or "no such pool" in r.stderr:
            break
        time.sleep(0.5)
    file.unlink(missing_ok=True)
    shutil.rmtree(home, ignore_errors=True)


def _pg_ctl() -> Optional[str]:
    base = Path("/usr/lib/postgresql")
    for v in sorted(base.glob("*/bin/pg_ctl"), reverse=True):
        return str(v)
    return None


@dataclass
class Home:
    """A home on its own pool."""

    manager: "object"
    path: Path
    pool: str
    pool_file: Path

    def destroy(self) -> None:
        import betterpg

        try:
            for info in self.manager.list():  # type: ignore[attr-defined]
                if info.parent is None:
                    try:
                        self.manager.destroy(info.name, force=True)  # type: ignore[attr-defined]
                    except betterpg.BetterPgError:
                        pass
        except betterpg.BetterPgError:
            pass
        _destroy_pool(self.pool, self.pool_file, self.path)


def make_home(tag: str, ports: Tuple[int, int], size: Union[int, str] = "512M") -> Home:
    """Initialise a new home on a new file-backed pool named bpgpy-<tag>-<random>."""
    import betterpg

    TEST_DIR.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:6]
    pool = f"{POOL_PREFIX}-{tag}-{suffix}"
    home = TEST_DIR / f"{pool}-home"
    pool_file = TEST_DIR / f"{pool}.img"
    mgr = betterpg.BranchManager.init(home, pool_file=pool_file, size=size, pool=pool, port_range=ports)
    return Home(mgr, home, pool, pool_file)


def unique(prefix: str = "t") -> str:
    """A branch/database name unlikely to collide."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rows(url: str, sql: str, params: tuple = ()) -> list:
    """Run a query on ``url`` and return all rows."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


def plugin_branches(manager) -> List[str]:
    """Names of branches in the home that the pytest plugin made."""
    from betterpg.pytest_plugin import NAME_RE

    return [i.name for i in manager.list() if NAME_RE.match(i.name)]


def run_pytest(args: List[str], cwd: Path, env_extra: Optional[dict] = None, timeout: int = 900):
    """Run pytest in a subprocess with this interpreter; returns CompletedProcess (text)."""
    env = dict(os.environ)
    env.pop("BPG_HOME", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if env_extra:
        env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
