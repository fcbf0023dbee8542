"""`rewindable=` and `rewind` from Python: real ZFS and PostgreSQL."""

from __future__ import annotations

import betterpg
import pytest
from helpers import SOURCE, SOURCE_ROWS, rows, unique


def test_rewind_restores_the_branch_as_made_under_the_same_url(manager):
    name = unique("rew")
    with manager.branch(SOURCE, name, rewindable=True) as b:
        assert b.rewindable is True and b.to_dict()["rewindable"] is True
        assert "rewind_point" in b.timing_breakdown
        assert manager.info(name).rewindable is True
        rows(b.url, "INSERT INTO items (name) VALUES ('written-then-rewound')")
        rows(b.url, "CREATE TABLE scratch (x int)")
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS + 1,)]

        r = manager.rewind(name)
        assert isinstance(r, betterpg.RewindReport)
        assert isinstance(r.branch, betterpg.Info)
        assert (r.branch.name, r.branch.port, r.branch.url) == (name, b.port, b.url)
        assert r.branch.running and r.branch.rewindable
        assert r.snapshot and name in r.snapshot
        assert [t.step for t in r.timings] == ["check", "stop", "rollback", "start"]
        assert all(isinstance(t, betterpg.StepTiming) for t in r.timings)
        assert set(r.timing_breakdown) == {"check", "stop", "rollback", "start"}
        assert r.total_millis > 0
        d = r.to_dict()
        assert d["branch"]["name"] == name and d["snapshot"] == r.snapshot
        assert [s for s, _ in d["timings"]] == ["check", "stop", "rollback", "start"]
        assert name in repr(r) and "***" not in repr(r) and b.url not in repr(r)

        # The old URL (same port and password) sees the branch as made.
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        assert rows(b.url, "SELECT count(*) FROM items WHERE name = 'written-then-rewound'") == [(0,)]
        assert rows(b.url, "SELECT to_regclass('scratch') IS NULL") == [(True,)]

        # A second rewind works the same (the point stays).
        rows(b.url, "INSERT INTO items (name) VALUES ('again')")
        assert manager.rewind(name).branch.url == b.url
        assert rows(b.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]


def test_rewind_refused_without_a_rewind_point_nothing_changed(manager):
    name = unique("norew")
    with manager.branch(SOURCE, name) as b:
        assert b.rewindable is False and manager.info(name).rewindable is False
        rows(b.url, "INSERT INTO items (name) VALUES ('kept')")
        with pytest.raises(betterpg.UnsupportedError, match="rewind point") as e:
            manager.rewind(name)
        assert e.value.kind == "unsupported"
        # Nothing changed: running, same port, the write still there.
        info = manager.info(name)
        assert info.running and info.state == "ready" and info.port == b.port
        assert rows(b.url, "SELECT count(*) FROM items WHERE name = 'kept'") == [(1,)]
    with pytest.raises(betterpg.UnsupportedError):
        manager.rewind(SOURCE)
    with pytest.raises(betterpg.NotFoundError):
        manager.rewind(unique("nope"))


def test_reset_rewindable_gives_a_rewind_point(manager):
    name = unique("resrew")
    with manager.branch(SOURCE, name) as b:
        again = manager.reset(name, rewindable=True)
        assert again.rewindable is True and again.port == b.port
        rows(again.url, "INSERT INTO items (name) VALUES ('gone')")
        manager.rewind(name)
        assert rows(again.url, "SELECT count(*) FROM items") == [(SOURCE_ROWS,)]
        # A reset without the keyword keeps it rewindable.
        assert manager.reset(name).rewindable is True
