"""Fixtures: the manager, the source, branches per test and factories of
further branch fixtures (like pytest-postgresql's ``factories``)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Union

import pytest

import betterpg
from betterpg._plugin.janitor import Session, sweep
from betterpg._plugin.options import (
    configured_home,
    configured_mode,
    configured_paths,
    configured_pool_size,
    configured_recycle,
    setting,
)
from betterpg._plugin.pool import Pool

if TYPE_CHECKING:  # pragma: no cover
    import psycopg


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
    if setting(pytestconfig, "betterpg_sweep") is not False:
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


def _path_list(what: str, value: Any) -> List[str]:
    """A fixture's list of paths (``None``, one path, or a sequence of them)."""
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        paths = [os.fspath(p) for p in value]
    except TypeError:
        pytest.fail(f"betterpg: {what} must be a path or a list of paths, not {value!r}", pytrace=False)
    return [str(Path(p).absolute()) for p in paths]


@pytest.fixture(scope="session")
def betterpg_mask(pytestconfig: pytest.Config) -> List[str]:
    """Masking SQL files (or directories of ``*.sql``) every branch the
    plugin makes is masked with, in order, before it is reachable.

    From ``--betterpg-mask`` (repeatable), else the ``betterpg_mask`` ini
    value; override this fixture (session scope) to choose them in a
    ``conftest.py``. A failing masking errors the fixture that asked for
    the branch: a test never gets an unmasked branch.
    """
    return configured_paths(pytestconfig, "betterpg_mask")


@pytest.fixture(scope="session")
def betterpg_mask_rules(pytestconfig: pytest.Config) -> List[str]:
    """Masking rules files (TOML) every branch the plugin makes is masked
    with, after the SQL files: ``--betterpg-mask-rules`` (repeatable), else
    the ``betterpg_mask_rules`` ini value; override it like ``betterpg_mask``."""
    return configured_paths(pytestconfig, "betterpg_mask_rules")


@pytest.fixture(scope="session")
def _betterpg_session(
    betterpg_manager: betterpg.BranchManager,
    pytestconfig: pytest.Config,
    betterpg_mask: Any,
    betterpg_mask_rules: Any,
) -> Iterator[Session]:
    session = Session(
        betterpg_manager,
        configured_mode(pytestconfig),
        setting(pytestconfig, "betterpg_quota") or None,
        background=setting(pytestconfig, "betterpg_background_destroy") is not False,
        mask=_path_list("betterpg_mask", betterpg_mask),
        mask_rules=_path_list("betterpg_mask_rules", betterpg_mask_rules),
        pool_size=configured_pool_size(pytestconfig),
        recycle=configured_recycle(pytestconfig),
    )
    yield session
    errors = session.destroy_all()
    failed = session.pool.rewind_failures if session.pool is not None else []
    if failed:
        warnings.warn(
            pytest.PytestWarning(
                f"betterpg: {len(failed)} pooled branch(es) could not be rewound after their test and "
                f"were destroyed instead (the pool made new ones): {'; '.join(map(str, failed))}"
            ),
            stacklevel=1,
        )
    if errors:
        raise RuntimeError("betterpg: could not destroy some test branches: " + "; ".join(map(str, errors)))


@pytest.fixture(scope="session")
def betterpg_source(pytestconfig: pytest.Config) -> str:
    """Name of the database each test's branch is made from.

    Override this fixture (session scope) to prepare the source yourself.
    """
    source = setting(pytestconfig, "betterpg_source")
    if not source:
        pytest.fail(
            "betterpg: no source database configured: pass --betterpg-source NAME, set "
            "betterpg_source in the pytest ini file, or override the betterpg_source fixture",
            pytrace=False,
        )
    return str(source)


