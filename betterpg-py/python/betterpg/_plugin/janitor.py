"""The janitor: what this process made and has not destroyed yet.

:class:`Session` makes branches with the session's defaults and destroys
them, by default in the background (one thread, at most
:data:`MAX_PENDING_DESTROYS` waiting) while the next test runs; the end of
the session waits for all of them and reports any failure. :func:`sweep`
destroys what dead sessions left behind (see
:mod:`betterpg._plugin.identity` for how a dead session is recognised).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Set, Union

import betterpg
from betterpg._plugin.identity import NAME_RE, creator_alive, new_branch_name

#: Most branches waiting for their background destroy: beyond it a test's
#: teardown waits, so finished tests never pile up running servers.
MAX_PENDING_DESTROYS = 2


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


class Session:
    """Branches this process made and has not destroyed yet."""

    def __init__(
        self,
        manager: betterpg.BranchManager,
        mode: str,
        quota: Optional[str],
        background: bool = False,
        mask: Sequence[str] = (),
        mask_rules: Sequence[str] = (),
        pool_size: int = 0,
        recycle: bool = False,
    ) -> None:
        self.manager = manager
        # Ready branches of the default source to keep (0: no pool).
        self.pool_size = pool_size
        # The pool rewinds a used branch and hands it out again instead of
        # destroying it (see betterpg._plugin.pool).
        self.recycle = recycle
        self.mode = mode
        self.quota = quota
        # Masking of every branch this session makes (SQL files or
        # directories, then rules files); empty: none asked for here (the
        # source's own policy still applies in the core).
        self.mask: List[str] = list(mask)
        self.mask_rules: List[str] = list(mask_rules)
        self.live: Dict[str, None] = {}
        # Names in live that a test (or a fixture scope) holds; the rest are
        # pooled, being made, or waiting for their destroy. ``changed`` is
        # notified whenever either changes (the pool's threads wait on it).
        self.held: Set[str] = set()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # The warm pool (betterpg._plugin.pool.Pool), once started: stopped
        # before the session's end destroys what is left.
        self.pool: Any = None
        # Background destroys: one worker thread (the core releases the GIL
        # while it works), at most MAX_PENDING_DESTROYS queued; failures are
        # kept for the end of the session.
        self.background = background
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._pending: List["concurrent.futures.Future[None]"] = []
        self._slots = threading.BoundedSemaphore(MAX_PENDING_DESTROYS)
        self.background_errors: List[BaseException] = []

    def reserve_name(self, hold: bool = False) -> str:
        """A fresh branch name, counted in :attr:`live` (and, with ``hold``,
        in :attr:`held`) from now on: give it to :meth:`make`."""
        name = new_branch_name()
        with self.changed:
            self.live[name] = None
            if hold:
                self.held.add(name)
            self.changed.notify_all()
        return name

    def _forget(self, name: str) -> None:
        with self.changed:
            self.live.pop(name, None)
            self.held.discard(name)
            self.changed.notify_all()

    def release(self, name: str) -> None:
        """``name`` is no longer held by a test (its destroy follows)."""
        with self.changed:
            self.held.discard(name)
            self.changed.notify_all()

    def make(
        self,
        source: str,
        mode: Optional[str] = None,
        quota: Union[int, str, None] = None,
        *,
        name: Optional[str] = None,
        hold: bool = True,
        rewindable: bool = False,
    ) -> betterpg.Branch:
        """A new branch of ``source`` named ``name`` (one from
        :meth:`reserve_name`; default a fresh one); ``mode`` and ``quota``
        default to the session's. The session's masking is always applied:
        when it fails (``betterpg.MaskError``), the core has destroyed the
        branch and the error propagates; there is no unmasked fallback.
        ``hold``: the caller (a test) holds the branch; the pool makes its
        branches unheld. ``rewindable``: the branch gets a rewind point (the
        pool's, when it recycles)."""
        if name is None:
            name = self.reserve_name(hold)
        elif hold:
            with self.changed:
                self.held.add(name)
        masking: Dict[str, List[str]] = {}
        if self.mask:
            masking["mask"] = list(self.mask)
        if self.mask_rules:
            masking["mask_rules"] = list(self.mask_rules)
        try:
            branch = self.manager.branch(
                source,
                name,
                mode=self.mode if mode is None else mode,
                quota=self.quota if quota is None else quota,
                rewindable=rewindable,
                # Tied to this process: a run killed before it cleaned up
                # leaves branches `bpg gc` (and the daemon) destroy.
                owner_pid=os.getpid(),
                **masking,  # type: ignore[arg-type]
            )
        except TypeError as e:
            self._forget(name)
            if "mask_rules" in masking and "mask_rules" in str(e):
                raise TypeError(
                    "betterpg: masking rules (betterpg_mask_rules / --betterpg-mask-rules) are "
                    f"configured but this betterpg's branch() does not take mask_rules=: {e}"
                ) from e
            raise
        except BaseException:
            self._forget(name)
            raise
        return branch

    def destroy_now(self, name: str) -> None:
        """Destroy ``name`` now (one already gone is fine) and forget it."""
        try:
            self.manager.destroy(name, force=True)
        except betterpg.NotFoundError:
            pass
        self._forget(name)

    def destroy(self, name: str) -> None:
        """Destroy ``name`` now, after every background destroy queued
        before it (a branch of this branch may be among them)."""
        self.release(name)
        self.flush()
        self.destroy_now(name)

    def destroy_later(self, name: str) -> None:
        """Destroy ``name`` in the background: the next test starts while
        it goes. Waits while MAX_PENDING_DESTROYS are queued already."""
        self.release(name)
        self._slots.acquire()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="betterpg-destroy"
            )

        def work() -> None:
            try:
                self.destroy_now(name)
            except BaseException as e:  # noqa: BLE001 - kept for the session's end
                self.background_errors.append(e)
            finally:
                self._slots.release()

        with self.lock:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(work))

    def flush(self) -> None:
        """Wait for every background destroy queued so far (also when
        another thread waits for them too)."""
        with self.lock:
            self._pending = [f for f in self._pending if not f.done()]
            pending = list(self._pending)
        concurrent.futures.wait(pending)

    def destroy_all(self) -> List[BaseException]:
        """Stop the pool, wait for the background destroys, destroy what
        is left (newest first, pooled branches included) and return every
        failure, the background ones included."""
        if self.pool is not None:
            self.pool.stop()
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
                self.destroy_now(name)
            except betterpg.BetterPgError as e:
                errors.append(e)
        return errors
