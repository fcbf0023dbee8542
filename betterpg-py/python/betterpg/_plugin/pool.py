"""The warm pool: branches of the default source made ahead of the tests,
and recycled by a rewind once a test is done with one.

With ``betterpg_pool_size`` N > 0 (default
:data:`~betterpg._plugin.options.DEFAULT_POOL_SIZE`), the first request for a branch of the default
source (``betterpg_branch``, or the factory called without a source, mode
or quota other than the session's) starts a background thread that keeps
up to N ready branches waiting; a fixture then takes one instead of waiting
for a branch to be made. Each process (each xdist worker) has its own pool.
One thread, making or rewinding one branch at a time: on 2 cores branches
made side by side are not made sooner, and zfs-fuse (CI's ZFS) has wedged
under concurrent snapshots of one source while it took writes.

Pooled branches are made by :meth:`Session.make
<betterpg._plugin.janitor.Session.make>`: the session's mode, quota and
masking apply to them as to every other branch, and they carry the plugin's
names, so a crashed process's pooled branches are swept like its others.

Recycling (``betterpg_recycle``, default on): pooled branches are made
rewindable (the core takes a rewind point of each as it is made:
isolated, masked, before it first listened). When the test (or fixture
scope) that took one ends, the branch is not destroyed: :meth:`Pool.give_back`
queues it, and the thread rewinds it (``BranchManager.rewind``: a stop, a
ZFS rollback and a start, under the same name, port and password) before it
makes anything, and puts it back among the ready ones. A recycled branch
therefore holds the source as it was when that pooled branch was first
made, as every pooled branch does. A rewind that fails (the test destroyed
or protected its branch, made a branch or a named snapshot of it) destroys
that branch instead, and the pool makes a new one.

The bound: the thread makes a branch only while this process's branches
that no test holds (ready ones, ones being made or rewound, ones waiting
for their rewind or destroy) number fewer than N. This process therefore
never has more live branches than N plus those its running tests hold.
"""

from __future__ import annotations

import collections
import threading
from typing import Deque, List, Optional, Set

import betterpg
from betterpg._plugin.janitor import Session
from betterpg._plugin.options import DEFAULT_POOL_SIZE

__all__ = ["DEFAULT_POOL_SIZE", "Pool"]


class Pool:
    """Up to ``size`` ready branches of ``source``, made (and, with
    ``recycle``, rewound after use) one at a time by a background thread."""

    def __init__(self, session: Session, source: str, size: int, recycle: bool = False) -> None:
        if size < 1:
            raise ValueError(f"a pool holds at least one branch, not {size}")
        self.session = session
        self.source = source
        self.size = size
        self.recycle = recycle
        self.ready: Deque[betterpg.Branch] = collections.deque()
        # Branches tests gave back, waiting for their rewind (oldest first).
        self.used: Deque[betterpg.Branch] = collections.deque()
        # Names of the branches this pool made and has not lost: only
        # those are given back and rewound.
        self.members: Set[str] = set()
        # Branches rewound and handed out again, and the rewinds that
        # failed (that branch was destroyed instead): for the curious and
        # the tests; a failed rewind fails no test.
        self.rewinds = 0
        self.rewind_failures: List[BaseException] = []
        # The last failure of a fill: the next take() raises it (so a test
        # sees why it has no branch), and the threads wait until then.
        self.error: Optional[BaseException] = None
        self._stopping = False
        self._threads: List[threading.Thread] = []

    def _may_make(self) -> bool:
        s = self.session
        return not self._stopping and self.error is None and len(s.live) - len(s.held) < self.size

    def _fill(self) -> None:
        cond = self.session.changed
        while True:
            with cond:
                while not self._stopping and not self.used and not self._may_make():
                    cond.wait()
                if self._stopping:
                    return
                if self.used:
                    # A used branch first: a rewind is much cheaper than a
                    # new branch, and it is counted in the bound already.
                    branch = self.used.popleft()
                    reserve = None
                else:
                    # Counted in session.live before make() returns (make()
                    # adds the name under the same lock), so a second
                    # thread sees it at once.
                    reserve = self.session.reserve_name()
            if reserve is None:
                self._rewind(branch)
                continue
            try:
                branch = self.session.make(self.source, name=reserve, hold=False, rewindable=self.recycle)
            except BaseException as e:  # noqa: BLE001 - handed to the next take()
                with cond:
                    if not self._stopping:
                        self.error = e
                    cond.notify_all()
                continue
            with cond:
                self.members.add(branch.name)
                self.ready.append(branch)
                cond.notify_all()

    def _rewind(self, branch: betterpg.Branch) -> None:
        """Rewind a used branch and make it ready again; destroy it when
        the rewind fails."""
        cond = self.session.changed
        # Destroys the test queued before it gave this branch back (a
        # branch of it, say) go first: a rewind refuses a branch with
        # branches.
        self.session.flush()
        try:
            self.session.manager.rewind(branch.name)
        except BaseException as e:  # noqa: BLE001 - kept; the branch is replaced
            with cond:
                self.rewind_failures.append(e)
                self.members.discard(branch.name)
            try:
                self.session.destroy_now(branch.name)
            except BaseException as d:  # noqa: BLE001 - handed to the next take()
                # Still counted in the bound and never ready again: say
                # why at the next take() rather than wait for it.
                with cond:
                    if not self._stopping:
                        self.error = d
                    cond.notify_all()
            return
        with cond:
            self.rewinds += 1
            self.ready.append(branch)
            cond.notify_all()

    def start(self) -> None:
        """Start the thread that fills the pool."""
        t = threading.Thread(target=self._fill, name="betterpg-pool", daemon=True)
        t.start()
        self._threads.append(t)

    def take(self) -> betterpg.Branch:
        """A ready branch, now held by the caller (waits for one to be
        made or rewound); raises the failure of the last fill when there
        is one."""
        cond = self.session.changed
        with cond:
            while not self.ready and self.error is None:
                cond.wait()
            if self.ready:
                branch = self.ready.popleft()
                self.session.held.add(branch.name)
                cond.notify_all()
                return branch
            error, self.error = self.error, None
            cond.notify_all()
        raise error

    def recycles(self, branch: betterpg.Branch) -> bool:
        """True when ``branch`` goes back to this pool after use (it is
        one of the pool's and recycling is on) instead of being destroyed."""
        with self.session.lock:
            return (
                self.recycle
                and not self._stopping
                and branch.name in self.members
                and not getattr(branch, "destroyed", False)
            )

    def give_back(self, branch: betterpg.Branch) -> None:
        """``branch`` (one :meth:`recycles` accepts) is no longer held: the
        thread rewinds it and makes it ready again."""
        cond = self.session.changed
        with cond:
            self.session.held.discard(branch.name)
            self.used.append(branch)
            cond.notify_all()

    def stop(self) -> None:
        """Stop the threads and wait for a branch being made or rewound;
        the ready and used branches stay in the session, whose end
        destroys them."""
        cond = self.session.changed
        with cond:
            self._stopping = True
            cond.notify_all()
        for t in self._threads:
            t.join()
        self._threads.clear()
