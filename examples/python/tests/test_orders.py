"""Each test writes to its own branch and never sees another test's writes.

The source database has a table ``items`` (id serial, name text) with 100
rows: ``make_source.py`` (next to ``pytest.ini``) makes it; the README's
"Try it" runs the whole thing. Run with ``-n 2`` (pytest-xdist) and the
tests of both workers write at the same time, each to a private branch.
"""

import betterpg
import psycopg
import pytest

SOURCE_ROWS = 100


def test_rows(betterpg_conn: psycopg.Connection) -> None:
    assert betterpg_conn.execute("SELECT count(*) FROM items").fetchone() == (SOURCE_ROWS,)


@pytest.mark.parametrize("n", range(8))
def test_writes_are_private(
    betterpg_conn: psycopg.Connection, request: pytest.FixtureRequest, n: int
) -> None:
    me = f"test:{request.node.nodeid}"
    betterpg_conn.execute("INSERT INTO items (name) VALUES (%s)", (me,))
    betterpg_conn.commit()
    seen = betterpg_conn.execute("SELECT name FROM items WHERE name LIKE 'test:%'").fetchall()
    assert seen == [(me,)], "another test's writes are visible"


def test_destructive_test_harms_nobody(betterpg_conn: psycopg.Connection) -> None:
    betterpg_conn.execute("DROP TABLE items")
    betterpg_conn.commit()
    # Every other test still sees its 100 rows: this was a private copy.


def test_schema_change(betterpg_branch: betterpg.Branch) -> None:
    # betterpg_branch is the Branch itself: url, port, timings ...
    with psycopg.connect(betterpg_branch.url, autocommit=True) as conn:
        conn.execute("ALTER TABLE items ADD COLUMN price numeric NOT NULL DEFAULT 0")
        assert conn.execute("SELECT sum(price) FROM items").fetchone() == (0,)
    assert betterpg_branch.is_branch and betterpg_branch.total_millis > 0


def test_url_for_any_driver(betterpg_url: str) -> None:
    assert betterpg_url.startswith("postgresql://")
    # SQLAlchemy: create_engine(betterpg.sqlalchemy_url(betterpg_url))
    assert betterpg.sqlalchemy_url(betterpg_url).startswith("postgresql+psycopg://")
    with psycopg.connect(betterpg_url) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (SOURCE_ROWS,)


def test_several_branches(betterpg_branch_factory) -> None:
    first = betterpg_branch_factory()
    with psycopg.connect(first.url, autocommit=True) as conn:
        conn.execute("DELETE FROM items WHERE id > 10")
    # A branch of the branch: sees the delete; the source does not.
    second = betterpg_branch_factory(first.name)
    with psycopg.connect(second.url) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (10,)
    assert second.parent == first.name


class TestReadOnlyShared:
    """Read-only tests may share one branch per module (``module_db``, see conftest.py)."""

    def test_count(self, module_db: betterpg.Branch) -> None:
        with psycopg.connect(module_db.url) as conn:
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (SOURCE_ROWS,)

    def test_ids(self, module_db: betterpg.Branch) -> None:
        with psycopg.connect(module_db.url) as conn:
            assert conn.execute("SELECT min(id), max(id) FROM items").fetchone() == (1, SOURCE_ROWS)
