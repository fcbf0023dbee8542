"""Named snapshots from Python: take, branch after the source moved on,
reset to, list, retention, destroy (refused, then forced), bad input."""

from __future__ import annotations

import betterpg
import pytest
from helpers import SOURCE, rows, unique


def test_snapshot_branch_reset_list_prune_destroy(manager) -> None:
    src = unique("snsrc")
    manager.branch(SOURCE, src)
    try:
        s = manager.snapshot(src, "before")
        assert s["full_name"] == f"{src}@before"
        assert s["mode"] == "application-consistent"
        assert s["auto"] is False and s["state"] == "ready"
        assert s["stop_lsn"] and s["wal_dataset"]
        # The source moves on; a branch of the snapshot does not see it.
        src_url = manager.url(src)
        rows(src_url, "CREATE TABLE after_snap AS SELECT 1 AS x")
        dev = manager.branch(f"{src}@before", unique("sndev"))
        assert dev.parent == src
        assert rows(dev.url, "SELECT to_regclass('after_snap')::text") == [(None,)]
        listed = manager.snapshots(src)
        assert [x["full_name"] for x in listed] == [f"{src}@before"]
        assert listed[0]["branches"] == [dev.name]
        # reset to it (the URL stays).
        later = manager.branch(src, unique("snlater"))
        assert rows(later.url, "SELECT count(*) FROM after_snap") == [(1,)]
        again = manager.reset(later.name, to=f"{src}@before")
        assert again.url == later.url
        assert rows(later.url, "SELECT to_regclass('after_snap')::text") == [(None,)]
        assert manager.snapshots(src)[0]["branches"] == sorted([dev.name, later.name])
        # A crash-consistent, automatically named one.
        auto = manager.snapshot(src, mode="crash-consistent")
        assert auto["auto"] is True and auto["mode"] == "crash-consistent"
        newest = manager.snapshot(src, mode="crash-consistent")
        # Retention: keep_last 1 prunes the older automatic one only.
        manager.configure(src, keep_last=1)
        dry = manager.prune_snapshots(src, dry_run=True)
        assert [p["snapshot"] for p in dry["pruned"]] == [auto["full_name"]]
        pruned = manager.prune_snapshots(src)
        assert pruned["pruned"] == dry["pruned"]
        assert [x["name"] for x in manager.snapshots(src)] == ["before", newest["name"]]
        manager.destroy_snapshot(newest["full_name"])
        policy = manager.run_snapshot_policy(src, dry_run=True)
        assert policy["due"] == [] and policy["failures"] == []

        # Bad input: typed errors, nothing changed.
        with pytest.raises(betterpg.InvalidNameError):
            manager.snapshot(src, "a b")
        with pytest.raises(betterpg.AlreadyExistsError):
            manager.snapshot(src, "before")
        with pytest.raises(betterpg.NotFoundError):
            manager.branch(f"{src}@nosuch", unique("x"))
        with pytest.raises(betterpg.NotFoundError):
            manager.snapshots(unique("ghost"))
        with pytest.raises(ValueError):
            manager.destroy_snapshot(src)
        with pytest.raises(betterpg.ConfigError):
            manager.reset(later.name, to=src)
        assert [x["name"] for x in manager.snapshots(src)] == ["before"]

        # Destroy: refused while branches depend on it, then forced.
        with pytest.raises(betterpg.HasDependentsError):
            manager.destroy_snapshot(f"{src}@before")
        gone = manager.destroy_snapshot(f"{src}@before", force=True)
        assert sorted(gone["branches_destroyed"]) == sorted([dev.name, later.name])
        assert manager.snapshots(src) == []
        with pytest.raises(betterpg.NotFoundError):
            manager.url(dev.name)
    finally:
        manager.destroy(src, force=True)
