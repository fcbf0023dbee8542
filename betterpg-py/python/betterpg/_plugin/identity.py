"""Process identity: the names of the plugin's branches.

Every branch the plugin makes is named
``pytest-<pid>-<start>-<worker>-<random>-<n>``: the pid of the process that
made it and that process's start time (``/proc/<pid>/stat`` field 22, in
base 36), the xdist worker id (``gw0`` ... or ``main``), a random suffix
drawn once per process, and a counter. The pair (pid, start time)
identifies a process for the lifetime of the machine's boot:
:func:`creator_alive` tells whether the maker of a branch may still run.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import string
import threading
from typing import Iterator, Optional

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
