"""Options: the plugin's command-line options and ini values, and where each
setting comes from (option, then ini value, then environment variable)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, List, Optional

import pytest

# The snapshot modes, as betterpg names them on every surface.
MODES = ("application-consistent", "crash-consistent")


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
        "--betterpg-mode",
        dest="betterpg_mode",
        default=None,
        choices=MODES,
        help="how the source is snapshotted: application-consistent (backup mode, the default) "
        "or crash-consistent (no backup mode); else ini betterpg_mode",
    )
    group.addoption(
        "--betterpg-fast",
        dest="betterpg_fast",
        action="store_true",
        default=None,
        help="deprecated: --betterpg-mode crash-consistent",
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
    parser.addini("betterpg_mode", "application-consistent or crash-consistent", default=None)
    parser.addini(
        "betterpg_fast", "deprecated: betterpg_mode = crash-consistent (bool)", type="bool", default=False
    )
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
    group.addoption(
        "--betterpg-mask",
        dest="betterpg_mask",
        action="append",
        default=None,
        metavar="PATH",
        help="masking SQL file, or directory of *.sql applied in name order, run on every branch "
        "the plugin makes before it is reachable; repeatable, applied in order (else ini "
        "betterpg_mask). A masking that fails errors the fixture: never an unmasked branch",
    )
    group.addoption(
        "--betterpg-mask-rules",
        dest="betterpg_mask_rules",
        action="append",
        default=None,
        metavar="FILE",
        help="masking rules file (TOML) applied to every branch the plugin makes, after the SQL "
        "files; repeatable (else ini betterpg_mask_rules)",
    )
    parser.addini(
        "betterpg_mask",
        "masking SQL files or directories (one a line, relative to the ini file) for every branch",
        type="paths",
        default=[],
    )
    parser.addini(
        "betterpg_mask_rules",
        "masking rules files (one a line, relative to the ini file) for every branch",
        type="paths",
        default=[],
    )
    group.addoption(
        "--betterpg-pool-size",
        dest="betterpg_pool_size",
        default=None,
        metavar="N",
        help="branches of the source kept ready by a background thread, so a test's branch is "
        "made before it asks (default 2; 0: none; else ini betterpg_pool_size)",
    )
    parser.addini(
        "betterpg_pool_size",
        "branches of the source kept ready in the background (default 2; 0: no pool)",
        default=None,
    )
    group.addoption(
        "--betterpg-no-recycle",
        dest="betterpg_recycle",
        action="store_false",
        default=None,
        help="destroy each pooled branch after its test instead of rewinding it (a stop, a ZFS "
        "rollback to how it was made, a start) and handing it out again (else ini betterpg_recycle)",
    )
    parser.addini(
        "betterpg_recycle",
        "rewind a pooled branch after its test and hand it out again instead of destroying it (bool)",
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


def setting(config: pytest.Config, name: str, env: Optional[str] = None) -> Any:
    """The setting ``name``: its option, else its ini value, else ``$env``."""
    value = config.getoption(name, default=None)
    if value is None:
        value = config.getini(name)
    if value in (None, "") and env:
        value = os.environ.get(env) or None
    return value


def configured_mode(config: pytest.Config) -> str:
    """The configured snapshot mode: ``--betterpg-mode``, else ``betterpg_mode``,
    else the deprecated ``--betterpg-fast``/``betterpg_fast`` (with a
    warning), else application-consistent. A mode not in :data:`MODES`, or
    one the deprecated switch contradicts, fails the session."""
    mode = setting(config, "betterpg_mode") or None
    if mode is not None and mode not in MODES:
        pytest.fail(f"betterpg: unknown mode {mode!r}: use one of {', '.join(MODES)}", pytrace=False)
    if setting(config, "betterpg_fast"):
        warnings.warn(
            DeprecationWarning(
                "betterpg: --betterpg-fast / betterpg_fast are deprecated: use "
                "--betterpg-mode crash-consistent / betterpg_mode = crash-consistent"
            ),
            stacklevel=1,
        )
        if mode not in (None, "crash-consistent"):
            pytest.fail(
                f"betterpg: mode {mode!r} and the deprecated fast switch disagree: give the mode only",
                pytrace=False,
            )
        return "crash-consistent"
    return mode or "application-consistent"


def configured_paths(config: pytest.Config, name: str) -> List[str]:
    """The paths of the list setting ``name`` (``betterpg_mask``,
    ``betterpg_mask_rules``): the command line's (every ``--betterpg-...``
    given, relative to the directory pytest was started in), else the ini
    value's (relative to the ini file), as absolute paths in order."""
    given = config.getoption(name, default=None)
    if given:
        base = Path(config.invocation_params.dir)
        return [str(base / p) for p in given]
    return [str(Path(p).absolute()) for p in config.getini(name) or []]


#: Ready branches the pool keeps when ``betterpg_pool_size`` is not set
#: (betterpg._plugin.pool.DEFAULT_POOL_SIZE says the same).
DEFAULT_POOL_SIZE = 2


def configured_pool_size(config: pytest.Config) -> int:
    """``--betterpg-pool-size``, else ``betterpg_pool_size``, else
    :data:`DEFAULT_POOL_SIZE`; anything but a whole number >= 0 fails the
    session."""
    value = setting(config, "betterpg_pool_size")
    if value in (None, ""):
        return DEFAULT_POOL_SIZE
    try:
        size = int(str(value).strip())
    except ValueError:
        size = -1
    if size < 0:
        pytest.fail(
            f"betterpg: pool size must be a whole number >= 0 (0: no pool), not {value!r}", pytrace=False
        )
    return size


def configured_recycle(config: pytest.Config) -> bool:
    """``--betterpg-no-recycle``, else ``betterpg_recycle`` (default on)."""
    return setting(config, "betterpg_recycle") is not False


def configured_home(config: pytest.Config) -> Optional[str]:
    """The configured home: option, ini value, then ``$BPG_HOME``."""
    return setting(config, "betterpg_home", env="BPG_HOME") or None


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    home = configured_home(config)
    if not home:
        return None
    source = setting(config, "betterpg_source") or "(not set)"
    header = f"betterpg: home {home}, source {source}"
    mask = configured_paths(config, "betterpg_mask")
    rules = configured_paths(config, "betterpg_mask_rules")
    if mask or rules:
        header += f", masked with {', '.join(mask + rules)}"
    size = setting(config, "betterpg_pool_size")
    size = DEFAULT_POOL_SIZE if size in (None, "") else str(size).strip()
    if str(size) == "0":
        header += ", no pool"
    else:
        header += f", pool of {size} ready branches"
        header += ", recycled by rewind" if configured_recycle(config) else ", destroyed after use"
    return header
