"""A remote primary for the follow tests: a PostgreSQL server in a network
namespace of its own, reached over a veth pair at its own address (a real
network stack, not loopback), on a plain directory (not ZFS), as
betterpg-testkit/src/remote.rs makes one for the Rust tests.

Use it as a context manager: everything (the server, the namespace, its
link, its directory) is removed on exit, also when the test fails, and
what a killed run of the same process id left is removed first.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

#: Password of the superuser ``postgres`` and of the replication role.
PASSWORD = "remote-pw"
#: The role with REPLICATION that replicas log in as.
REPL_USER = "rep"
#: The port the server listens on inside its namespace (its own network:
#: no port of the host is taken).
PORT = 5432

_next = 0


def _run(what: str, args: List[str], **kw) -> str:
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{what} failed ({args}): {r.stderr}{r.stdout}")
    return r.stdout


def pg_bin(major: int) -> Path:
    """The bin directory of PostgreSQL ``major``; a missing one fails loudly."""
    for base in (Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/var/cache/betterpg/pg/{major}/bin")):
        if (base / "postgres").is_file():
            return base
    raise AssertionError(f"PostgreSQL {major} binaries missing: run scripts/setup.sh")


class RemotePrimary:
    """A PostgreSQL primary in its own network namespace, at ``addr``."""

    def __init__(self, prefix: str = "bpy", major: int = 15) -> None:
        global _next
        if os.geteuid() != 0:
            raise AssertionError("a remote primary needs root (network namespaces)")
        for tool in ("ip", "nsenter", "runuser"):
            if shutil.which(tool) is None:
                raise AssertionError(f"`{tool}` missing: a remote primary needs it (iproute2, util-linux)")
        n = _next
        _next += 1
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or "0"
        tag = f"{os.getpid() % 10000}{n}"
        self.ns = f"{prefix}{tag}"
        self.veth = f"{prefix}{tag}h"
        self.peer = f"{prefix}{tag}n"
        assert len(self.veth) <= 15, f"link name {self.veth!r} is too long"
        # 10.124.X.Y/30 (the Rust tests use 10.123): X from the suite's port
        # base, Y from the xdist worker and this process's count.
        third = (int(os.environ.get("BPGPY_PORT_BASE", "57000")) // 100) % 256
        fourth = ((int(worker) * 8 + n) % 60) * 4
        self.host_addr = f"10.124.{third}.{fourth + 1}"
        self.addr = f"10.124.{third}.{fourth + 2}"
        self.port = PORT
        self.major = major
        self.bin = pg_bin(major)
        self.dir: Optional[Path] = None
        self.data: Optional[Path] = None
        self._remove_links()

    # --- set up and tear down ----------------------------------------------
    def __enter__(self) -> "RemotePrimary":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_links(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.veth], capture_output=True)

    def _start(self) -> None:
        _run("ip netns add", ["ip", "netns", "add", self.ns])
        _run("veth", ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer])
        _run("veth into ns", ["ip", "link", "set", self.peer, "netns", self.ns])
        _run("host addr", ["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.veth])
        _run("host link up", ["ip", "link", "set", self.veth, "up"])
        _run("ns addr", ["ip", "-n", self.ns, "addr", "add", f"{self.addr}/30", "dev", self.peer])
        _run("ns link up", ["ip", "-n", self.ns, "link", "set", self.peer, "up"])
        _run("ns lo up", ["ip", "-n", self.ns, "link", "set", "lo", "up"])
        pg = pwd.getpwnam("postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="bpg-remote-"))
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        self.data = self.dir / "primary"
        pw = self.dir / "pw"
        pw.write_text(PASSWORD)
        os.chown(pw, pg.pw_uid, pg.pw_gid)
        _run(
            "initdb",
            self._pg("initdb")
            + ["-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256"]
            + ["--locale=C", "-E", "UTF8", "-k", f"--pwfile={pw}"],
        )
        h = self.host_addr
        (self.data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\n"
            f"host all postgres {h}/32 scram-sha-256\n"
            f"host replication {REPL_USER} {h}/32 scram-sha-256\n"
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"\nlisten_addresses = '{self.addr}'\nport = {self.port}\n"
                "unix_socket_directories = ''\nwal_level = replica\nmax_wal_senders = 10\n"
            )
        for name in ("pg_hba.conf", "postgresql.conf"):
            os.chown(self.data / name, pg.pw_uid, pg.pw_gid)
        _run(
            "pg_ctl start",
            self._pg("pg_ctl")
            + ["start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.dir / "log")],
        )
        self.sql(f"CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{PASSWORD}'")

    def close(self) -> None:
        """Stop the server; remove the namespace, its link and the directory."""
        if self.data is not None and (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._pg("pg_ctl") + ["stop", "-w", "-m", "immediate", "-D", str(self.data)],
                capture_output=True,
            )
        self._remove_links()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _pg(self, tool: str) -> List[str]:
        """A command run as ``postgres`` in the namespace's network only
        (``nsenter --net``: ``ip netns exec`` would also give the server a
        mount namespace of its own, holding a copy of every ZFS mount of
        the moment, which then could not be unmounted)."""
        return [
            "nsenter",
            f"--net=/run/netns/{self.ns}",
            "runuser",
            "-u",
            "postgres",
            "--",
            str(self.bin / tool),
        ]

    # --- use -----------------------------------------------------------------
    def url_for(self, user: str) -> str:
        """URL of ``user`` (password included), from the host, across the link."""
        return f"postgresql://{user}:{PASSWORD}@{self.addr}:{self.port}/postgres"

    def url(self) -> str:
        """URL of the superuser ``postgres``, from the host."""
        return self.url_for("postgres")

    def sql(self, sql: str) -> List[tuple]:
        """Run SQL on the primary as ``postgres``, from the host; all rows."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else []
