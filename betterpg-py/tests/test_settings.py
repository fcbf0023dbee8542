"""Settings (`bpg config`) from Python: read, change all or nothing, clear."""

from __future__ import annotations

import betterpg
import pytest
from helpers import SOURCE, unique


def test_configure_changes_reads_back_and_clears(manager, tmp_path) -> None:
    name = unique("cfg")
    manager.branch(SOURCE, name)
    try:
        empty = manager.settings(name)
        assert empty["ttl"] is None and empty["mask"] == [] and empty["forbid_unmasked"] is False
        # A branch records the credentials policy it was made with.
        assert empty["credentials"] == "keep"
        mask = tmp_path / "users.sql"
        mask.write_text("UPDATE users SET email = NULL;\n")
        got = manager.configure(
            name, ttl="8h", idle_stop=90, keep_last=3, credentials="rotate",
            mask=[str(mask)], forbid_unmasked=True,
        )
        assert got["ttl"] == 8 * 3600
        assert got["idle_stop"] == 90
        assert got["keep_last"] == 3
        assert got["credentials"] == "rotate"
        assert got["mask"] == [str(mask.resolve())]
        assert got["forbid_unmasked"] is True
        # Another manager on the same home reads what was stored.
        assert betterpg.BranchManager(manager.home).settings(name) == got

        with pytest.raises(betterpg.ConfigError, match="ttl"):
            manager.configure(name, keep_last=9, ttl="soon")
        with pytest.raises(betterpg.ConfigError, match="colour"):
            manager.configure(name, colour="blue")
        with pytest.raises(betterpg.NotFoundError):
            manager.configure(unique("ghost"), ttl="1h")
        assert manager.settings(name) == got, "a refused change changes nothing"

        # A branch's memory (from its next start; its branches inherit it).
        sized = manager.configure(name, branch_shared_buffers="64M", branch_max_connections=40)
        assert sized["branch_shared_buffers"] == 64 << 20
        assert sized["branch_max_connections"] == 40
        with pytest.raises(betterpg.ConfigError, match="branch_shared_buffers"):
            manager.configure(name, branch_shared_buffers="1K")

        cleared = manager.configure(
            name, ttl=None, idle_stop=None, keep_last=None, credentials=None,
            mask=[], forbid_unmasked=False, branch_shared_buffers=None,
            branch_max_connections=None,
        )
        assert cleared["credentials"] is None
        assert {k: v for k, v in cleared.items() if k != "credentials"} == {
            k: v for k, v in empty.items() if k != "credentials"
        }
    finally:
        manager.destroy(name)
