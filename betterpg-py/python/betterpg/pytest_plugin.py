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
    A branch of the source private to this test, as it was made, taken
    away after the test whether it passed or failed: destroyed, or (from
    the warm pool) rewound and handed to a later test.
    ``@pytest.mark.betterpg_source("other")`` picks another source for one
    test.
``betterpg_branch_factory`` (function)
    ``factory(source=None, *, mode=None, quota=None) -> Branch`` for tests that need
    several branches or a different source; all destroyed after the test.
``betterpg_url`` (function)
    The connection URL of ``betterpg_branch``.
``betterpg_conn`` (function)
    A ``psycopg.Connection`` (psycopg 3) to ``betterpg_branch``, closed after
    the test.
``betterpg_mask`` / ``betterpg_mask_rules`` (session)
    The masking every branch the plugin makes gets (see *Masking* below);
    override them in a ``conftest.py`` to choose the files there.

:func:`branch_fixture` makes further branch fixtures, of any scope.

Configuration (first found wins)
--------------------------------
home:   ``--betterpg-home`` option, ``betterpg_home`` ini value, ``BPG_HOME``.
        (Write options with a value as ``--betterpg-home=DIR``: pytest looks
        for its ini file before loading plugins, and in ``--betterpg-home
        DIR`` it takes ``DIR`` for a test path and misses the ini file.)
source: ``--betterpg-source`` option, ``betterpg_source`` ini value.
mode:   ``--betterpg-mode`` option, ``betterpg_mode`` ini value:
        ``application-consistent`` (the default) or ``crash-consistent``
        (no backup mode on the source; fine when nothing writes to the
        source while tests run). ``--betterpg-fast`` / ``betterpg_fast`` are
        its deprecated spellings.
quota:  ``--betterpg-quota`` option, ``betterpg_quota`` ini value: most pool space
        each branch may use (e.g. ``2G``), so a runaway test cannot fill the pool.
sweep:  ``--betterpg-no-sweep`` option, ``betterpg_sweep`` ini value (default on).
destroy: ``--betterpg-sync-destroy`` option, ``betterpg_background_destroy`` ini
        value (default on: a finished test's branches are destroyed by one
        background thread while the next test runs, at most two waiting; the
        session's end waits for all and reports any failure).

pool:   ``--betterpg-pool-size=N`` option, ``betterpg_pool_size`` ini value
        (default 2; 0 turns it off): branches of the source kept ready by
        a background thread, so a test's branch was made before it asked
        (see *The warm pool* below).
recycle: ``--betterpg-no-recycle`` option, ``betterpg_recycle`` ini value
        (default on): a pooled branch is rewound after its test and handed
        out again instead of destroyed (see *The warm pool*).

mask:   ``--betterpg-mask=PATH`` (repeatable), else the ``betterpg_mask`` ini
        value (paths one a line, relative to the ini file); a ``conftest.py``
        that overrides the ``betterpg_mask`` fixture decides instead of both.
        ``--betterpg-mask-rules`` / ``betterpg_mask_rules`` likewise for
        rules files (passed to the core as ``mask_rules=``).

Masking
-------
A suite run against a copy of production runs on masked data only: with
masking configured, *every* branch the fixtures make (``betterpg_branch``,
the factory, :func:`branch_fixture`) is made with those files, masked on its
private first start before it has a TCP port. When the masking fails (a
statement errors, a file is missing) the core destroys the branch and
raises ``betterpg.MaskError`` (or the file's error): the fixture errors and
the test never runs. There is no way to get an unmasked branch from the
plugin while masking is configured. A source's own masking policy
(``bpg config SRC --mask``) applies to its branches in any case.

The warm pool
-------------
The first test that asks for a branch of the source with the session's
mode and quota (``betterpg_branch`` without a ``betterpg_source`` marker,
the factory or :func:`branch_fixture` without a source, mode or quota of
their own) starts a background thread that keeps ``betterpg_pool_size``
branches ready, made one at a time; a fixture then takes a ready one (and
the thread makes the next while the test runs) instead of making it. Every other branch is
made when asked. Pooled branches are made like every other: the mode,
quota and masking options apply to them, and they carry the names below.
The threads make a branch only while fewer than ``betterpg_pool_size`` of
this process's branches are held by no test (ready, being made or rewound,
or waiting for their rewind or destroy): a process never has more live
branches than the pool plus those its running tests hold. Each xdist
worker has its own pool. The session's end stops the threads and destroys
the pooled branches; after a crash the sweep below finds them by their
names.

Recycling (the default; ``--betterpg-no-recycle`` or ``betterpg_recycle =
false`` turns it off): pooled branches are made with a rewind point (the
core's ``rewindable``: a snapshot of the branch as made, isolated and
masked, before it first listened). When the test that took one ends, the
branch is not destroyed: the pool's thread rewinds it (a stop, a ZFS
rollback, a start: same name, port and password; what the test wrote is
gone) and hands it to a later test. A later test may therefore get a
branch with the name and port an earlier one had, never with its data. A
recycled branch holds the source **as it was when that pooled branch was
first made**, not as it is now: like every pooled branch, it does not see
what was written to the source after that (a suite whose source changes
while it runs turns the pool off, or recycling). A rewind that fails (the
test destroyed or protected its branch, or made a branch or a named
snapshot of it) destroys that branch instead and the pool makes a new one;
the session says so in a warning. Branches asked for with a source, mode
or quota of their own are never pooled and are destroyed as before.

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
background, see above), and at the end of its session those still pooled
and any whose destroy failed. If a process
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

The plugin is split by concern, as pytest-postgresql's is: options
(:mod:`betterpg._plugin.options`), process identity and branch names
(:mod:`betterpg._plugin.identity`), the janitor that destroys branches in
the background and sweeps leftovers (:mod:`betterpg._plugin.janitor`), the
warm pool (:mod:`betterpg._plugin.pool`), and the fixtures
(:mod:`betterpg._plugin.fixtures`). This module is the entry point pytest
loads: it gathers their hooks and fixtures, and keeps the names users and
tests import from it.
"""

from __future__ import annotations

from betterpg._plugin.fixtures import (
    BranchFactory,
    _betterpg_session,  # noqa: F401  (a fixture: pytest finds it here)
    betterpg_branch,
    betterpg_branch_factory,
    betterpg_conn,
    betterpg_manager,
    betterpg_mask,
    betterpg_mask_rules,
    betterpg_source,
    betterpg_url,
    branch_fixture,
)
from betterpg._plugin.identity import (
    NAME_PREFIX,
    NAME_RE,
    _base36,  # noqa: F401  (used by tests)
    creator_alive,
    new_branch_name,
    process_start_time,
)
from betterpg._plugin.janitor import MAX_PENDING_DESTROYS, Session, sweep
from betterpg._plugin.options import (
    DEFAULT_POOL_SIZE,
    configured_home,
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
)
from betterpg._plugin.pool import Pool

#: The janitor's class under its earlier name.
_Session = Session

__all__ = [
    # hooks
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
    # fixtures
    "betterpg_manager",
    "betterpg_source",
    "betterpg_branch",
    "betterpg_branch_factory",
    "betterpg_url",
    "betterpg_conn",
    "betterpg_mask",
    "betterpg_mask_rules",
    # helpers
    "BranchFactory",
    "branch_fixture",
    "configured_home",
    "DEFAULT_POOL_SIZE",
    "MAX_PENDING_DESTROYS",
    "NAME_PREFIX",
    "NAME_RE",
    "Pool",
    "Session",
    "creator_alive",
    "new_branch_name",
    "process_start_time",
    "sweep",
]
