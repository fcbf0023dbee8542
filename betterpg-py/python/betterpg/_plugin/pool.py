"""The warm pool: branches of the default source made ahead of the tests.

With ``betterpg_pool_size`` N > 0 (default
:data:`~betterpg._plugin.options.DEFAULT_POOL_SIZE`), the first request for a branch of the default
source (``betterpg_branch``, or the factory called without a source, mode
or quota other than the session's) starts a background thread that keeps
up to N ready branches waiting; a fixture then takes one instead of waiting
for a branch to be made. Each process (each xdist worker) has its own pool.
One thread, making one branch at a time: on 2 cores branches made side by
side are not made sooner, and zfs-fuse (CI's ZFS) has wedged under
concurrent snapshots of one source while it took writes.

Pooled branches are made by :meth:`Session.make
<betterpg._plugin.janitor.Session.make>`: the session's mode, quota and
masking apply to them as to every other branch, and they carry the plugin's
names, so a crashed process's pooled branches are swept like its others.

The bound: the thread makes a branch only while this process's branches
that no test holds (ready ones, ones being made, ones waiting for their
destroy) number fewer than N. This process therefore never has more live
branches than N plus those its running tests hold.
"""

from __future__ import annotations

import collections
import threading
from typing import Deque, List, Optional

import betterpg
from betterpg._plugin.janitor import Session
from betterpg._plugin.options import DEFAULT_POOL_SIZE

__all__ = ["DEFAULT_POOL_SIZE", "Pool"]


class Pool:
    """Up to ``size`` ready branches of ``source``, made one at a time by a
    background thread."""

    def __init__(self, session: Session, source: str, size: int) -> None:
        if size < 1:
            raise ValueError(f"a pool holds at least one branch, not {size}")
        self.session = session
        self.source = source
        self.size = size
        self.ready: Deque[betterpg.Branch] = collections.deque()
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
                while not self._stopping and not self._may_make():
                    cond.wait()
                if self._stopping:
                    return
                # Counted in session.live before make() returns (make()
                # adds the name under the same lock), so a second thread
                # sees it at once.
                reserve = self.session.reserve_name()
            try:
                branch = self.session.make(self.source, name=reserve, hold=False)
            except BaseException as e:  # noqa: BLE001 - handed to the next take()
                with cond:
                    if not self._stopping:
                        self.error = e
                    cond.notify_all()
                continue
            with cond:
                self.ready.append(branch)
                cond.notify_all()

    def start(self) -> None:
        """Start the thread that fills the pool."""
        t = threading.Thread(target=self._fill, name="betterpg-pool", daemon=True)
        t.start()
        self._threads.append(t)

    def take(self) -> betterpg.Branch:
        """A ready branch, now held by the caller (waits for one to be
        made); raises the failure of the last fill when there is one."""
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

    def stop(self) -> None:
        """Stop the threads and wait for a branch being made; the ready
        branches stay in the session, whose end destroys them."""
        cond = self.session.changed
        with cond:
            self._stopping = True
            cond.notify_all()
        for t in self._threads:
            t.join()
        self._threads.clear()
