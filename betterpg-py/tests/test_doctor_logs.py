"""doctor and following a server's log, through the Python surface."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

import betterpg
from helpers import SOURCE


def test_doctor_reports_an_initialised_home(env) -> None:
    d = betterpg.BranchManager.doctor(env.path)
    assert isinstance(d, betterpg.DoctorReport)
    assert d.ok and bool(d), d.problems
    assert d.problems == []
    assert d.initialised
    assert Path(d.home) == Path(env.path)
    assert d.storage_backend in ("cli", "libzfs")
    assert d.storage_reason
    assert d.zfs_flavor in ("openzfs", "legacy")
    assert d.zpool_list_ok
    assert d.postgres_major == 15
    assert d.postgres_bin and Path(d.postgres_bin, "postgres").exists()
    assert d.os_user == "postgres"
    assert isinstance(d.warnings, list)
    assert "ok=True" in repr(d)


def test_doctor_checks_the_machine_for_a_home_not_initialised(tmp_path: Path) -> None:
    d = betterpg.BranchManager.doctor(tmp_path / "nothing-here")
    assert not d.initialised
    assert d.postgres_major == 15


def test_follow_logs_yields_the_tail_then_what_the_server_writes(env, manager) -> None:
    with manager.follow_logs(SOURCE, tail=2) as f:
        assert isinstance(f, betterpg.LogFollower)
        first = f.read(timeout=10)
        assert first is not None and first.count("\n") == 2, first
        with psycopg.connect(manager.url(SOURCE), autocommit=True) as c:
            c.execute("DO $$BEGIN RAISE LOG 'bpg-py-follow-marker'; END$$")
        seen = ""
        deadline = time.monotonic() + 10
        while "bpg-py-follow-marker" not in seen and time.monotonic() < deadline:
            seen += f.read(timeout=0.5) or ""
        assert "bpg-py-follow-marker" in seen
        assert not f.ended  # a native server's log never ends
        # Iteration blocks until a chunk comes.
        with psycopg.connect(manager.url(SOURCE), autocommit=True) as c:
            c.execute("DO $$BEGIN RAISE LOG 'bpg-py-iter-marker'; END$$")
        for chunk in f:
            if "bpg-py-iter-marker" in chunk:
                break
    assert f.ended
    assert f.read(timeout=0) is None
    with pytest.raises(StopIteration):
        next(f)


def test_follow_logs_of_an_unknown_name_raises(manager) -> None:
    with pytest.raises(betterpg.NotFoundError):
        manager.follow_logs("nosuch")
    with pytest.raises(ValueError):
        manager.follow_logs(SOURCE).read(timeout=-1)
