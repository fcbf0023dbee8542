"""attach/detach from Python: a cluster made and started by hand (initdb +
pg_ctl as postgres, not betterpg) on a dataset of the home's pool is
attached with a masking policy for its branches (settings=...), branched (the branch holds its rows, its writes stay there),
refused start/stop/destroy, and detached; bad input raises the typed
exception and records nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import betterpg
import pytest
from helpers import EXTRA_PORTS, rows

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def run(*args: str) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


def as_postgres(*args: str) -> None:
    run("runuser", "-u", "postgres", "--", *args)


def hand_cluster(pool: str, port: int, tmp: Path) -> tuple:
    """A PostgreSQL 15 cluster on a new dataset POOL/hand, started by hand."""
    assert (PG_BIN / "initdb").is_file(), f"PostgreSQL 15 missing in {PG_BIN}: run scripts/setup.sh"
    ds = f"{pool}/hand"
    run("zfs", "create", ds)
    mp = Path(run("zfs", "get", "-H", "-o", "value", "mountpoint", ds).strip())
    run("chown", "postgres:postgres", str(mp))
    data = mp / "data"
    pw = "hand-secret"
    pwfile = tmp / "pw"
    pwfile.write_text(pw)
    os.chmod(tmp, 0o755)
    run("chown", "postgres", str(pwfile))
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
                "--locale=C", f"--pwfile={pwfile}")
    with open(data / "postgresql.conf", "a") as f:
        f.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    log = tmp / "server.log"
    log.touch()
    run("chown", "postgres", str(log))
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start")
    return ds, data, f"postgresql://postgres:{pw}@127.0.0.1:{port}/postgres", pw


def test_attach_branch_refuse_detach(extra_home) -> None:
    lo, hi = EXTRA_PORTS
    h = extra_home("attach", ports=(lo, hi - 1))
    mgr = h.manager
    # The server's OS user reads the password file and writes the log here
    # (pytest's tmp_path is root's only).
    tmp = Path(tempfile.mkdtemp(prefix="bpgat-py-"))
    ds, data, url, pw = hand_cluster(h.pool, hi, tmp)
    try:
        rows(url, "CREATE TABLE t (x int)")
        rows(url, "INSERT INTO t VALUES (41)")
        rows(url, "CREATE TABLE users (id int, email text)")
        rows(url, "INSERT INTO users VALUES (1, 'ada@example.org')")
        mask = tmp / "users.sql"
        mask.write_text("UPDATE users SET email = 'user' || id || '@masked.test';\n")
        before = {i.name for i in mgr.list()}
        # Bad input: a wrong password and a URL without a user.
        with pytest.raises(betterpg.PostgresError):
            mgr.attach("prod", pgdata=data, url=url.replace(pw, "wrong"))
        with pytest.raises(betterpg.ConfigError):
            mgr.attach("prod", pgdata=data, url=f"postgresql://127.0.0.1:{hi}/postgres")
        # Settings an attached cluster cannot have: nothing recorded.
        with pytest.raises(betterpg.UnsupportedError, match="keep its WAL"):
            mgr.attach("prod", pgdata=data, url=url, settings={"retain_wal": "1h"})
        with pytest.raises(betterpg.UnsupportedError, match="ttl"):
            mgr.attach("prod", pgdata=data, url=url, settings={"ttl": "1h"})
        # A masking policy whose file is not there: nothing recorded.
        with pytest.raises(betterpg.ConfigError):
            mgr.attach("prod", pgdata=data, url=url, settings={"mask": ["/nonexistent/m.sql"]})
        assert {i.name for i in mgr.list()} == before
        assert not (h.path / "secrets" / "prod").exists()

        # The branches' policies recorded at once: the first branch is masked.
        info = mgr.attach(
            "prod", pgdata=data, url=url, settings={"mask": [str(mask)], "forbid_unmasked": True}
        )
        assert mgr.settings("prod")["forbid_unmasked"] is True
        assert mgr.settings("prod")["mask"] == [str(mask)]
        assert info.kind == "attached" and info.status == "running"
        assert pw not in info.url and info.dataset == ds
        assert (os.stat(h.path / "secrets" / "prod").st_mode & 0o777) == 0o600

        b = mgr.branch("prod", "dev")
        assert rows(b.url, "SELECT x FROM t") == [(41,)]
        assert rows(b.url, "SELECT email FROM users") == [(b"user1@masked.test",)]
        assert rows(url, "SELECT email FROM users") == [(b"ada@example.org",)]
        rows(b.url, "INSERT INTO t VALUES (-1)")
        assert rows(url, "SELECT count(*) FROM t WHERE x = -1") == [(0,)]

        for verb in (mgr.start, mgr.stop):
            with pytest.raises(betterpg.UnsupportedError):
                verb("prod")
        with pytest.raises(betterpg.UnsupportedError):
            mgr.destroy("prod", force=True)
        with pytest.raises(betterpg.HasDependentsError):
            mgr.detach("prod")
        assert mgr.detach("prod", force=True) == ["dev"]
        assert [i.name for i in mgr.list()] == []
        with pytest.raises(betterpg.NotFoundError):
            mgr.detach("prod")
        # Untouched: still serving its rows.
        assert rows(url, "SELECT x FROM t") == [(41,)]
    finally:
        try:
            mgr.detach("prod", force=True)
        except betterpg.BetterPgError:
            pass
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data),
                        "stop", "-m", "immediate", "-w"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
