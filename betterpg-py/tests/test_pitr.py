"""Branch at a point in time from Python: ``configure(name, retain_wal=...)``
keeps a database's WAL (from its next start), ``Info.wal_retention`` shows
the window, ``branch(source, name, at=...)`` replays to exactly a time or an
LSN, and a point outside the window raises ``OutOfWindowError`` (also a
``ValueError``) and leaves nothing behind.
"""

from __future__ import annotations

import time

import betterpg
import pytest
from helpers import rows, unique


def test_branch_at_a_time_and_an_lsn_holds_exactly_what_was_committed(manager) -> None:
    prod = unique("pitr")
    try:
        check_point_in_time(manager, prod)
    finally:
        try:
            manager.destroy(prod, force=True)
        except betterpg.NotFoundError:
            pass


def check_point_in_time(mgr, prod: str) -> None:
    import psycopg

    db = mgr.create(prod)
    mgr.configure(prod, retain_wal="1h")
    pending = mgr.info(prod).wal_retention
    assert pending is not None and pending.active is False and pending.bases == 0
    mgr.stop(prod)
    mgr.start(prod)
    w = mgr.info(prod).wal_retention
    assert isinstance(w, betterpg.WalRetention)
    assert w.active and w.bases == 1 and w.retain_secs == 3600 and w.from_time

    after = []  # (id, server time, WAL position) read after each commit
    with psycopg.connect(db.url, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY)")
        for i in range(1, 13):
            c.execute("INSERT INTO t VALUES (%s)", (i,))
            t, lsn = c.execute("SELECT clock_timestamp()::text, pg_current_wal_insert_lsn()::text").fetchone()
            after.append((i, t, lsn))
            time.sleep(0.02)

    by_time = mgr.branch(prod, prod + "-t", at=after[4][1])
    assert rows(by_time.url, "SELECT count(*), min(id), max(id) FROM t") == [(5, 1, 5)]
    by_lsn = mgr.branch(prod, prod + "-l", at=after[8][2])
    assert rows(by_lsn.url, "SELECT count(*), min(id), max(id) FROM t") == [(9, 1, 9)]
    w = mgr.info(prod).wal_retention
    assert w.to_time and w.segments >= 1 and w.wal_bytes > 0
    assert mgr.info(prod).to_dict()["wal_retention"]["from_time"] == w.from_time

    names = [i.name for i in mgr.list()]
    with pytest.raises(betterpg.OutOfWindowError) as e:
        mgr.branch(prod, prod + "-e", at="2000-01-01 00:00:00+00")
    assert isinstance(e.value, ValueError) and e.value.kind == "out_of_window"
    assert w.from_time in str(e.value)
    with pytest.raises(betterpg.ConfigError):
        mgr.branch(prod, prod + "-b", at="yesterday")
    assert [i.name for i in mgr.list()] == names
