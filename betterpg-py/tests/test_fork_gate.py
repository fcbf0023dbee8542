"""fork() while another thread is inside a betterpg call (issue 11, item 14).

A forked child has only the forking thread, but a copy of every descriptor.
What another thread held at the fork stayed held in the child: the catalog
lock (an ``flock``: the child's copy kept it locked, so the child's own calls
and every later ``bpg`` waited forever) and a backup session's socket (the
source could not see the parent die and stayed in backup mode, holding WAL
with a slot, while the child lived). The module's ``os.register_at_fork``
hooks make fork wait until no call is in flight.

Every wait has a deadline, so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import betterpg
import pytest
from helpers import SOURCE, SOURCE_ROWS, rows, unique

DEADLINE_S = 60
FAULT = "BETTERPG_FAULT"


class ForkedChild:
    """A child that runs ``body``, reports its JSON result, then stays alive
    until :meth:`release` (so the parent can look at the world while it lives)."""

    def __init__(self, body: Callable[[], dict]):
        r, w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            os.close(hold_w)
            try:
                result = {"ok": True, **body()}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            os.write(w, json.dumps(result).encode() + b"\n")
            os.close(w)
            os.read(hold_r, 1)  # until the parent releases (or dies)
            os._exit(0)
        os.close(w)
        os.close(hold_r)
        self.pid, self._r, self._hold = pid, r, hold_w

    def result(self, deadline_s: float = DEADLINE_S) -> dict:
        ready, _, _ = select.select([self._r], [], [], deadline_s)
        if not ready:
            self.kill()
            pytest.fail(f"the forked child did not finish its calls within {deadline_s}s (deadlock on an inherited lock?)")
        out = b""
        while not out.endswith(b"\n"):
            chunk = os.read(self._r, 65536)
            if not chunk:
                break
            out += chunk
        assert out, "the forked child died without a result"
        return json.loads(out)

    def alive(self) -> bool:
        done, _ = os.waitpid(self.pid, os.WNOHANG)
        return done == 0

    def release(self) -> None:
        os.close(self._hold)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._r)
        assert os.waitstatus_to_exitcode(status) == 0

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def wait_for(what: str, pred: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not pred():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline_s}s")
        time.sleep(0.02)


def other_process_lists(home, timeout_s: str = "20") -> subprocess.CompletedProcess:
    """A separate process (not forked from this one) using the same home."""
    env = dict(os.environ, BPG_LOCK_TIMEOUT=timeout_s)
    env.pop(FAULT, None)
    return subprocess.run(
        [sys.executable, "-c", "import sys, betterpg; print(len(betterpg.BranchManager(sys.argv[1]).list()))", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fork_while_another_thread_holds_the_catalog_lock(env, manager):
    """The child's calls complete, and the lock is not kept by the child."""
    lock = env.path / "catalog.lock"
    name = unique("lockfork")
    # Set before any thread reads it, removed after they are done: the
    # thread's call holds the catalog lock 3 s (the lock file records its
    # holder's pid while it is held).
    os.environ[FAULT] = "catalog_locked:sleep=3"
    out: dict = {}

    def work() -> None:
        try:
            out["n"] = len(manager.list())
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    child: Optional[ForkedChild] = None
    try:
        wait_for("the thread's call holds the catalog lock", lambda: lock.read_text().startswith(f"{os.getpid()} "))

        def body() -> dict:
            os.environ.pop(FAULT, None)
            n = len(manager.list())
            with manager.branch(SOURCE, name) as b:
                got = rows(b.url, "SELECT count(*) FROM items")[0][0]
            return {"n": n, "rows": got}

        child = ForkedChild(body)
        result = child.result()
        assert result["ok"], result
        assert result["rows"] == SOURCE_ROWS
        t.join(DEADLINE_S)
        assert not t.is_alive()
        assert "error" not in out, out
        # While the child still lives, others can take the lock.
        assert child.alive()
        p = other_process_lists(env.path)
        assert p.returncode == 0, f"another process could not use the home while the child lives: {p.stderr}"
        assert manager.list()
        child.release()
        child = None
    finally:
        if child is not None:
            child.kill()
        t.join(DEADLINE_S)
        os.environ.pop(FAULT, None)
    assert name not in [i.name for i in manager.list()]


HELPER = r"""
import os, sys, threading, time
import betterpg, psycopg

home, source, name = sys.argv[1:4]
mgr = betterpg.BranchManager(home)
src_url = mgr.info(source).url
err = []
def work():
    try:
        mgr.branch(source, name)
    except BaseException as e:
        err.append(e)
        print("branch failed", e, flush=True)
threading.Thread(target=work, daemon=True).start()
deadline = time.monotonic() + 60
while True:  # until the branch's backup session is open on the source
    with psycopg.connect(src_url, autocommit=True) as c:
        n = c.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'betterpg%%'").fetchone()[0]
    if n:
        break
    if err or time.monotonic() > deadline:
        print("no backup session seen", flush=True)
        sys.exit(3)
    time.sleep(0.02)
print("in-backup", flush=True)
pid = os.fork()
if pid == 0:
    time.sleep(600)  # the child just lives on, holding whatever it inherited
    os._exit(0)
print("forked", pid, flush=True)
time.sleep(600)
"""


def backup_sessions(src_url: str) -> int:
    """betterpg slots plus sessions still in (or right after) backup mode on the source."""
    return rows(
        src_url,
        "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'betterpg%%') "
        "+ (SELECT count(*) FROM pg_stat_activity WHERE query ILIKE '%%backup_start%%' "
        "AND pid <> pg_backend_pid())",
    )[0][0]


def test_parent_killed_after_fork_leaves_the_source_out_of_backup_mode(env, manager):
    """A process forks while its thread is in backup mode on the source, then
    dies (killed). While its child lives on, the source must not be in backup
    mode: the child must not have a copy of the backup session's socket."""
    name = unique("bkfork")
    src_url = manager.info(SOURCE).url
    assert backup_sessions(src_url) == 0
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(env.path), SOURCE, name],
        env=dict(os.environ, **{FAULT: "after_backup_start:sleep=5"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child_pid = None
    try:
        lines = []
        end = time.monotonic() + DEADLINE_S
        while child_pid is None:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                pytest.fail(f"the helper did not fork within {DEADLINE_S}s: {lines}")
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the helper exited: {lines} {proc.stderr.read()}")
            lines.append(line.strip())
            if line.startswith("forked "):
                child_pid = int(line.split()[1])
        assert "in-backup" in lines, lines
        proc.send_signal(signal.SIGKILL)  # the parent dies; its child lives
        proc.wait()
        # Give the server every chance to see the session end.
        end = time.monotonic() + 30
        while backup_sessions(src_url) and time.monotonic() < end:
            time.sleep(0.1)
        os.kill(child_pid, 0)  # the child still lives
        left = backup_sessions(src_url)
        assert left == 0, (
            "the source is still in backup mode (a betterpg slot or session) "
            "30 s after the process that started it died: its forked child holds the session's socket"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child_pid is not None:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # What the killed process left: its branch (ready, when the fork
        # waited for it) or its half-made entry (gc removes it).
        try:
            manager.destroy(name, force=True)
        except betterpg.NotFoundError:
            pass
        manager.gc()
    assert backup_sessions(src_url) == 0
    assert name not in [i.name for i in manager.list()]
