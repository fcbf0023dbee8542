# Hand-written stubs of the native module betterpg._internal (PyO3).
# tests/test_stubs.py checks them against the built module.

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple, Type, Union

__version__: str

StrPath = Union[str, "os.PathLike[str]"]
# How a branch snapshots a running source (``mode=``), and how it was made
# (``Info.mode``); the same names as ``bpg branch --mode``.
Mode = Literal["application-consistent", "crash-consistent"]

class Info:
    """A database or branch as `status` reports it (a snapshot, not live)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["database", "branch", "attached"]: ...
    @property
    def parent(self) -> Optional[str]: ...
    @property
    def status(self) -> Literal["running", "stopped"]: ...
    @property
    def state(self) -> Literal["ready", "creating", "destroying", "incomplete"]: ...
    @property
    def port(self) -> int: ...
    @property
    def used_bytes(self) -> int: ...
    @property
    def referenced_bytes(self) -> int: ...
    @property
    def url(self) -> str:
        """postgresql://postgres:PASSWORD@HOST:PORT/postgres"""
    @property
    def mode(self) -> Optional[Mode]: ...
    @property
    def dataset(self) -> str: ...
    @property
    def snapshot(self) -> Optional[str]: ...
    @property
    def runtime(self) -> str: ...
    @property
    def pg_version(self) -> int: ...
    @property
    def created_at(self) -> int: ...
    @property
    def wal_retention(self) -> Optional[WalRetention]:
        """For a database that keeps WAL: its restorable window; else None."""
    @property
    def protected(self) -> bool: ...
    @property
    def rewindable(self) -> bool:
        """Made with ``rewindable=True``: ``BranchManager.rewind`` rolls it back to how it was when made."""
    @property
    def owner_pid(self) -> Optional[int]:
        """The process the branch lives for (``owner_pid=``): ``gc`` destroys it once that process is gone."""
    @property
    def expires_at(self) -> Optional[int]: ...
    @property
    def credentials(self) -> Optional[str]:
        """"rotate" or "keep" (a branch: its policy; a source: its branches' default); None for a database without the setting."""
    @property
    def is_branch(self) -> bool: ...
    @property
    def running(self) -> bool: ...
    def to_dict(self) -> Dict[str, object]: ...

class WalRetention:
    """The WAL a database keeps and the window it can be branched at."""

    @property
    def retain_secs(self) -> int: ...
    @property
    def active(self) -> bool:
        """False while the setting waits for the database's next start."""
    @property
    def from_time(self) -> Optional[str]: ...
    @property
    def to_time(self) -> Optional[str]: ...
    @property
    def from_lsn(self) -> Optional[str]: ...
    @property
    def to_lsn(self) -> Optional[str]: ...
    @property
    def wal_bytes(self) -> int: ...
    @property
    def segments(self) -> int: ...
    @property
    def bases(self) -> int: ...

class StepTiming:
    """Time taken by one step of a branch call."""

    @property
    def step(self) -> str: ...
    @property
    def millis(self) -> float: ...

class Branch(Info):
    """A branch just made by `BranchManager.branch`; destroys itself when a `with` block ends."""

    @property
    def timings(self) -> List[StepTiming]: ...
    @property
    def timing_breakdown(self) -> Dict[str, float]: ...
    @property
    def total_millis(self) -> float: ...
    @property
    def source_was_running(self) -> bool: ...
    @property
    def wal_bytes_copied(self) -> int: ...
    @property
    def password_changed(self) -> bool:
        """True when `reset` gave the branch a new password (its password file was missing): its URL changed."""
    @property
    def tablespaces(self) -> List[Dict[str, Any]]: ...
    @property
    def isolation(self) -> Dict[str, Any]: ...
    @property
    def manager(self) -> BranchManager: ...
    @property
    def destroyed(self) -> bool: ...
    def destroy(self, force: bool = False) -> None: ...
    def __enter__(self) -> Branch: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class RewindReport:
    """What `BranchManager.rewind` did."""

    @property
    def branch(self) -> Info:
        """The branch as it is now (running, same name, port and URL)."""
    @property
    def snapshot(self) -> str:
        """The rewind point's ZFS snapshot name (after the ``@``)."""
    @property
    def timings(self) -> List[StepTiming]:
        """``check``, ``stop``, ``rollback``, ``start``, in order."""
    @property
    def timing_breakdown(self) -> Dict[str, float]: ...
    @property
    def total_millis(self) -> float: ...
    def to_dict(self) -> Dict[str, object]: ...

