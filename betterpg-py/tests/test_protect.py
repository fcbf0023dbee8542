"""Protecting copies of production from Python: the audit log.

Every branch, url, reset and destroy made through the module is appended to
``HOME/audit.log``; ``BranchManager.audit(since)`` reads it back.
"""

from __future__ import annotations

import os
import stat

import betterpg
import pytest
from helpers import SOURCE, unique


def test_audit_records_branch_url_reset_destroy(env, manager):
    name = unique("aud")
    before = len(manager.audit())
    b = manager.branch(SOURCE, name, mode="crash-consistent")
    manager.url(name)
    manager.reset(name)
    manager.destroy(name)
    with pytest.raises(betterpg.NotFoundError):
        manager.branch("nosuch", unique("aud"))
    events = manager.audit()
    new = events[before:]
    assert [(e["operation"], e["branch"]) for e in new[:4]] == [
        ("branch", name),
        ("url", name),
        ("reset", name),
        ("destroy", name),
    ]
    assert new[0]["source"] == SOURCE
    assert new[0]["mode"] == "crash-consistent"
    assert new[0]["result"] == "ok" and new[0]["error"] is None
    assert new[0]["uid"] == os.getuid()
    assert new[4]["operation"] == "branch"
    assert new[4]["result"] == "error"
    assert new[4]["error"]["kind"] == "not_found"
    log = env.path / "audit.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert b.url.split(":")[2].split("@")[0] not in text, "a password in the audit log"
    assert "postgresql://" not in text
    # since: a duration keeps them, a future time drops them all.
    assert len(manager.audit(since="1h")) >= 5
    assert manager.audit(since="2999-01-01T00:00:00Z") == []
    with pytest.raises(betterpg.ConfigError, match="since"):
        manager.audit(since="yesterday")
