"""Each test writes to its branch, checks it sees only its own write, and
records (as a JSON line in $BPGPY_RECORD) which branch it had."""

import json
import os
import subprocess

import pytest


@pytest.mark.parametrize("n", range(12))
def test_private(betterpg_manager, betterpg_branch, betterpg_conn, request, n):
    me = f"test:{request.node.nodeid}"
    betterpg_conn.execute("INSERT INTO items (name) VALUES (%s)", (me,))
    betterpg_conn.commit()
    seen = betterpg_conn.execute("SELECT name FROM items WHERE name LIKE 'test:%'").fetchall()
    assert seen == [(me,)]
    port = betterpg_conn.execute("SELECT current_setting('port')::int").fetchone()[0]
    assert port == betterpg_branch.port
    # Branches of earlier tests of this process still in the catalog
    # (background destroys not done yet).
    mine = f"pytest-{os.getpid()}-"
    others = [
        i.name
        for i in betterpg_manager.list()
        if i.name.startswith(mine) and i.name != betterpg_branch.name
    ]
    record = {
        "nodeid": request.node.nodeid,
        "others": others,
        "name": betterpg_branch.name,
        "parent": betterpg_branch.parent,
        "port": port,
        "mode": betterpg_branch.mode,
        "pid": os.getpid(),
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "quota": subprocess.run(
            ["zfs", "get", "-H", "-p", "-o", "value", "quota", betterpg_branch.dataset],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
    }
    with open(os.environ["BPGPY_RECORD"], "a") as f:
        f.write(json.dumps(record) + "\n")
