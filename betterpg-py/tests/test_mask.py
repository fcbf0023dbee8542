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
