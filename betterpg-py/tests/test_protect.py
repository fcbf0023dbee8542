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
        # A rules file that is not there: the rules parser's error, naming it.
        with pytest.raises(betterpg.ConfigError, match="missing.toml"):
            manager.mask_check(name, rules=tmp_path / "missing.toml")


def test_credentials_rotate_and_keep(manager):
    """credentials="rotate": the source's passwords fail on the branch (real
    logins), url(name, role=...) gives the new ones; "keep" keeps them."""
    import psycopg

    src = unique("crs")
    info = manager.create(src)
    try:
        with psycopg.connect(info.url, autocommit=True) as c:
            c.execute("CREATE ROLE app LOGIN PASSWORD 'app-source-pw'")
            c.execute("CREATE ROLE nopw LOGIN")
        assert info.credentials is None
        rot = unique("crr")
        b = manager.branch(src, rot, mode="crash-consistent", credentials="rotate")
        assert b.credentials == "rotate"
        assert b.isolation["roles_rotated"] == ["app"]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"postgresql://app:app-source-pw@127.0.0.1:{b.port}/postgres").close()
        role_url = manager.url(rot, role="app")
        assert role_url.startswith("postgresql://app:")
        with psycopg.connect(role_url) as c:
            assert c.execute("SELECT current_user").fetchone()[0] == "app"
        with pytest.raises(betterpg.NotFoundError):
            manager.url(rot, role="nopw")
        assert manager.info(rot).credentials == "rotate"
        kept = unique("crk")
        k = manager.branch(src, kept, mode="crash-consistent", credentials="keep")
        assert k.credentials == "keep"
        psycopg.connect(f"postgresql://app:app-source-pw@127.0.0.1:{k.port}/postgres").close()
        with pytest.raises(betterpg.UnsupportedError, match="keeps its source's role passwords"):
            manager.url(kept, role="app")
        with pytest.raises(betterpg.ConfigError, match="credentials"):
            manager.branch(src, unique("crx"), credentials="share")
        r = manager.reset(rot, mode="crash-consistent")
        assert r.credentials == "rotate"
        assert manager.url(rot, role="app") != role_url
        lines = [e for e in manager.audit() if e["branch"] in (rot, kept)]
        assert [e["credentials"] for e in lines if e["operation"] in ("branch", "reset")] == [
            "rotate",
            "keep",
            "rotate",
        ]
        assert any(e["operation"] == "url" and e["role"] == "app" for e in lines)
    finally:
        manager.destroy(src, force=True)