class BranchFactory:
    """Makes branches for one test (or one fixture scope) and destroys them afterwards."""

    def __init__(self, session: Session, default_source: Callable[[], str]) -> None:
        self._session = session
        self._default_source = default_source
        self.branches: List[betterpg.Branch] = []

    def __call__(
        self,
        source: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        quota: Union[int, str, None] = None,
        fast: Optional[bool] = None,
    ) -> betterpg.Branch:
        """A new branch of ``source`` (default: the configured source).

        ``mode`` and ``quota`` default to the configured ones (``fast`` is
        the deprecated spelling of ``mode``). With the defaults all three,
        the branch comes from the warm pool (see
        :mod:`betterpg._plugin.pool`) unless ``betterpg_pool_size`` is 0,
        and goes back to it (rewound) after use unless recycling is off.
        """
        mode = _mode_of(mode, fast)
        s = self._session
        if source is None and s.pool_size > 0 and mode in (None, s.mode) and quota in (None, s.quota):
            # The session's defaults: a ready branch from the warm pool.
            if s.pool is None:
                s.pool = Pool(s, self._default_source(), s.pool_size, recycle=s.recycle)
                s.pool.start()
            branch = s.pool.take()
        else:
            branch = s.make(source or self._default_source(), mode, quota)
        self.branches.append(branch)
        return branch

    def cleanup(self) -> None:
        """Destroy every branch made, newest first; raise the first failure.
        A branch of the warm pool goes back to it instead, to be rewound
        and handed out again (unless recycling is off).

        With background destroys (the default) the branches are queued and
        a failure is reported at the end of the session instead."""
        first: Optional[BaseException] = None
        pool = self._session.pool
        while self.branches:
            branch = self.branches.pop()
            if pool is not None and pool.recycles(branch):
                pool.give_back(branch)
                continue
            if self._session.background:
                self._session.destroy_later(branch.name)
                continue
            try:
                self._session.destroy(branch.name)
            except betterpg.BetterPgError as e:
                first = first or e
        if first is not None:
            raise first


def _mode_of(mode: Optional[str], fast: Optional[bool]) -> Optional[str]:
    """``mode``, or the mode the deprecated ``fast`` names (with a warning)."""
    if fast is None:
        return mode
    warnings.warn(
        DeprecationWarning('fast= is deprecated: use mode="crash-consistent" (or "application-consistent")'),
        stacklevel=3,
    )
    by_fast = "crash-consistent" if fast else "application-consistent"
    if mode is not None and mode != by_fast:
        raise ValueError(f"mode={mode!r} and fast={fast} disagree: give mode= only")
    return by_fast


def _factory(request: pytest.FixtureRequest) -> BranchFactory:
    session = request.getfixturevalue("_betterpg_session")
    factory = BranchFactory(session, lambda: request.getfixturevalue("betterpg_source"))
    request.addfinalizer(factory.cleanup)
    return factory


@pytest.fixture
def betterpg_branch_factory(request: pytest.FixtureRequest) -> BranchFactory:
    """``factory(source=None, *, mode=None, quota=None) -> Branch``; all destroyed after the
    test (one from the warm pool goes back to it, rewound)."""
    return _factory(request)


@pytest.fixture
def betterpg_branch(request: pytest.FixtureRequest) -> betterpg.Branch:
    """A branch of the source private to this test, as it was made: destroyed
    after the test or, from the warm pool with recycling on, rewound to how it
    was made and handed to a later test."""
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
    mode: Optional[str] = None,
    quota: Union[int, str, None] = None,
    scope: str = "function",
    fast: Optional[bool] = None,
) -> Any:
    """Make a branch fixture, like pytest-postgresql's factories.

    >>> orders_db = branch_fixture("orders")                  # in a conftest.py
    >>> shared = branch_fixture(scope="module")               # one per module

    ``source`` defaults to the ``betterpg_source`` fixture; ``mode`` and
    ``quota`` to the configured ones (``fast`` is the deprecated spelling of
    ``mode``). The branch is destroyed when the fixture's scope ends.
    """
    mode = _mode_of(mode, fast)

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _branch(request: pytest.FixtureRequest) -> Iterator[betterpg.Branch]:
        session = request.getfixturevalue("_betterpg_session")
        factory = BranchFactory(session, lambda: request.getfixturevalue("betterpg_source"))
        try:
            yield factory(source, mode=mode, quota=quota)
        finally:
            factory.cleanup()

    return _branch