class PoolUsage:
    """Space of the pool holding the datasets."""

    @property
    def pool(self) -> str: ...
    @property
    def used_bytes(self) -> int: ...
    @property
    def available_bytes(self) -> int: ...
    @property
    def fraction_used(self) -> float: ...
    @property
    def warning(self) -> bool: ...
    @property
    def branches_used_bytes(self) -> int:
        """Bytes all branches use together (their reservations included)."""
    @property
    def branches_limit_bytes(self) -> Optional[int]:
        """Most bytes the branches may use together; None: no limit."""
    @property
    def branches_warning(self) -> bool:
        """True when the branches' space is above 90% used."""

class GcItem:
    """One thing `gc` found, removed or kept."""

    @property
    def what(self) -> str:
        """``"catalog entry"``, ``"dataset"``, ``"snapshot"``, ``"password file"``, ..."""
    @property
    def name(self) -> str: ...
    @property
    def reason(self) -> str:
        """Why gc removed it, or why it left it alone (what to move or destroy)."""
    def __eq__(self, other: object) -> bool: ...

class GcReport:
    """What `gc` found (and removed unless a dry run), and what it left alone.

    Iterating it (and ``len``) goes over ``items``.
    """

    @property
    def dry_run(self) -> bool:
        """True when nothing was changed."""
    @property
    def items(self) -> List[GcItem]:
        """Everything found (and removed unless a dry run)."""
    @property
    def kept(self) -> List[GcItem]:
        """What of betterpg's gc left alone: it holds, or is the origin of,
        something betterpg did not make (e.g. an operator's snapshot); the
        reason says what to move or destroy."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[GcItem]: ...

class DoctorReport:
    """What `BranchManager.doctor` found: this machine and a home
    (initialised or not), what they would use and what is missing."""

    @property
    def home(self) -> str:
        """The home checked."""
    @property
    def initialised(self) -> bool:
        """Whether the home is initialised (else only the machine was checked)."""
    @property
    def ok(self) -> bool:
        """True when nothing is missing or broken (``problems`` is empty)."""
    @property
    def problems(self) -> List[str]:
        """What is missing or broken, one line each."""
    @property
    def warnings(self) -> List[str]:
        """What works but needs attention."""
    @property
    def storage_backend(self) -> Optional[str]:
        """``"libzfs"`` or ``"cli"``; None when no backend is usable."""
    @property
    def storage_reason(self) -> str:
        """Why that backend, or why none is usable."""
    @property
    def libzfs_library(self) -> str:
        """The OpenZFS libraries found for the libzfs backend, or why none."""
    @property
    def zfs_flavor(self) -> str:
        """The ``zfs`` userland: ``"openzfs"`` or ``"legacy"`` (zfs-fuse)."""
    @property
    def zpool_list_ok(self) -> bool:
        """Whether ``zpool list`` works."""
    @property
    def postgres_major(self) -> Optional[int]:
        """Major version of the PostgreSQL binaries found; None when none were."""
    @property
    def postgres_bin(self) -> Optional[str]:
        """Their bin directory; None when none were found."""
    @property
    def os_user(self) -> Optional[str]:
        """The OS user the servers run as; None when it cannot be resolved."""
    @property
    def fault_injection(self) -> bool:
        """Whether this is a test build that obeys BETTERPG_FAULT."""
    def __bool__(self) -> bool: ...

class LogFollower:
    """A server's log as the server writes it (`BranchManager.follow_logs`).

    Its last lines come first, then each chunk written. Iterating blocks
    until each chunk comes and stops when the log ends (a container stopped;
    a native server's log never ends); ``read(timeout)`` waits at most
    ``timeout`` seconds. ``close()``, or leaving a ``with`` block, stops.
    """

    def read(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next chunk, waiting at most ``timeout`` seconds (None: until
        one comes); None when nothing came in time or the log ended."""
    @property
    def ended(self) -> bool:
        """True once the log ended or the follower was closed."""
    def close(self) -> None:
        """Stop following (idempotent)."""
    def __iter__(self) -> Iterator[str]: ...
    def __next__(self) -> str: ...
    def __enter__(self) -> "LogFollower": ...
    def __exit__(self, *args: object) -> bool: ...

class Status:
    """What `status` reports: every database and branch, and the pool's space.

    Iterating it (and ``len``) goes over ``entries``.
    """

    @property
    def entries(self) -> List[Info]:
        """Every database and branch, parents before their branches."""
    @property
    def pool(self) -> PoolUsage: ...
    def get(self, name: str) -> Optional[Info]:
        """The entry named ``name``, or None."""
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Info]: ...

