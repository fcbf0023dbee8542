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


def test_mask_check_lists_uncovered_personal_columns(manager, tmp_path):
    name = unique("mc")
    with manager.branch(SOURCE, name) as b:
        import psycopg

        with psycopg.connect(b.url, autocommit=True) as c:
            c.execute("CREATE TABLE people (id int, email text, reach text)")
            c.execute(
                "INSERT INTO people SELECT g, 'p' || g || '@example.com', '+1 555 010 ' || lpad(g::text, 4, '0')"
                " FROM generate_series(1, 20) g"
            )
        r = manager.mask_check(name)
        cols = {(c["table"], c["column"]): c for c in r["uncovered"]}
        assert cols[("people", "email")]["kinds"] == ["email"]
        assert cols[("people", "reach")]["kinds"] == ["phone"], "found by its values"
        assert ("items", "name") in cols, "a column named name"
        assert r["covered"] == []
        rules = tmp_path / "rules.toml"
        rules.write_text('[public.people]\nemail = "email"\nreach = "phone"\n[public]\nitems = "truncate"\n')
        r = manager.mask_check(name, rules=rules, sample_rows=10)
        assert r["uncovered"] == [], r["uncovered"]
        assert sorted(c["column"] for c in r["covered"]) == ["email", "name", "reach"]
        assert r["sample_rows"] == 10
        with pytest.raises(betterpg.NotFoundError):
            manager.mask_check("nosuch")
        with pytest.raises(betterpg.ConfigError, match="at most"):
            manager.mask_check(name, sample_rows=10**6)
        with pytest.raises(OSError):
            manager.mask_check(name, rules=tmp_path / "missing.toml")
