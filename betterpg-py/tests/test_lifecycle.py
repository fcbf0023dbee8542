"""Protection from Python (protect/unprotect): real ZFS and PostgreSQL."""

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
