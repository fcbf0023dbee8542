"""The Python API end to end, on real ZFS and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import betterpg
import psycopg
import pytest
from helpers import MAIN_PORTS, SOURCE, SOURCE_ROWS, rows, unique


def test_package_exports():
    assert betterpg.__version__
    for name in ["BranchManager", "Info", "Branch", "StepTiming", "PoolUsage", "BetterPgError"]:
        assert name in betterpg.__all__ and hasattr(betterpg, name)
    assert issubclass(betterpg.Branch, betterpg.Info)
    assert betterpg.BranchManager.__module__ == "betterpg"


def test_manager_properties(env, manager):
    assert manager.home == env.path
    assert manager.dataset == f"{env.pool}/betterpg"
    assert manager.port_range == MAIN_PORTS
    assert repr(manager) == f"BranchManager(home='{env.path}')"
    # A second manager on the same home sees the same databases.
    other = betterpg.BranchManager(str(env.path))
    assert [i.name for i in other.list()] == [i.name for i in manager.list()]


def test_source_info(manager):
    info = manager.info(SOURCE)
    assert isinstance(info, betterpg.Info) and not isinstance(info, betterpg.Branch)
    assert info.name == SOURCE
    assert info.kind == "database" and not info.is_branch
    assert info.parent is None and info.mode is None and info.snapshot is None
    assert info.status == "running" and info.running
    assert info.state == "ready"
    assert MAIN_PORTS[0] <= info.port <= MAIN_PORTS[1]
    assert info.url.startswith("postgresql://postgres:") and f":{info.port}/" in info.url
    assert info.used_bytes > 0 and info.referenced_bytes > 0
    assert info.pg_version >= 9
    assert info.dataset.endswith(f"/betterpg/{SOURCE}")
    assert info.runtime == "native"
    assert info.created_at > 1_600_000_000
    assert manager.url(SOURCE) == info.url
    assert rows(info.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]


def test_branch_end_to_end(manager):
    name = unique("api")
    b = manager.branch(SOURCE, name)
    try:
        assert isinstance(b, betterpg.Branch) and isinstance(b, betterpg.Info)
        assert b.name == name and b.kind == "branch" and b.is_branch
        assert b.parent == SOURCE
        assert b.status == "running"
        assert b.mode == "application-consistent"
        assert b.source_was_running is True
        # Cut off from the source: its own password; the source's is refused.
        iso = b.isolation
        assert iso["password_replaced"] is True and iso["warnings"] == []
        assert b.to_dict()["isolation"] == iso
        source_url = manager.info(SOURCE).url
        source_pw = source_url.split("://postgres:")[1].split("@")[0]
        branch_pw = b.url.split("://postgres:")[1].split("@")[0]
        assert source_pw != branch_pw
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(b.url.replace(branch_pw, source_pw)).close()
        assert b.snapshot and b.snapshot.startswith(manager.info(SOURCE).dataset + "@")
        assert b.port != manager.info(SOURCE).port
        assert MAIN_PORTS[0] <= b.port <= MAIN_PORTS[1]
        assert b.referenced_bytes > 0
        assert b.used_bytes >= 0
        assert b.manager is manager
        # Timing breakdown: named steps, in order, that add up to at most the total.
        steps = b.timings
        assert steps and all(isinstance(s, betterpg.StepTiming) for s in steps)
        assert [s.step for s in steps] == list(b.timing_breakdown)
        assert all(s.millis >= 0 for s in steps)
        assert "snapshot" in b.timing_breakdown and "clone" in b.timing_breakdown
        assert sum(s.millis for s in steps) <= b.total_millis + 1e-6
        # Same data as the source, and writes stay on their side.
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        rows(b.url, "INSERT INTO items (name) VALUES ('only-in-branch')")
        rows(manager.info(SOURCE).url, "SELECT 1")
        assert rows(manager.url(SOURCE), "SELECT count(*) FROM items WHERE name = 'only-in-branch'") == [(0,)]
        assert rows(b.url, "SELECT count(*) FROM items WHERE name = 'only-in-branch'") == [(1,)]
        # Listed after its parent, findable by name.
        names = [i.name for i in manager.list()]
        assert names.index(SOURCE) < names.index(name)
        status = manager.status()
        assert isinstance(status, betterpg.Status)
        assert [i.name for i in status] == names and len(status) == len(names)
        assert [i.name for i in status.entries] == names
        assert status.get(name).name == name and status.get(name).parent == SOURCE
        assert status.get(unique("nope")) is None
        assert isinstance(status.pool, betterpg.PoolUsage)
        assert status.pool.pool == manager.pool_usage().pool and status.pool.used_bytes > 0
        assert name in repr(status) and "pool=PoolUsage(" in repr(status)
    finally:
        manager.destroy(name)
    with pytest.raises(betterpg.NotFoundError):
        manager.info(name)
    assert b.url  # the snapshot object stays readable after destroy


def test_branch_is_a_context_manager(manager):
    name = unique("ctx")
    with manager.branch(SOURCE, name) as b:
        assert b.name == name
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        assert not b.destroyed
    assert b.destroyed
    assert name not in [i.name for i in manager.list()]


def test_context_manager_destroys_on_exception(manager):
    name = unique("ctxerr")
    with pytest.raises(ZeroDivisionError):
        with manager.branch(SOURCE, name):
            raise ZeroDivisionError("inside the block")
    assert name not in [i.name for i in manager.list()]


def test_context_manager_destroys_branches_of_the_branch(manager):
    outer, inner = unique("outer"), unique("inner")
    with manager.branch(SOURCE, outer):
        manager.branch(outer, inner)
        assert manager.info(inner).parent == outer
    names = [i.name for i in manager.list()]
    assert outer not in names and inner not in names


def test_explicit_destroy_then_exit_is_fine(manager):
    name = unique("dd")
    with manager.branch(SOURCE, name) as b:
        b.destroy()
        assert b.destroyed
    assert name not in [i.name for i in manager.list()]


def test_crash_consistent_mode(manager):
    with manager.branch(SOURCE, unique("crash"), mode="crash-consistent") as b:
        assert b.mode == "crash-consistent"
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        # reset takes the same mode= (positional too, as in branch)
        r = manager.reset(b.name, "application-consistent")
        assert r.mode == "application-consistent"


def test_fast_is_a_deprecated_alias_of_mode(manager):
    with pytest.warns(DeprecationWarning, match="mode="):
        b = manager.branch(SOURCE, unique("fast"), fast=True)
    with b:
        assert b.mode == "crash-consistent"
        with pytest.warns(DeprecationWarning):
            r = manager.reset(b.name, fast=False)
        assert r.mode == "application-consistent"
    # Both spellings must agree; mode= alone is the way.
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="disagree"):
        manager.branch(SOURCE, unique("both"), mode="application-consistent", fast=True)


def test_unknown_mode_is_refused_before_anything_is_made(manager):
    name = unique("badmode")
    for bad in ["fast", "CRASH-CONSISTENT", ""]:
        with pytest.raises(betterpg.ConfigError, match="crash-consistent"):
            manager.branch(SOURCE, name, mode=bad)
    assert name not in [i.name for i in manager.list()]


def zfs_quota(dataset: str) -> int:
    out = subprocess.run(
        ["zfs", "get", "-H", "-p", "-o", "value", "quota", dataset],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.parametrize("quota", [128 << 20, "128M"])
def test_branch_with_a_quota(manager, quota):
    with manager.branch(SOURCE, unique("quota"), quota=quota) as b:
        assert zfs_quota(b.dataset) == 128 << 20
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
    with manager.branch(SOURCE, unique("noquota")) as b:
        assert zfs_quota(b.dataset) == 0


def test_branch_of_a_branch(manager):
    a, c = unique("a"), unique("c")
    with manager.branch(SOURCE, a) as ba:
        rows(ba.url, "INSERT INTO items (name) VALUES ('from-a')")
        with manager.branch(a, c) as bc:
            assert bc.parent == a
            assert rows(bc.url, "SELECT count(*) FROM items WHERE name = 'from-a'") == [(1,)]


def test_stop_and_start(manager):
    with manager.branch(SOURCE, unique("ss")) as b:
        rows(b.url, "INSERT INTO items (name) VALUES ('kept')")
        stopped = manager.stop(b.name)
        assert stopped.status == "stopped" and not stopped.running
        assert manager.info(b.name).status == "stopped"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(b.url, connect_timeout=3)
        assert manager.stop(b.name).status == "stopped"  # idempotent
        started = manager.start(b.name)
        assert started.status == "running"
        assert started.port == b.port
        assert rows(b.url, "SELECT count(*) FROM items WHERE name = 'kept'") == [(1,)]


def test_logs(manager):
    with manager.branch(SOURCE, unique("logs")) as b:
        text = manager.logs(b.name)
        assert "database system is ready to accept connections" in text
        last = manager.logs(b.name, tail=2)
        assert 1 <= len(last.splitlines()) <= 2
        assert text.rstrip("\n").endswith(last.rstrip("\n"))


def test_pool_usage(env, manager):
    u = manager.pool_usage()
    assert isinstance(u, betterpg.PoolUsage)
    assert u.pool == env.pool
    assert u.used_bytes > 0 and u.available_bytes > 0
    assert 0 < u.fraction_used < 1
    assert u.warning is False
    assert "PoolUsage(pool=" in repr(u)


def test_repr_hides_the_password(manager):
    info = manager.info(SOURCE)
    password = info.url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password and password != "***"
    assert password not in repr(info)
    assert "postgres:***@" in repr(info)
    assert repr(info).startswith(f"Info(name='{SOURCE}', kind='database', parent=None")
    with manager.branch(SOURCE, unique("repr")) as b:
        assert password not in repr(b)
        assert repr(b).startswith(f"Branch(name='{b.name}', parent='{SOURCE}'")
        assert all(repr(s).startswith("StepTiming(step='") for s in b.timings)


def test_to_dict_is_json(manager):
    d = manager.info(SOURCE).to_dict()
    assert d["name"] == SOURCE and d["kind"] == "database" and d["parent"] is None
    json.dumps(d)
    with manager.branch(SOURCE, unique("dict")) as b:
        bd = b.to_dict()
        assert bd["parent"] == SOURCE and bd["total_millis"] == b.total_millis
        assert [s for s, _ in bd["timings"]] == [s.step for s in b.timings]
        json.dumps(bd)


def test_sqlalchemy_url(manager):
    info = manager.info(SOURCE)
    u = betterpg.sqlalchemy_url(info)
    assert u.startswith("postgresql+psycopg://postgres:") and u.endswith(f":{info.port}/postgres")
    assert betterpg.sqlalchemy_url(info.url, driver="psycopg2").startswith("postgresql+psycopg2://")
    with pytest.raises(ValueError):
        betterpg.sqlalchemy_url("mysql://x")


def test_create_and_destroy_a_database(manager):
    name = unique("db")
    info = manager.create(name)
    try:
        assert info.kind == "database" and info.status == "running"
        assert rows(info.url, "SELECT current_setting('port')::int") == [(info.port,)]
    finally:
        manager.destroy(name)
    assert name not in [i.name for i in manager.list()]


def test_gil_is_released_during_calls(manager):
    """A Python thread keeps running while the main thread is inside branch()."""
    samples: list = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.is_set():
            samples.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        name = unique("gil")
        t0 = time.monotonic()
        b = manager.branch(SOURCE, name)
        t1 = time.monotonic()
        manager.destroy(name)
    finally:
        stop.set()
        t.join()
    # Structural, not a timing assert: if the GIL were held for the whole
    # call, the ticker could not have run at all in its middle half.
    lo, hi = t0 + (t1 - t0) * 0.25, t0 + (t1 - t0) * 0.75
    assert any(lo <= s <= hi for s in samples), (t0, t1, len(samples))
    assert b.name == name


def test_threads_share_one_manager(manager):
    names = [unique("thr") for _ in range(3)]
    results: dict = {}
    errors: list = []

    def work(n: str) -> None:
        try:
            b = manager.branch(SOURCE, n)
            results[n] = b.port
            rows(b.url, "INSERT INTO items (name) VALUES (%s)", (n,))
            assert rows(b.url, "SELECT name FROM items WHERE name LIKE 'thr-%%'") == [(n,)]
            b.destroy()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results.values())) == 3
    assert not set(names) & {i.name for i in manager.list()}


def test_init_accepts_size_in_bytes_and_dataset(extra_home):
    h = extra_home("sz", size=256 << 20)
    assert h.manager.dataset == f"{h.pool}/betterpg"
    assert h.manager.pool_usage().pool == h.pool
    # init on an existing pool via dataset=...
    home2 = h.path.parent / f"{h.pool}-home2"
    try:
        m2 = betterpg.BranchManager.init(home2, dataset=f"{h.pool}/second", port_range=(57980, 57989))
        assert m2.dataset == f"{h.pool}/second"
        assert m2.list() == []
    finally:
        import shutil

        shutil.rmtree(home2, ignore_errors=True)


def _zfs_value(dataset, prop):
    out = subprocess.run(["zfs", "get", "-H", "-o", "value", prop, dataset], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_init_zfs_properties(extra_home):
    # betterpg's defaults for PostgreSQL, on the dataset and recorded.
    h = extra_home("zp")
    props = h.manager.zfs_properties
    assert props["recordsize"] == "8K" and props["atime"] == "off", props
    assert _zfs_value(h.manager.dataset, "recordsize") == "8K"
    # Overrides reach ZFS and the record.
    home2 = h.path.parent / f"{h.pool}-home2"
    home3 = h.path.parent / f"{h.pool}-home3"
    import shutil

    try:
        m2 = betterpg.BranchManager.init(
            home2,
            dataset=f"{h.pool}/tuned",
            port_range=(57980, 57989),
            zfs_properties={"recordsize": "16K", "atime": "on"},
        )
        assert m2.zfs_properties["recordsize"] == "16K" and m2.zfs_properties["atime"] == "on"
        assert _zfs_value(f"{h.pool}/tuned", "recordsize") == "16K"
        assert _zfs_value(f"{h.pool}/tuned", "atime") == "on"
        # A bad value: ConfigError naming it, nothing made.
        with pytest.raises(betterpg.ConfigError, match="recordsize"):
            betterpg.BranchManager.init(home3, dataset=f"{h.pool}/bad", zfs_properties={"recordsize": "3K"})
        with pytest.raises(betterpg.ConfigError, match="sync"):
            betterpg.BranchManager.init(home3, dataset=f"{h.pool}/bad", zfs_properties={"sync": "disabled"})
        assert subprocess.run(["zfs", "list", f"{h.pool}/bad"], capture_output=True).returncode != 0
        assert not home3.exists()
    finally:
        shutil.rmtree(home2, ignore_errors=True)
        shutil.rmtree(home3, ignore_errors=True)


def test_default_home_from_env(env, monkeypatch):
    monkeypatch.setenv("BPG_HOME", str(env.path))
    assert betterpg.BranchManager().home == env.path


def test_reset_throws_branch_changes_away(manager):
    name = unique("reset")
    with manager.branch(SOURCE, name) as b:
        rows(b.url, "INSERT INTO items (name) VALUES ('to-be-thrown-away')")
        again = manager.reset(name)
        assert isinstance(again, betterpg.Branch)
        assert again.port == b.port and again.url == b.url
        assert again.password_changed is False and b.password_changed is False
        assert again.snapshot != b.snapshot
        assert rows(again.url, "SELECT count(*) FROM items WHERE name = 'to-be-thrown-away'") == [(0,)]
        assert rows(again.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
    with pytest.raises(betterpg.UnsupportedError):
        manager.reset(SOURCE)


def test_reset_without_the_password_file_gives_a_new_password(env, manager):
    name = unique("resetpw")
    with manager.branch(SOURCE, name) as b:
        (env.path / "secrets" / name).unlink()
        again = manager.reset(name)
        assert again.password_changed is True
        assert again.port == b.port and again.url != b.url
        assert (env.path / "secrets" / name).stat().st_mode & 0o777 == 0o600
        assert rows(again.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        assert manager.url(name) == again.url


def test_gc_finds_nothing_on_a_clean_home(manager):
    report = manager.gc(dry_run=True)
    assert isinstance(report, betterpg.GcReport)
    assert report.dry_run is True
    assert report.items == [] and report.kept == []
    assert list(report) == [] and len(report) == 0
