"""Test environment of the betterpg Python tests: real ZFS, real PostgreSQL.

One file-backed pool (prefix ``bpgpy``, file under /tmp/betterpg-test/) and a
home for the whole session, holding the source database ``src`` with a table
``items`` of 100 rows. This suite's ports are 57000-57999: the main home
uses 57000-57899, extra homes made by single tests 57900-57999.

Missing prerequisites make the tests fail with a message, never skip.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Tuple, Union

import pytest
from helpers import (
    EXTRA_PORTS,
    MAIN_PORTS,
    SOURCE,
    SOURCE_ROWS,
    Home,
    make_home,
    require,
)

# The plugin's example/fixture suites are run as subprocesses, not collected here.
collect_ignore = ["suites"]


@pytest.fixture(scope="session")
def env() -> Iterator[Home]:
    """The session's home with the source database ``src`` (100 rows in ``items``)."""
    require()
    import psycopg

    h = make_home("main", MAIN_PORTS, size="1G")
    try:
        info = h.manager.create(SOURCE)  # type: ignore[attr-defined]
        with psycopg.connect(info.url, autocommit=True) as c:
            c.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)")
            c.execute(
                "INSERT INTO items (name) SELECT 'item-' || g FROM generate_series(1, %s) g",
                (SOURCE_ROWS,),
            )
        yield h
    finally:
        h.destroy()


@pytest.fixture(scope="session")
def manager(env: Home):
    """The BranchManager of the session's home."""
    return env.manager


@pytest.fixture
def extra_home() -> Iterator[Callable[..., Home]]:
    """Factory for further homes (own pool, ports 57900-57999), destroyed after the test."""
    require()
    made: List[Home] = []

    def make(tag: str = "x", ports: Tuple[int, int] = EXTRA_PORTS, size: Union[int, str] = "256M") -> Home:
        h = make_home(tag, ports, size)
        made.append(h)
        return h

    yield make
    for h in reversed(made):
        h.destroy()
