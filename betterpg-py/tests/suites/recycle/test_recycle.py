"""Pooled branches are recycled: a later test may get the branch (name and
port) an earlier test had, never anything it wrote.

Every test writes to its branch (a table of its own name, a row in
``items``) and checks it sees no other test's writes; it records (a JSON
line in $BPGPY_RECORD) the branch it got and this process's other plugin
branches. $BPGPY_DESTROY_AT=N: test N destroys its branch behind the
plugin's back (its rewind then fails). $BPGPY_CRASH_AT=N: test N waits
until $BPGPY_POOL_SIZE ready pooled branches of this process exist, records
every branch of the process, and dies without any teardown.
"""

import json
import os
import time

import pytest

N = int(os.environ.get("BPGPY_TESTS", "8"))
SIZE = int(os.environ.get("BPGPY_POOL_SIZE", "2"))


def mine(manager):
    prefix = f"pytest-{os.getpid()}-"
    return {i.name: i for i in manager.list() if i.name.startswith(prefix)}


def record(**kw):
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\n")


@pytest.mark.parametrize("n", range(N))
def test_write(betterpg_manager, betterpg_branch, betterpg_conn, n):
    c = betterpg_conn
    # Whatever an earlier test on this branch wrote is gone.
    assert c.execute("SELECT count(*) FROM items WHERE name LIKE 'test:%'").fetchone()[0] == 0
    tables = c.execute("SELECT relname FROM pg_class WHERE relname LIKE 'written_by_%'").fetchall()
    assert tables == []
    c.execute(f"CREATE TABLE written_by_{n} (n int)")
    c.execute(f"INSERT INTO written_by_{n} VALUES ({n})")
    c.execute("INSERT INTO items (name) VALUES (%s)", (f"test:{n}",))
    c.commit()
    assert c.execute("SELECT name FROM items WHERE name LIKE 'test:%'").fetchall() == [(f"test:{n}",)]
    port = c.execute("SELECT current_setting('port')::int").fetchone()[0]
    assert port == betterpg_branch.port
    others = mine(betterpg_manager)
    me = others.pop(betterpg_branch.name)
    assert me.rewindable == (os.environ.get("BPGPY_NO_RECYCLE") != "1"), me
    record(
        test=n,
        name=betterpg_branch.name,
        port=port,
        url=betterpg_branch.url,
        others=sorted(others),
        worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
    )
    if n == int(os.environ.get("BPGPY_DESTROY_AT", "-1")):
        betterpg_manager.destroy(betterpg_branch.name)
    if n == int(os.environ.get("BPGPY_CRASH_AT", "-1")):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready = [b for b, i in mine(betterpg_manager).items() if b != betterpg_branch.name and i.state == "ready"]
            if len(ready) >= SIZE:
                break
            time.sleep(0.1)
        with open(os.environ["BPGPY_CRASHED"], "w") as f:
            f.write("\n".join(sorted(mine(betterpg_manager))) + "\n")
        os._exit(3)