class BranchManager:
    """Manages the databases and branches of one betterpg home.

    One per process, shared between threads; every method releases the GIL.
    Safe across os.fork(): a child opens its own copy on first use.
    """

    def __init__(self, home: Optional[StrPath] = None) -> None: ...
    @classmethod
    def init(
        cls,
        home: StrPath,
        *,
        dataset: Optional[str] = None,
        pool_file: Optional[StrPath] = None,
        size: Union[int, str, None] = None,
        pool: Optional[str] = None,
        pg_bin: Optional[StrPath] = None,
        os_user: Optional[str] = None,
        listen_address: Optional[str] = None,
        port_range: Optional[Tuple[int, int]] = None,
        branch_headroom: Optional[int] = None,
        branch_reserve: Union[int, str, None] = None,
        docker_memory: Union[int, str, None] = None,
        docker_pids: Optional[int] = None,
        zfs_properties: Optional[Mapping[str, str]] = None,
    ) -> BranchManager: ...
    @property
    def home(self) -> Path: ...
    @property
    def dataset(self) -> str: ...
    @property
    def zfs_properties(self) -> Dict[str, str]: ...
    @property
    def port_range(self) -> Tuple[int, int]: ...
    def create(
        self,
        name: str,
        *,
        pg_bin: Optional[StrPath] = None,
        pg_version: Optional[int] = None,
        runtime: Optional[str] = None,
        image: Optional[str] = None,
    ) -> Info: ...
    def branch(
        self,
        source: str,
        name: str,
        mode: Optional[Mode] = None,
        quota: Union[int, str, None] = None,
        runtime: Optional[str] = None,
        image: Optional[str] = None,
        *,
        at: Optional[str] = None,
        fast: Optional[bool] = None,
        mask: Optional[List[Union[str, "os.PathLike[str]"]]] = None,
        schema_only: bool = False,
        unmasked: bool = False,
        ttl: Union[int, str, None] = None,
        mask_rules: Optional[List[Union[str, "os.PathLike[str]"]]] = None,
        credentials: Optional[Literal["rotate", "keep"]] = None,
        rewindable: bool = False,
        owner_pid: Optional[int] = None,
    ) -> Branch: ...
    def reset(
        self,
        name: str,
        mode: Optional[Mode] = None,
        quota: Union[int, str, None] = None,
        *,
        fast: Optional[bool] = None,
        to: Optional[str] = None,
        credentials: Optional[Literal["rotate", "keep"]] = None,
        rewindable: bool = False,
    ) -> Branch: ...
    def rewind(self, name: str) -> RewindReport:
        """Roll a rewindable branch back to how it was when made (same name, port and URL)."""
    def snapshot(
        self,
        source: str,
        name: Optional[str] = None,
        mode: Optional[Mode] = None,
        *,
        fast: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """A named snapshot; branch it with branch("SRC@NAME", ...)."""
    def snapshots(self, source: Optional[str] = None) -> List[Dict[str, Any]]: ...
    def destroy_snapshot(self, snapshot: str, force: bool = False) -> Dict[str, Any]: ...
    def prune_snapshots(self, source: Optional[str] = None, dry_run: bool = False) -> Dict[str, Any]: ...
    def run_snapshot_policy(self, source: Optional[str] = None, dry_run: bool = False) -> Dict[str, Any]: ...
    def daemon_once(self, dry_run: bool = False) -> Dict[str, Any]:
        """One scheduler pass (snapshots, expiry, idle stop, replicas); the report as `bpg daemon --once --json`."""
    def gc(self, dry_run: bool = False) -> GcReport: ...
    def destroy(self, name: str, force: bool = False) -> None: ...
    def attach(
        self,
        name: str,
        *,
        pgdata: StrPath,
        url: str,
        password: Optional[str] = None,
        pg_bin: Optional[StrPath] = None,
        settings: Optional[Dict[str, Any]] = None,
    ) -> Info:
        """Register a running cluster betterpg did not create (kind "attached");
        ``settings``: its branches' policies, as ``configure`` takes them."""
    def follow(
        self,
        name: str,
        from_url: Optional[str] = None,
        *,
        password_file: Optional[StrPath] = None,
        slot: Optional[str] = None,
        pg_bin: Optional[StrPath] = None,
        settings: Optional[Dict[str, Any]] = None,
        rebuild: bool = False,
    ) -> Info:
        """A replica (kind "replica") of the primary at ``from_url``; a failure leaves nothing.
        ``settings``: its branches' policies, as ``configure`` takes them.
        ``rebuild=True``: a new base backup takes the existing replica's place (the
        stored URL, password and slot unless given); its branches keep running."""
    def detach(self, name: str, force: bool = False) -> List[str]:
        """Forget an attached cluster; ``force`` destroys its branches first."""
    def start(self, name: str) -> Info: ...
    def stop(self, name: str) -> Info: ...
    def protect(self, name: str) -> Info: ...
    def unprotect(self, name: str) -> Info: ...
    def info(self, name: str) -> Info: ...
    def status(self) -> Status: ...
    def list(self) -> List[Info]: ...
    def url(self, name: str, role: Optional[str] = None) -> str:
        """The URL of a database or branch; with ``role``, of that role of a rotated branch."""
    def audit(self, since: Optional[str] = None) -> List[Dict[str, Any]]: ...
    def mask_check(
        self, source: str, rules: Optional[StrPath] = None, sample_rows: int = 0
    ) -> Dict[str, Any]: ...
    def mask_sql(self, path: StrPath, source: Optional[str] = None) -> Dict[str, Any]:
        """The SQL a masking rules file compiles to (`bpg mask-sql --json`); the key a placeholder."""
    def logs(self, name: str, tail: Optional[int] = None) -> str: ...
    def settings(self, name: str) -> Dict[str, Any]:
        """Every setting of `bpg config`; None/[]/False when not set; durations in seconds."""
    def configure(self, name: str, **settings: Any) -> Dict[str, Any]:
        """Change settings (ttl="8h", keep_last=3, mask=[...], None clears); all or nothing."""
    def follow_logs(self, name: str, tail: Optional[int] = None) -> LogFollower: ...
    @staticmethod
    def doctor(home: Optional[StrPath] = None) -> DoctorReport: ...
    def pool_usage(self) -> PoolUsage: ...

class BetterPgError(Exception):
    """Base class of every error raised by betterpg.

    Decide on the fields, not on the message; each is None where it does
    not apply.
    """

    code: int
    kind: str
    #: PostgreSQL's SQLSTATE when the server answered (e.g. "28P01").
    sqlstate: Optional[str]
    #: PostgreSQL's DETAIL, when it gave one.
    detail: Optional[str]
    #: A finer stable reason: "busy", "no_space", "unavailable", "other"
    #: (ZfsError); "taken", "exhausted" (PortError); "port_in_use", "other"
    #: (ServerRuntimeError).
    reason: Optional[str]
    #: A ZfsError's command line or library call.
    operation: Optional[str]
    #: A ZfsError's dataset, snapshot or pool.
    dataset: Optional[str]
    #: What ZFS said (a ZfsError's stderr).
    stderr: Optional[str]
    #: The Docker engine's HTTP status (DockerError).
    status: Optional[int]
    #: The port concerned (PortError).
    port: Optional[int]

class InvalidNameError(BetterPgError, ValueError): ...
class AlreadyExistsError(BetterPgError): ...
class NotFoundError(BetterPgError, LookupError): ...
class HasDependentsError(BetterPgError): ...
class NotInitializedError(BetterPgError): ...
class ConfigError(BetterPgError): ...
class ZfsError(BetterPgError): ...
class PostgresError(BetterPgError): ...
class ServerRuntimeError(BetterPgError): ...
class OperationTimeoutError(BetterPgError, TimeoutError): ...
class LocalIOError(BetterPgError, OSError): ...
class CatalogError(BetterPgError): ...
class PortError(BetterPgError): ...
class VersionMismatchError(BetterPgError): ...
class UnsupportedError(BetterPgError): ...
class DockerError(BetterPgError): ...
class InvalidStateError(BetterPgError): ...
class NoSpaceError(BetterPgError): ...
class OutOfWindowError(BetterPgError, ValueError): ...
class MaskError(BetterPgError): ...
class ProtectedError(BetterPgError): ...
class DaemonRunningError(BetterPgError): ...
class InternalError(BetterPgError): ...

ERROR_KINDS: List[Tuple[int, str]]
ERROR_CLASSES: Dict[int, Type[BetterPgError]]
