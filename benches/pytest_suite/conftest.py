"""The same suite on three fixtures, chosen by $BENCH_VARIANT:

* ``betterpg``: betterpg's pytest plugin (``betterpg_conn``: a branch of the
  betterpg source per test, private to it). The source already holds
  the pgbench data (benches/run.py loaded it). benches/run.py runs it with
  the plugin's defaults (a warm pool of ready branches, each rewound after
  its test and handed out again), the pool without recycling
  (``--betterpg-no-recycle``: background destroys), without the pool
  (``--betterpg-pool-size=0``), with ``--betterpg-sync-destroy`` too, and
  under pytest-xdist.
* ``pytest_postgresql``: pytest-postgresql on an existing PostgreSQL 15
  server (``postgresql_noproc``): its session fixture creates the template
  database and loads the pgbench data into it once; every test then gets
  ``CREATE DATABASE ... TEMPLATE`` (the server's default strategy) and a
  ``DROP DATABASE`` after it. Also run under pytest-xdist.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import recorder

VARIANT = os.environ.get("BENCH_VARIANT", "")
SCALE = int(os.environ.get("BENCH_SCALE", "1"))

if VARIANT == "pytest_postgresql":
    from pytest_postgresql import factories

    def load_pgbench(host, port, user, dbname, password, **_kw):  # type: ignore[no-untyped-def]
        """Template loader: the same pgbench data set as the betterpg source."""
        env = dict(os.environ, PGHOST=str(host), PGPORT=str(port), PGUSER=str(user),
                   PGPASSWORD=str(password), PGDATABASE=str(dbname))
        subprocess.run([os.environ["BENCH_PGBENCH"], "-i", "-q", "-s", str(SCALE), "-I", "dtGvp"],
                       env=env, check=True, capture_output=True)

    ptpg_proc = factories.postgresql_noproc(
        host="127.0.0.1",
        port=int(os.environ.get("BENCH_PG_PORT", "0")),
        user="postgres",
        password=os.environ.get("BENCH_PG_PASSWORD", ""),
        dbname="ptpg",
        load=[load_pgbench],
    )
    ptpg = factories.postgresql("ptpg_proc")
    SESSION_FIXTURE, DB_FIXTURE = "ptpg_proc", "ptpg"
elif VARIANT == "betterpg":
    SESSION_FIXTURE, DB_FIXTURE = "_betterpg_session", "betterpg_conn"
else:
    raise RuntimeError(f"BENCH_VARIANT must be betterpg or pytest_postgresql, not {VARIANT!r}")


@pytest.fixture(scope="session", autouse=True)
def _bench_session(request):  # type: ignore[no-untyped-def]
    """Set up the variant's session fixture first and record how long it took."""
    t0 = time.perf_counter()
    request.getfixturevalue(SESSION_FIXTURE)
    if VARIANT.startswith("betterpg"):
        request.getfixturevalue("betterpg_source")
    recorder.SESSION_SETUP_S = time.perf_counter() - t0


@pytest.fixture
def db(request):  # type: ignore[no-untyped-def]
    """A psycopg connection to a private database holding the pgbench data."""
    return request.getfixturevalue(DB_FIXTURE)
