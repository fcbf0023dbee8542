"""gc's report reaches Python whole: what it removed and what it kept.

A process killed in the middle of a branch leaves a clone; an operator then
snapshots that clone by hand. gc must leave the clone (and the snapshot it
was cloned from) alone and say so in ``GcReport.kept``; once the operator's
snapshot is gone, gc removes the leftovers.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import betterpg
import pytest
from helpers import SOURCE, unique

DEADLINE_S = 120

HELPER = """
import sys, betterpg
betterpg.BranchManager(sys.argv[1]).branch(sys.argv[2], sys.argv[3])
print("the branch finished: it should have been killed", flush=True)
"""


def kill_mid_branch(home: str, name: str) -> None:
    """Branch SOURCE -> name in a subprocess paused after the clone, and SIGKILL it there."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER, home, SOURCE, name],
        env=dict(os.environ, BETTERPG_FAULT="after_clone:pause"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = []
    try:
        end = time.monotonic() + DEADLINE_S
        while True:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                pytest.fail(f"the branch never paused after the clone within {DEADLINE_S}s: {said}")
            line = proc.stderr.readline()
            if not line:
                pytest.fail(
                    "the branching process exited before pausing (is the module built with "
                    f"the fault-injection feature? scripts/test-python.sh does): {said}"
                )
            said.append(line.strip())
            if "pausing at after_clone" in line:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def zfs(*args: str) -> None:
    r = subprocess.run(["zfs", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"zfs {' '.join(args)}: {r.stderr}"


def test_gc_reports_what_it_keeps_because_an_operator_made_it(env, manager):
    name = unique("gckept")
    kill_mid_branch(str(env.path), name)
    clone = manager.info(name).dataset
    manual = f"{clone}@operator-manual"
    zfs("snapshot", manual)
    try:
        for dry_run in (True, False):
            report = manager.gc(dry_run=dry_run)
            assert report.dry_run is dry_run
            assert all(isinstance(i, betterpg.GcItem) for i in report.kept + report.items), report
            kinds = {(i.what, i.name) for i in report.kept}
            assert ("dataset", clone) in kinds, report
            reason = next(i.reason for i in report.kept if i.name == clone)
            assert manual in reason, reason
            # The snapshot of the source it was cloned from stays too.
            assert any(i.what == "snapshot" and f"bpg-{name}-" in i.name for i in report.kept), report
            # Nothing of it is removed, nor its catalog entry.
            assert not [i for i in report.items if name in i.name], report
            assert list(report) == report.items and len(report) == len(report.items)
            assert "kept=[GcItem(what=" in repr(report), repr(report)
        assert name in [i.name for i in manager.list()]
    finally:
        zfs("destroy", manual)
    # Without the operator's snapshot, gc removes the leftovers (a dry run
    # first: the same list), and keeps nothing.
    dry = manager.gc(dry_run=True)
    assert dry.kept == []
    assert ("dataset", clone) in {(i.what, i.name) for i in dry.items}, dry
    done = manager.gc()
    assert done.items == dry.items and done.kept == []
    assert name not in [i.name for i in manager.list()]
    with pytest.raises(betterpg.NotFoundError):
        manager.info(name)


def test_a_branch_whose_owner_process_is_gone_is_destroyed_by_gc(env, manager):
    """``owner_pid=``: kept while that process runs; once it is gone gc
    lists it (dry run, nothing changed) and destroys it; a pid of no
    process raises ConfigError and makes nothing."""
    name = unique("owned")
    with pytest.raises(betterpg.ConfigError):
        manager.branch(SOURCE, name, owner_pid=2147483000)
    with pytest.raises(betterpg.NotFoundError):
        manager.info(name)
    owner = subprocess.Popen(["sleep", "600"])
    try:
        b = manager.branch(SOURCE, name, owner_pid=owner.pid)
        assert b.owner_pid == owner.pid
        assert manager.info(SOURCE).owner_pid is None
        assert name not in [i.name for i in manager.gc(dry_run=True).items]
    finally:
        owner.kill()
        owner.wait()
    dry = manager.gc(dry_run=True)
    assert [(i.what, i.name) for i in dry.items if i.name == name] == [("branch", name)], dry.items
    assert manager.info(name).status == "running"
    done = manager.gc()
    item = next(i for i in done.items if i.name == name)
    assert item.what == "branch" and str(owner.pid) in item.reason, item
    with pytest.raises(betterpg.NotFoundError):
        manager.info(name)
