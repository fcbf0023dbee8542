"""follow from Python: a replica of a real PostgreSQL primary (a database of
the home, reached over a replication connection on 127.0.0.1, not through
its files), with a slot it creates on the primary; the replica is branched
and the branch holds the primary's rows; destroying the replica drops the
slot. Refusals (unreachable, a wrong password, a bad slot name, binaries
of another major version) raise the typed exception and leave nothing:
no entry, no replica directory, no slot on the primary.
"""

from __future__ import annotations

from pathlib import Path

import betterpg
import pytest
from helpers import EXTRA_PORTS, rows


def slots(url: str) -> list:
    return [r[0] for r in rows(url, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def nothing_left(h, mgr, primary_url: str, name: str = "rep") -> None:
    assert name not in {i.name for i in mgr.list()}
    assert not (h.path / "replicas" / name).exists()
    assert not (h.path / "secrets" / name).exists()
    assert slots(primary_url) == []


def test_follow_branch_refusals(extra_home) -> None:
    h = extra_home("follow", ports=EXTRA_PORTS, size="512M")
    mgr = h.manager
    src = mgr.create("prim")
    url = src.url
    rows(url, "CREATE TABLE t (x int)")
    rows(url, "INSERT INTO t SELECT generate_series(1, 50)")
    pw = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]

    # Nothing listens on port 1: unreachable, no SQLSTATE.
    with pytest.raises(betterpg.PostgresError) as e:
        mgr.follow("rep", "postgresql://postgres:pw@127.0.0.1:1/postgres", slot="py_slot")
    assert "check that the primary runs" in str(e.value)
    assert e.value.sqlstate is None
    nothing_left(h, mgr, url)
    # A wrong password: the server's words, 28P01.
    with pytest.raises(betterpg.PostgresError) as e:
        mgr.follow("rep", url.replace(pw, "wrong"), slot="py_slot")
    assert "password authentication failed" in str(e.value)
    assert e.value.sqlstate == "28P01"
    assert "wrong" not in str(e.value)
    nothing_left(h, mgr, url)
    # Refused before the primary is asked.
    with pytest.raises(betterpg.ConfigError, match="invalid slot name"):
        mgr.follow("rep", url, slot="Bad-Slot")
    # Binaries of another major version than the primary's.
    pg16 = Path("/var/cache/betterpg/pg/16/bin")
    assert (pg16 / "postgres").is_file(), f"PostgreSQL 16 missing in {pg16}: run scripts/pg-versions.sh 16"
    with pytest.raises(betterpg.VersionMismatchError, match="runs PostgreSQL 15"):
        mgr.follow("rep", url, slot="py_slot", pg_bin=pg16)
    # A policy for its branches whose file is not there.
    with pytest.raises(betterpg.ConfigError, match="/nonexistent/m.sql"):
        mgr.follow("rep", url, slot="py_slot", settings={"mask": ["/nonexistent/m.sql"]})
    nothing_left(h, mgr, url)

    # The real thing, with a slot on the primary and its branches' policy.
    rep = mgr.follow("rep", url, slot="py_slot", settings={"credentials": "keep"})
    assert mgr.settings("rep")["credentials"] == "keep"
    assert rep.kind == "replica" and rep.status == "running"
    assert pw not in rep.url
    assert slots(url) == ["py_slot"]
    assert (h.path / "replicas" / "rep").is_dir()
    rows(url, "INSERT INTO t VALUES (51)")
    dev = mgr.branch("rep", "dev")
    assert rows(dev.url, "SELECT count(*) FROM t") == [(51,)]
    rows(dev.url, "INSERT INTO t VALUES (-1)")
    assert rows(url, "SELECT count(*) FROM t WHERE x < 0") == [(0,)]
    mgr.destroy("rep", force=True)
    nothing_left(h, mgr, url)
    assert "dev" not in {i.name for i in mgr.list()}


def test_rebuild_keeps_the_old_branches_running(extra_home) -> None:
    """follow, branch, rebuild (the stored URL and password): a new base
    backup takes the replica's place on its port, the branch of the old
    replica runs on, the rebuilt replica serves again (a new branch holds
    the primary's newer rows); what is not a replica is refused."""
    h = extra_home("rebuild", ports=EXTRA_PORTS, size="512M")
    mgr = h.manager
    src = mgr.create("prim")
    url = src.url
    rows(url, "CREATE TABLE t (x int)")
    rows(url, "INSERT INTO t SELECT generate_series(1, 50)")
    rep = mgr.follow("rep", url)
    dev = mgr.branch("rep", "dev")
    assert rows(dev.url, "SELECT count(*) FROM t") == [(50,)]

    with pytest.raises(betterpg.InvalidStateError, match="not a replica"):
        mgr.follow("prim", rebuild=True)
    with pytest.raises(betterpg.NotFoundError):
        mgr.follow("nosuch", rebuild=True)

    rows(url, "INSERT INTO t VALUES (51)")
    again = mgr.follow("rep", rebuild=True)
    assert again.kind == "replica" and again.status == "running"
    assert again.port == rep.port
    assert again.dataset != rep.dataset
    # The old replica's branch runs on, on its old data, and takes writes.
    assert mgr.info("dev").status == "running"
    assert rows(dev.url, "SELECT count(*) FROM t") == [(50,)]
    rows(dev.url, "INSERT INTO t VALUES (-1)")
    # The rebuilt replica serves again.
    rows(url, "INSERT INTO t VALUES (52)")
    dev2 = mgr.branch("rep", "dev2")
    assert rows(dev2.url, "SELECT count(*) FROM t") == [(52,)]
    assert rows(url, "SELECT count(*) FROM t WHERE x < 0") == [(0,)]
    mgr.destroy("rep", force=True)
    nothing_left(h, mgr, url)
    assert {i.name for i in mgr.list()} == {"prim"}
