"""betterpg: production-safe PostgreSQL branching on ZFS.

A *database* is a PostgreSQL cluster on its own ZFS dataset; a *branch* is a
new read-write cluster started on a ZFS clone of a snapshot of another
database or branch, made in about a second whatever the size.

>>> import betterpg
>>> mgr = betterpg.BranchManager("/var/lib/betterpg")
>>> with mgr.branch("prod", "try-migration") as b:      # doctest: +SKIP
...     run_migration(b.url)
...     print(b.total_millis, b.timing_breakdown)

Every method releases the GIL while the core works. Errors are subclasses of
:class:`BetterPgError`, one per core error kind (see :mod:`betterpg.exceptions`).
The pytest plugin (:mod:`betterpg.pytest_plugin`) gives each test its own branch.
"""

from __future__ import annotations

from typing import Union

from betterpg._internal import (
    Branch,
    BranchManager,
    DoctorReport,
    GcItem,
    GcReport,
    Info,
    LogFollower,
    PoolUsage,
    RewindReport,
    Status,
    StepTiming,
    WalRetention,
    __version__,
)
from betterpg.exceptions import *  # noqa: F401,F403  (the exception classes)
from betterpg.exceptions import __all__ as _exception_names


def sqlalchemy_url(target: Union[Info, str], driver: str = "psycopg") -> str:
    """The SQLAlchemy URL of a database/branch (an :class:`Info` or its ``url``).

    ``postgresql://...`` becomes ``postgresql+<driver>://...`` (SQLAlchemy's
    default driver for plain ``postgresql://`` is psycopg2, not psycopg 3).
    """
    url = target if isinstance(target, str) else target.url
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql+{driver}://{rest}" if driver else f"postgresql://{rest}"


__all__ = [
    "BranchManager",
    "Info",
    "Branch",
    "RewindReport",
    "StepTiming",
    "WalRetention",
    "PoolUsage",
    "Status",
    "GcItem",
    "GcReport",
    "DoctorReport",
    "LogFollower",
    "sqlalchemy_url",
    "__version__",
    *_exception_names,
]
