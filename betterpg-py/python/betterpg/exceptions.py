"""The exceptions betterpg raises.

:class:`BetterPgError` is the base class. Every error kind of the core
library has exactly one subclass; the classes are generated at import time
from the core's table of ``(code, kind)`` pairs (``ERROR_KINDS``), so this
module cannot drift from the core. Each class has ``code`` (the core's
stable number) and ``kind`` (its short name) attributes; the message is the
core's, and says what to do.

Where a Python builtin means the same thing, the class derives from it too:

==========================  ======================
``InvalidNameError``        also ``ValueError``
``NotFoundError``           also ``LookupError``
``OperationTimeoutError``   also ``TimeoutError``
``LocalIOError``            also ``OSError``
``OutOfWindowError``        also ``ValueError``
==========================  ======================

Decide on the fields, never on the message. Besides ``code`` and ``kind``,
every exception has these attributes, None where they do not apply:

==============  ==========================================================
``sqlstate``    PostgreSQL's SQLSTATE when the server answered (``PostgresError``;
                ``"28P01"``: the password was refused)
``detail``      PostgreSQL's DETAIL, when it gave one
``reason``      a finer stable reason: ``"busy"``, ``"no_space"``,
                ``"unavailable"``, ``"other"`` (``ZfsError``); ``"taken"``,
                ``"exhausted"`` (``PortError``); ``"port_in_use"``,
                ``"resources"``, ``"other"`` (``ServerRuntimeError``)
``operation``   the zfs command line or library call (``ZfsError``)
``dataset``     the dataset, snapshot or pool (``ZfsError``)
``stderr``      what ZFS said (``ZfsError``)
``status``      the Docker engine's HTTP status (``DockerError``)
``port``        the port concerned (``PortError``)
==============  ==========================================================

>>> try:
...     mgr.destroy("nope")
... except betterpg.NotFoundError as e:
...     print(e.code, e.kind, e)
3 not_found database or branch "nope" not found: `bpg status` lists what exists
"""

from __future__ import annotations

from typing import Dict, List, Tuple, Type, Union

from betterpg import _internal
from betterpg._internal import (  # noqa: F401  (explicit for type checkers)
    AlreadyExistsError,
    BetterPgError,
    CatalogError,
    ConfigError,
    DaemonRunningError,
    DockerError,
    HasDependentsError,
    InternalError,
    InvalidNameError,
    InvalidStateError,
    LocalIOError,
    MaskError,
    NoSpaceError,
    NotFoundError,
    NotInitializedError,
    OperationTimeoutError,
    OutOfWindowError,
    PortError,
    PostgresError,
    ProtectedError,
    ServerRuntimeError,
    UnsupportedError,
    VersionMismatchError,
    ZfsError,
)

#: Every (code, kind) pair of the core, in the core's order.
ERROR_KINDS: List[Tuple[int, str]] = list(_internal.ERROR_KINDS)

#: The class of each core error code.
ERROR_CLASSES: Dict[int, Type[BetterPgError]] = dict(_internal.ERROR_CLASSES)

# A kind added to the core after this file was written still gets its class
# (named after the kind) exported here.
for _cls in ERROR_CLASSES.values():
    globals().setdefault(_cls.__name__, _cls)
del _cls


def error_class(code_or_kind: Union[int, str]) -> Type[BetterPgError]:
    """The exception class of a core error code (``3``) or kind (``"not_found"``)."""
    if isinstance(code_or_kind, int):
        return ERROR_CLASSES[code_or_kind]
    for code, kind in ERROR_KINDS:
        if kind == code_or_kind:
            return ERROR_CLASSES[code]
    raise KeyError(code_or_kind)


__all__ = [
    "BetterPgError",
    *sorted(c.__name__ for c in ERROR_CLASSES.values()),
]
