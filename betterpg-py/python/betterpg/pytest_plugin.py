"""pytest plugin: a private branch of your database for every test.

Registered through the ``pytest11`` entry point, so it is active as soon as
betterpg is installed; nothing happens until a test asks for a fixture.

Fixtures
--------
``betterpg_manager`` (session)
    The :class:`betterpg.BranchManager` of the configured home.
``betterpg_source`` (session)
    Name of the database (or branch) tests branch from. Defaults to the
    configured source; override it in a ``conftest.py`` to prepare a source
    once per session (create it, run migrations, load data) and return its name.
``betterpg_branch`` (function)
    A fresh branch of the source for this test, destroyed after the test
    whether it passed or failed. ``@pytest.mark.betterpg_source("other")``
    picks another source for one test.
``betterpg_branch_factory`` (function)
    ``factory(source=None, *, fast=None, quota=None) -> Branch`` for tests that need
    several branches or a different source; all destroyed after the test.
``betterpg_url`` (function)
    The connection URL of ``betterpg_branch``.
``betterpg_conn`` (function)
    A ``psycopg.Connection`` (psycopg 3) to ``betterpg_branch``, closed after
    the test.

:func:`branch_fixture` makes further branch fixtures, of any scope.

Configuration (first found wins)
--------------------------------
home:   ``--betterpg-home`` option, ``betterpg_home`` ini value, ``BPG_HOME``.
source: ``--betterpg-source`` option, ``betterpg_source`` ini value.
fast:   ``--betterpg-fast`` option, ``betterpg_fast`` ini value (crash-consistent
        snapshots: no backup mode on the source; fine when nothing writes to
        the source while tests run).
quota:  ``--betterpg-quota`` option, ``betterpg_quota`` ini value: most pool space
        each branch may use (e.g. ``2G``), so a runaway test cannot fill the pool.
sweep:  ``--betterpg-no-sweep`` option, ``betterpg_sweep`` ini value (default on).
destroy: ``--betterpg-sync-destroy`` option, ``betterpg_background_destroy`` ini
        value (default on: a finished test's branches are destroyed by one
        background thread while the next test runs, at most two waiting; the
        session's end waits for all and reports any failure).

Names, pytest-xdist and leftovers
---------------------------------
Every branch the plugin makes is named
``pytest-<pid>-<start>-<worker>-<random>-<n>``: the pid of the process that
made it and that process's start time (``/proc/<pid>/stat`` field 22, in
base 36), the xdist worker id (``gw0`` ... or ``main``), a random suffix
drawn once per process, and a counter. Names therefore never collide
between workers, sessions or machines sharing a home, and the core gives
every branch its own port.

Each process destroys its own branches: after each test (in the
background, see above), and again at the end of its session for any whose
destroy failed. If a process
dies without cleaning up (killed, crashed xdist worker), its branches are
removed by the *sweep* that runs whenever a session first opens the manager:
a branch is swept when its name matches the pattern above **and** no process
with that pid and that start time exists. The pair (pid, start time)
identifies a process for the lifetime of the machine's boot, so a live
session's branches are never swept, even when pids are reused, and a
recycled pid does not keep a dead session's branches alive. When ``/proc``
cannot show the pid (``hidepid``) but the pid answers a signal, the creator
counts as alive: the sweep never guesses in favour of destroying. The rule
assumes every session using a home runs in the same pid namespace (as the
core's own "creating process is dead" checks do).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import re
import secrets
import string
import threading
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Union

import pytest

import betterpg

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

#: Every branch the plugin makes starts with this.
NAME_PREFIX = "pytest"

#: Full pattern of the plugin's branch names (see the module docstring).
NAME_RE = re.compile(
    r"^pytest-(?P<pid>[0-9]+)-(?P<start>[0-9a-z]+)-(?P<worker>[A-Za-z0-9]+)"
    r"-(?P<rand>[0-9a-z]{6})-(?P<n>[0-9]+)$"
)

_B36 = string.digits + string.ascii_lowercase


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def process_start_time(pid: int) -> Optional[int]:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``
    field 22), or None when there is no such entry in ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: the
    # fields after it start after the last ')'. starttime is field 22.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def creator_alive(pid: int, start: str) -> bool:
    """True when the process that made a branch (pid + base-36 start time) may still run.

    A process whose ``/proc`` entry shows another start time is a different
    process that reuses the pid: the creator is dead. When ``/proc`` shows
    nothing but the pid answers a signal (``/proc`` mounted with
    ``hidepid``, or no ``/proc`` at all), the creator counts as alive: the
    sweep never guesses in favour of destroying.
    """
    if pid <= 0:
        return False
    ticks = process_start_time(pid)
    if ticks is not None:
        return _base36(ticks) == start
    return _pid_exists(pid)


class _Identity:
    """Name parts of this process, recomputed after a fork."""

    def __init__(self) -> None:
        self.pid = -1
        self._lock = threading.Lock()
        self._counter: Iterator[int] = itertools.count(1)
        self.prefix = ""

    def next_name(self) -> str:
        with self._lock:
            pid = os.getpid()
            if pid != self.pid:
                # Without /proc, start time 0: the sweep then relies on the pid alone.
                ticks = process_start_time(pid) or 0
                worker = re.sub(r"[^A-Za-z0-9]", "", os.environ.get("PYTEST_XDIST_WORKER", "main"))
                rand = "".join(secrets.choice(_B36) for _ in range(6))
                self.prefix = f"{NAME_PREFIX}-{pid}-{_base36(ticks)}-{worker or 'main'}-{rand}"
                self.pid = pid
                self._counter = itertools.count(1)
            return f"{self.prefix}-{next(self._counter)}"


_identity = _Identity()


def new_branch_name() -> str:
    """A fresh branch name for this process (see the module docstring)."""
    return _identity.next_name()


def sweep(manager: betterpg.BranchManager) -> List[str]:
    """Destroy leftover plugin branches whose creating process is dead.

    Returns the names destroyed. Safe to run from several processes at once
    (e.g. every xdist worker): a branch another sweeper removed first is
    skipped.
    """
    destroyed: List[str] = []
    for info in manager.list():
        m = NAME_RE.match(info.name)
        if m is None or info.kind != "branch":
            continue
        if creator_alive(int(m["pid"]), m["start"]):
            continue
        try:
            manager.destroy(info.name, force=True)
        except betterpg.NotFoundError:
            continue  # another sweeper, or a parent's forced destroy, got it
        except betterpg.InvalidStateError:
            continue  # another live process is destroying it right now
        destroyed.append(info.name)
    return destroyed


# --------------------------------------------------------------------------
# configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("betterpg", "betterpg: a private branch of your database per test")
    group.addoption(
        "--betterpg-home",
        dest="betterpg_home",
        default=None,
        metavar="DIR",
        help="betterpg home (else ini betterpg_home, else $BPG_HOME)",
    )
    group.addoption(
        "--betterpg-source",
        dest="betterpg_source",
        default=None,
        metavar="NAME",
        help="database or branch each test's betterpg_branch is made from (else ini betterpg_source)",
    )
    group.addoption(
        "--betterpg-fast",
        dest="betterpg_fast",
        action="store_true",
        default=None,
        help="crash-consistent snapshots of the source (no backup mode); else ini betterpg_fast",
    )
    group.addoption(
        "--betterpg-quota",
        dest="betterpg_quota",
        default=None,
        metavar="SIZE",
        help="most pool space each branch may use, e.g. 2G (else ini betterpg_quota; default none)",
    )
    group.addoption(
        "--betterpg-no-sweep",
        dest="betterpg_sweep",
        action="store_false",
        default=None,
        help="do not destroy leftover branches of dead test sessions at start",
    )
    parser.addini("betterpg_home", "betterpg home directory", default=None)
    parser.addini("betterpg_source", "source database for betterpg_branch", default=None)
    parser.addini("betterpg_fast", "crash-consistent snapshots (bool)", type="bool", default=False)
    parser.addini("betterpg_quota", "most pool space per branch, e.g. 2G", default=None)
    group.addoption(
        "--betterpg-sync-destroy",
        dest="betterpg_background_destroy",
        action="store_false",
        default=None,
        help="destroy each test's branches before the next test starts (default: in the "
        "background while it runs; else ini betterpg_background_destroy)",
    )
    parser.addini(
        "betterpg_background_destroy",
        "destroy finished tests' branches in the background while the next test runs (bool)",
        type="bool",
        default=True,
    )
    parser.addini(
        "betterpg_sweep",
        "destroy leftover branches of dead test sessions at start (bool)",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "betterpg_source(name): make this test's betterpg_branch from database/branch NAME",
    )


def _setting(config: pytest.Config, name: str, env: Optional[str] = None) -> Any:
    value = config.getoption(name, default=None)
    if value is None:
        value = config.getini(name)
    if value in (None, "") and env:
        value = os.environ.get(env) or None
    return value


def configured_home(config: pytest.Config) -> Optional[str]:
    """The configured home: option, ini value, then ``$BPG_HOME``."""
    return _setting(config, "betterpg_home", env="BPG_HOME") or None


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    home = configured_home(config)
    if not home:
        return None
    source = _setting(config, "betterpg_source") or "(not set)"
    return f"betterpg: home {home}, source {source}"


# --------------------------------------------------------------------------
# per-process state


#: Most branches waiting for their background destroy: beyond it a test's
#: teardown waits, so finished tests never pile up running servers.
MAX_PENDING_DESTROYS = 2


class _Session:
    """Branches this process made and has not destroyed yet."""

    def __init__(
        self,
        manager: betterpg.BranchManager,
        fast: bool,
        quota: Optional[str],
        background: bool = False,
    ) -> None:
        self.manager = manager
        self.fast = fast
        self.quota = quota
        self.live: Dict[str, None] = {}
        self.lock = threading.Lock()
        # Background destroys: one worker thread (the core releases the GIL
        # while it works), at most MAX_PENDING_DESTROYS queued; failures are
        # kept for the end of the session.
        self.background = background
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._pending: List["concurrent.futures.Future[None]"] = []
        self._slots = threading.BoundedSemaphore(MAX_PENDING_DESTROYS)
        self.background_errors: List[BaseException] = []

    def make(
        self, source: str, fast: Optional[bool] = None, quota: Union[int, str, None] = None
    ) -> betterpg.Branch:
        name = new_branch_name()
        with self.lock:
            self.live[name] = None
        try:
            return self.manager.branch(
                source,
                name,
                fast=self.fast if fast is None else fast,
                quota=self.quota if quota is None else quota,
            )
        except BaseException:
            with self.lock:
                self.live.pop(name, None)
            raise

    def _destroy_now(self, name: str) -> None:
        try:
            self.manager.destroy(name, force=True)
        except betterpg.NotFoundError:
            pass
        with self.lock:
            self.live.pop(name, None)

    def destroy(self, name: str) -> None:
        """Destroy ``name`` now, after every background destroy queued
        before it (a branch of this branch may be among them)."""
        self.flush()
        self._destroy_now(name)

    def destroy_later(self, name: str) -> None:
        """Destroy ``name`` in the background: the next test starts while
        it goes. Waits while MAX_PENDING_DESTROYS are queued already."""
        self._slots.acquire()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="betterpg-destroy"
            )

        def work() -> None:
            try:
                self._destroy_now(name)
            except BaseException as e:  # noqa: BLE001 - kept for the session's end
                self.background_errors.append(e)
            finally:
                self._slots.release()

        with self.lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(work))

    def flush(self) -> None:
        """Wait for every queued background destroy."""
        with self.lock:
            pending, self._pending = self._pending, []
        concurrent.futures.wait(pending)

    def destroy_all(self) -> List[BaseException]:
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        errors: List[BaseException] = list(self.background_errors)
        self.background_errors.clear()
        with self.lock:
            names = list(self.live)
        for name in reversed(names):
            try:
                self._destroy_now(name)
            except betterpg.BetterPgError as e:
                errors.append(e)
        return errors


@pytest.fixture(scope="session")
def betterpg_manager(pytestconfig: pytest.Config) -> betterpg.BranchManager:
    """The BranchManager of the configured home (one per test process)."""
    home = configured_home(pytestconfig)
    if not home:
        pytest.fail(
            "betterpg: no home configured: pass --betterpg-home DIR, set betterpg_home "
            "in the pytest ini file, or set BPG_HOME",
            pytrace=False,
        )
    manager = betterpg.BranchManager(home)
    if _setting(pytestconfig, "betterpg_sweep") is not False:
        try:
            swept = sweep(manager)
        except betterpg.BetterPgError as e:
            warnings.warn(
                pytest.PytestWarning(f"betterpg: sweeping leftover test branches failed: {e}"),
                stacklevel=1,
            )
        else:
            if swept:
                warnings.warn(
                    pytest.PytestWarning(
                        f"betterpg: destroyed {len(swept)} leftover branch(es) of dead test "
                        f"sessions: {', '.join(swept)}"
                    ),
                    stacklevel=1,
                )
    return manager


@pytest.fixture(scope="session")
def _betterpg_session(
    betterpg_manager: betterpg.BranchManager, pytestconfig: pytest.Config
) -> Iterator[_Session]:
    session = _Session(
        betterpg_manager,
        bool(_setting(pytestconfig, "betterpg_fast")),
        _setting(pytestconfig, "betterpg_quota") or None,
        background=_setting(pytestconfig, "betterpg_background_destroy") is not False,
    )
    yield session
    errors = session.destroy_all()
    if errors:
        raise RuntimeError("betterpg: could not destroy some test branches: " + "; ".join(map(str, errors)))


@pytest.fixture(scope="session")
def betterpg_source(pytestconfig: pytest.Config) -> str:
    """Name of the database each test's branch is made from.

    Override this fixture (session scope) to prepare the source yourself.
    """
    source = _setting(pytestconfig, "betterpg_source")
    if not source:
        pytest.fail(
            "betterpg: no source database configured: pass --betterpg-source NAME, set "
            "betterpg_source in the pytest ini file, or override the betterpg_source fixture",
            pytrace=False,
        )
    return str(source)


class BranchFactory:
    """Makes branches for one test (or one fixture scope) and destroys them afterwards."""

    def __init__(self, session: _Session, default_source: Callable[[], str]) -> None:
        self._session = session
        self._default_source = default_source
        self.branches: List[betterpg.Branch] = []

    def __call__(
        self,
        source: Optional[str] = None,
        *,
        fast: Optional[bool] = None,
        quota: Union[int, str, None] = None,
    ) -> betterpg.Branch:
        """A new branch of ``source`` (default: the configured source).

        ``fast`` and ``quota`` default to the configured ones.
        """
        branch = self._session.make(source or self._default_source(), fast, quota)
        self.branches.append(branch)
        return branch

    def cleanup(self) -> None:
        """Destroy every branch made, newest first; raise the first failure.

        With background destroys (the default) the branches are queued and
        a failure is reported at the end of the session instead."""
        first: Optional[BaseException] = None
        while self.branches:
            branch = self.branches.pop()
            if self._session.background:
                self._session.destroy_later(branch.name)
                continue
            try:
                self._session.destroy(branch.name)
            except betterpg.BetterPgError as e:
                first = first or e
        if first is not None:
            raise first


def _factory(request: pytest.FixtureRequest) -> BranchFactory:
    session = request.getfixturevalue("_betterpg_session")
    factory = BranchFactory(session, lambda: request.getfixturevalue("betterpg_source"))
    request.addfinalizer(factory.cleanup)
    return factory


@pytest.fixture
def betterpg_branch_factory(request: pytest.FixtureRequest) -> BranchFactory:
    """``factory(source=None, *, fast=None, quota=None) -> Branch``; all destroyed after the test."""
    return _factory(request)


@pytest.fixture
def betterpg_branch(request: pytest.FixtureRequest) -> betterpg.Branch:
    """A fresh branch of the source, private to this test, destroyed after it."""
    factory = _factory(request)
    marker = request.node.get_closest_marker("betterpg_source")
    source = marker.args[0] if marker is not None and marker.args else None
    return factory(source)


@pytest.fixture
def betterpg_url(betterpg_branch: betterpg.Branch) -> str:
    """Connection URL (``postgresql://...``) of this test's branch.

    For SQLAlchemy use ``betterpg.sqlalchemy_url(betterpg_url)``.
    """
    return betterpg_branch.url


@pytest.fixture
def betterpg_conn(betterpg_branch: betterpg.Branch) -> Iterator["psycopg.Connection[Any]"]:
    """A psycopg 3 connection to this test's branch (closed after the test)."""
    try:
        import psycopg
    except ImportError:
        pytest.fail(
            "betterpg_conn needs psycopg 3: pip install 'psycopg[binary]' (or 'betterpg[psycopg]')",
            pytrace=False,
        )
    conn = psycopg.connect(betterpg_branch.url)
    try:
        yield conn
    finally:
        conn.close()


def branch_fixture(
    source: Optional[str] = None,
    *,
    fast: Optional[bool] = None,
    quota: Union[int, str, None] = None,
    scope: str = "function",
) -> Any:
    """Make a branch fixture, like pytest-postgresql's factories.

    >>> orders_db = branch_fixture("orders")                  # in a conftest.py
    >>> shared = branch_fixture(scope="module")               # one per module

    ``source`` defaults to the ``betterpg_source`` fixture. The branch is
    destroyed when the fixture's scope ends.
    """

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _branch(request: pytest.FixtureRequest) -> Iterator[betterpg.Branch]:
        session = request.getfixturevalue("_betterpg_session")
        factory = BranchFactory(session, lambda: request.getfixturevalue("betterpg_source"))
        try:
            yield factory(source, fast=fast, quota=quota)
        finally:
            factory.cleanup()

    return _branch
