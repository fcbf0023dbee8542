"""Masking from Python: ``branch(source, name, mask=[...])`` masks the
branch before it is reachable; a failing statement raises ``MaskError``
naming the file and line and leaves nothing behind; ``schema_only=True``
keeps the tables and no rows; ``unmasked=True`` is refused when the
source's policy forbids it.
"""

from __future__ import annotations

import betterpg
import pytest
from helpers import rows, unique


def test_mask_schema_only_and_policy(manager, tmp_path) -> None:
    prod = unique("mask")
    try:
        db = manager.create(prod)
        rows(
            db.url,
            "CREATE TABLE users (id int PRIMARY KEY, email text); "
            "INSERT INTO users SELECT i, 'person' || i || '@gmail.com' FROM generate_series(1, 20) i",
        )
        good = tmp_path / "good.sql"
        good.write_text("UPDATE users SET email = 'u' || id || '@example.invalid';\n")
        dev = manager.branch(prod, unique("dev"), mask=[good])
        assert rows(dev.url, "SELECT count(*) FROM users WHERE position('gmail' in email) > 0") == [(0,)]
        assert rows(dev.url, "SELECT count(*) FROM users") == [(20,)]

        bad = tmp_path / "bad.sql"
        bad.write_text("-- one\n\nUPDATE users SET emial = NULL;\n")
        before = {i.name for i in manager.list()}
        with pytest.raises(betterpg.MaskError, match=r"bad\.sql line 3") as e:
            manager.branch(prod, unique("dev"), mask=[str(bad)])
        assert e.value.sqlstate == "42703"
        assert {i.name for i in manager.list()} == before

        so = manager.branch(prod, unique("so"), schema_only=True)
        assert rows(so.url, "SELECT count(*) FROM users") == [(0,)]

        manager.configure(prod, mask=[str(good)], forbid_unmasked=True)
        with pytest.raises(betterpg.MaskError, match="forbid"):
            manager.branch(prod, unique("raw"), unmasked=True)
        masked = manager.branch(prod, unique("pol"))
        assert rows(masked.url, "SELECT count(*) FROM users WHERE position('gmail' in email) > 0") == [(0,)]
    finally:
        try:
            manager.destroy(prod, force=True)
        except betterpg.NotFoundError:
            pass


def test_mask_rules_and_mask_sql(manager, tmp_path) -> None:
    """``mask_rules=[...]`` masks by declarative rules (a keyed hash keeps
    joins, fakes keep format); ``mask_sql`` shows the SQL with the key a
    placeholder; a rule on a missing column raises ``MaskError`` naming
    the file and rule and leaves nothing."""
    prod = unique("rules")
    try:
        db = manager.create(prod)
        rows(
            db.url,
            "CREATE TABLE users (id bigint PRIMARY KEY, email text UNIQUE, phone text); "
            "CREATE TABLE orders (user_id bigint REFERENCES users(id)); "
            "INSERT INTO users SELECT i, 'person' || i || '@gmail.com', '+1 555 01' || lpad(i::text, 2, '0') "
            "FROM generate_series(1, 20) i; INSERT INTO orders SELECT i FROM generate_series(1, 20) i",
        )
        rules = tmp_path / "rules.toml"
        rules.write_text('[public.users]\nid = "hash"\nemail = "email"\nphone = "phone"\n[public.orders]\nuser_id = "hash"\n')
        sql = manager.mask_sql(rules, source=prod)
        assert sql["key_source"] == prod and sql["needs_key"] and sql["rules"] == 4
        assert f'<key of the source "{prod}">' in sql["sql"]
        dev = manager.branch(prod, unique("dev"), mask_rules=[rules])
        assert rows(dev.url, "SELECT count(*) FROM users WHERE email ~ '^user\\.[0-9a-f]{20}@example\\.com$'") == [(20,)]
        assert rows(dev.url, "SELECT count(*) FROM users WHERE phone ~ '^\\+[0-9] [0-9]{3} [0-9]{4}$' AND id > 20") == [(20,)]
        assert rows(dev.url, "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id") == [(20,)]

        typo = tmp_path / "typo.toml"
        typo.write_text('[public.users]\nemial = "null"\n')
        before = {i.name for i in manager.list()}
        with pytest.raises(betterpg.MaskError, match=r"typo\.toml.*public\.users\.emial|public\.users\.emial.*typo\.toml"):
            manager.branch(prod, unique("dev"), mask_rules=[typo])
        assert {i.name for i in manager.list()} == before
        bad = tmp_path / "bad.toml"
        bad.write_text('[public.users]\nemail = "scramble"\n')
        with pytest.raises(betterpg.MaskError, match="unknown strategy"):
            manager.mask_sql(bad)
    finally:
        try:
            manager.destroy(prod, force=True)
        except betterpg.NotFoundError:
            pass
