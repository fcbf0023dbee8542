"""The warm pool hands over branches made before the test asked.

test_0_fill waits (polling the catalog, at most $BPGPY_POOL_WAIT seconds)
until the pool holds $BPGPY_POOL_SIZE ready branches besides its own and
records their names; the next tests record the branch each got. Every
record is a JSON line in $BPGPY_RECORD.
"""

import json
import os
import time

import pytest

SIZE = int(os.environ.get("BPGPY_POOL_SIZE", "2"))


def record(**kw):
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\n")


def others(manager, mine):
    prefix = f"pytest-{os.getpid()}-"
    return {i.name: i.state for i in manager.list() if i.name.startswith(prefix) and i.name != mine}


def test_0_fill(betterpg_manager, betterpg_branch):
    deadline = time.monotonic() + float(os.environ.get("BPGPY_POOL_WAIT", "300"))
    while True:
        seen = others(betterpg_manager, betterpg_branch.name)
        ready = sorted(n for n, state in seen.items() if state == "ready")
        if len(ready) >= SIZE:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the pool never held {SIZE} ready branches: {seen}")
        time.sleep(0.1)
    record(test="fill", name=betterpg_branch.name, ready=ready, others=sorted(seen))


@pytest.mark.parametrize("n", range(1, 5))
def test_take(betterpg_manager, betterpg_branch, betterpg_conn, n):
    assert betterpg_conn.execute("SELECT count(*) FROM items").fetchone()[0] > 0
    record(
        test=f"take{n}",
        name=betterpg_branch.name,
        others=sorted(others(betterpg_manager, betterpg_branch.name)),
    )
