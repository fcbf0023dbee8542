"""Protection (protect/unprotect) and expiry (ttl, daemon_once) from Python:
real ZFS and PostgreSQL."""

from __future__ import annotations

import betterpg
import pytest
from helpers import SOURCE, unique


def test_protect_refuses_destroy_and_reset(manager):
    name = unique("prot")
    manager.branch(SOURCE, name)
    try:
        info = manager.protect(name)
        assert info.protected is True
        assert info.to_dict()["protected"] is True
        assert info.expires_at is None
        assert manager.protect(name).protected  # idempotent
        for call in (
            lambda: manager.destroy(name),
            lambda: manager.destroy(name, force=True),
            lambda: manager.reset(name),
        ):
            with pytest.raises(betterpg.ProtectedError, match="is protected") as e:
                call()
            assert e.value.code == 21
            assert e.value.kind == "protected"
        # Nothing changed: still there, running, protected.
        again = manager.info(name)
        assert again.protected and again.running
        assert manager.unprotect(name).protected is False
        with pytest.raises(betterpg.NotFoundError):
            manager.protect(unique("nope"))
    finally:
        manager.unprotect(name)
        manager.destroy(name)


def test_ttl_branch_expires_by_daemon_once(extra_home):
    """`ttl=` on a branch, then `daemon_once()`: a dry run changes nothing,
    the pass destroys the expired branch (its own branch first); one daemon
    per home (`DaemonRunningError` while the home's daemon lock is held)."""
    import fcntl
    import time

    h = extra_home("ttl", size="1G")
    m = h.manager
    m.create("p")
    b = m.branch("p", "short", ttl=1)
    assert b.expires_at is not None
    m.branch("short", "under")
    m.branch("p", "long", ttl="1h")
    with pytest.raises(betterpg.ConfigError, match="ttl"):
        m.branch("p", "bad", ttl="soon")
    time.sleep(2)

    dry = m.daemon_once(dry_run=True)
    assert dry["dry_run"] is True
    assert [(a["action"], a["name"], a["result"]) for a in dry["actions"]] == [
        ("expire", "short", "dry_run")
    ]
    assert {i.name for i in m.list()} == {"p", "short", "under", "long"}

    r = m.daemon_once()
    (a,) = [a for a in r["actions"] if a["action"] == "expire"]
    assert (a["name"], a["result"]) == ("short", "done")
    assert "under" in a["reason"]
    assert {i.name for i in m.list()} == {"p", "long"}

    with open(h.path / "daemon.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(betterpg.DaemonRunningError) as e:
            m.daemon_once()
        assert e.value.code == 22
    assert m.daemon_once()["actions"] == []
