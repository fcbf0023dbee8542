"""follow from Python with a primary that is really remote: a PostgreSQL
server in a network namespace of its own, at its own address across a veth
link, not on ZFS (tests/remote.py). Its rows reach the replica and a branch
of it; the branch's writes never reach the primary; destroying the replica
drops the slot it made on the primary and leaves nothing in the home.
"""

from __future__ import annotations

import time

import betterpg
import pytest
from helpers import EXTRA_PORTS, rows
from remote import REPL_USER, RemotePrimary


def test_follow_a_primary_at_another_address(extra_home) -> None:
    h = extra_home("remote", ports=EXTRA_PORTS, size="512M")
    mgr = h.manager
    with RemotePrimary("bpy") as primary:
        primary.sql("CREATE TABLE t (id bigint PRIMARY KEY)")
        primary.sql("INSERT INTO t SELECT generate_series(1, 300)")
        # The primary sees the replica from the host's address on the link,
        # not from 127.0.0.1.
        rep = mgr.follow("rep", primary.url_for(REPL_USER), slot="py_remote")
        assert rep.kind == "replica" and rep.status == "running"
        assert primary.addr not in rep.url and "remote-pw" not in rep.url
        peers = []
        for _ in range(100):
            peers = primary.sql("SELECT host(client_addr), state FROM pg_stat_replication")
            if peers and peers[0][1] == "streaming":
                break
            time.sleep(0.2)
        assert peers == [(primary.host_addr, "streaming")], peers
        assert primary.sql("SELECT slot_name, active FROM pg_replication_slots") == [("py_remote", True)]

        # Acknowledged by the primary before the call: in the branch.
        primary.sql("INSERT INTO t SELECT generate_series(301, 400)")
        dev = mgr.branch("rep", "dev")
        assert rows(dev.url, "SELECT count(*), min(id), max(id) FROM t") == [(400, 1, 400)]
        rows(dev.url, "INSERT INTO t VALUES (-1)")
        assert primary.sql("SELECT count(*) FROM t WHERE id < 0") == [(0,)]

        # A wrong password: the primary's own words, nothing left.
        with pytest.raises(betterpg.PostgresError) as e:
            mgr.follow("rep2", primary.url_for(REPL_USER).replace("remote-pw", "wrong"))
        assert e.value.sqlstate == "28P01"
        assert "rep2" not in {i.name for i in mgr.list()}
        assert not (h.path / "replicas" / "rep2").exists()

        mgr.destroy("rep", force=True)
        assert {i.name for i in mgr.list()} == set()
        assert not (h.path / "replicas" / "rep").exists()
        assert primary.sql("SELECT slot_name FROM pg_replication_slots") == []
        assert primary.sql("SELECT count(*) FROM pg_stat_replication") == [(0,)]
