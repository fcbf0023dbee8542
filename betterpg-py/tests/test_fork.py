"""A manager used before fork() keeps working in the child and in the parent.

The core manager owns a multi-threaded tokio runtime whose threads a forked
child does not have. A child must re-open (never block on or drop the
inherited runtime). Every child here is waited for with a deadline, so a
deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import time
from typing import Callable, Tuple

import betterpg
import pytest
from helpers import SOURCE, SOURCE_ROWS, rows, unique

DEADLINE_S = 180


def run_in_fork(body: Callable[[], dict]) -> dict:
    """Fork; run body in the child; return its JSON result. Fails on a hang or crash."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            result = {"ok": True, **body()}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            code = 1
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(result))
        os._exit(code)
    os.close(w)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child did not finish within {DEADLINE_S}s (deadlock?)")
        time.sleep(0.05)
    with os.fdopen(r) as f:
        out = f.read()
    assert out, f"child died without a result (status {status})"
    result = json.loads(out)
    assert result["ok"], result
    return result


def test_child_reopens_and_works(manager):
    manager.info(SOURCE)  # the runtime is up and its threads run
    name = unique("fork")

    def child() -> dict:
        info = manager.info(SOURCE)
        with manager.branch(SOURCE, name) as b:
            n = rows(b.url, "SELECT count(*) FROM items")[0][0]
            port = b.port
        return {"pid": os.getpid(), "source_port": info.port, "rows": n, "port": port}

    result = run_in_fork(child)
    assert result["pid"] != os.getpid()
    assert result["rows"] == SOURCE_ROWS
    assert result["source_port"] == manager.info(SOURCE).port
    # The parent's manager is untouched and still works.
    assert name not in [i.name for i in manager.list()]
    with manager.branch(SOURCE, unique("after")) as b:
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]


def test_child_can_drop_an_inherited_manager(env):
    mgr = betterpg.BranchManager(env.path)
    mgr.list()

    def child() -> dict:
        nonlocal mgr
        del mgr  # the only reference in the child: must not join threads that do not exist
        gc.collect()
        return {}

    run_in_fork(child)
    assert mgr.list()


def test_child_of_a_child(manager):
    manager.info(SOURCE)

    def child() -> dict:
        manager.info(SOURCE)  # re-opens in the child
        inner = run_in_fork(lambda: {"status": manager.info(SOURCE).status})
        return {"inner": inner["status"]}

    assert run_in_fork(child)["inner"] == "running"


# The manager reaches multiprocessing's workers through fork (inherited
# memory), not pickling: set before the pool starts.
_MP_MANAGER = None


def _mp_work(name: str) -> Tuple[int, str, int]:
    mgr = _MP_MANAGER
    with mgr.branch(SOURCE, name) as b:
        rows(b.url, "INSERT INTO items (name) VALUES (%s)", (name,))
        seen = rows(b.url, "SELECT name FROM items WHERE name LIKE 'mp-%%'")
    assert seen == [(name,)], seen
    return os.getpid(), name, b.port


def test_multiprocessing_fork_pool(manager):
    global _MP_MANAGER
    manager.info(SOURCE)
    _MP_MANAGER = manager
    names = [unique("mp") for _ in range(4)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        out = pool.map_async(_mp_work, names).get(timeout=DEADLINE_S)
    assert sorted(n for _, n, _ in out) == sorted(names)
    assert all(pid != os.getpid() for pid, _, _ in out)
    assert not set(names) & {i.name for i in manager.list()}
    assert manager.info(SOURCE).status == "running"


def test_fork_while_another_thread_is_inside_a_call(manager):
    """fork() while a thread of the parent is blocked in the core."""
    import threading

    name = unique("busy")
    t = threading.Thread(target=lambda: manager.branch(SOURCE, name).destroy())
    t.start()
    try:
        time.sleep(0.2)  # not a timing assert: any moment of the call will do
        result = run_in_fork(lambda: {"n": len(manager.list())})
        assert result["n"] >= 1
    finally:
        t.join()
    assert name not in [i.name for i in manager.list()]
