"""Every test gets a private copy of the pgbench data set and changes it.

Each test creates the same table and writes to the same account: that only
works when no test sees another test's writes. No timing asserts: benches/run.py reads the
durations pytest reports.
"""

from __future__ import annotations

import os

import pytest

N = int(os.environ.get("BENCH_TESTS", "20"))
SCALE = int(os.environ.get("BENCH_SCALE", "1"))


@pytest.mark.parametrize("i", range(N))
def test_private_database(db, i):  # type: ignore[no-untyped-def]
    assert db.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0] == SCALE
    # Fails with "already exists" if any other test's database were visible.
    db.execute("CREATE TABLE bench_private (test int)")
    db.execute("INSERT INTO bench_private VALUES (%s)", (i,))
    db.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1")
    db.commit()
    assert db.execute("SELECT array_agg(test) FROM bench_private").fetchone()[0] == [i]
