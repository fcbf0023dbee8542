"""Every exception class, provoked for real where the core can raise it."""

from __future__ import annotations

import json
import pickle
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Set, Type

import betterpg
import betterpg.exceptions as bx
import pytest
from betterpg import _internal
from helpers import SOURCE, TEST_DIR, rows, unique

#: Kinds this file provoked (filled by `expect`), checked by the last test.
PROVOKED: Set[str] = set()

#: Kinds the public API cannot raise on this machine, and why.
UNPROVOKABLE = {
    # The core's only Timeout (a server not answering after start) is
    # wrapped into a Runtime error by the native runtime before it reaches
    # the API; OperationTimeoutError exists for future core errors.
    "timeout": "the core wraps its only timeout into a runtime error",
    "internal": "a bug by definition",
    # Reserved for the scheduler (`bpg daemon`), which is not built yet:
    # nothing raises it today.
    "daemon_running": "reserved for the scheduler, which no operation runs yet",
}


def expect(
    cls: Type[betterpg.BetterPgError], fn: Callable[[], object], match: str = ""
) -> betterpg.BetterPgError:
    """Call fn, assert it raises exactly ``cls`` with the core's code and kind; record the kind."""
    with pytest.raises(betterpg.BetterPgError) as ei:
        fn()
    e = ei.value
    assert type(e) is cls, f"expected {cls.__name__}, got {type(e).__name__}: {e}"
    assert e.code == cls.code and e.kind == cls.kind
    assert bx.error_class(e.code) is cls and bx.error_class(e.kind) is cls
    assert str(e), "the core's message must not be empty"
    if match:
        assert match in str(e), str(e)
    PROVOKED.add(cls.kind)
    return e


def mountpoint(dataset: str) -> Path:
    out = subprocess.run(
        ["zfs", "get", "-H", "-o", "value", "mountpoint", dataset], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


# ---------------------------------------------------------------- the classes


def test_one_class_per_core_kind():
    kinds = _internal.ERROR_KINDS
    assert kinds == bx.ERROR_KINDS and len(kinds) >= 18
    assert sorted(bx.ERROR_CLASSES) == sorted(code for code, _ in kinds)
    names = set()
    for code, kind in kinds:
        cls = bx.ERROR_CLASSES[code]
        assert issubclass(cls, betterpg.BetterPgError) and cls is not betterpg.BetterPgError
        assert (cls.code, cls.kind) == (code, kind)
        assert cls.__module__ == "betterpg.exceptions"
        assert cls.__name__.endswith("Error") and cls.__name__ not in names
        names.add(cls.__name__)
        assert getattr(bx, cls.__name__) is cls and getattr(betterpg, cls.__name__) is cls
        assert cls.__name__ in bx.__all__ and cls.__doc__
        e = pickle.loads(pickle.dumps(cls("boom")))
        assert type(e) is cls and str(e) == "boom"
    assert issubclass(betterpg.BetterPgError, Exception)


def test_fields_default_to_none_and_survive_pickling():
    e = betterpg.PortError("boom")
    for attr in ["sqlstate", "detail", "reason", "operation", "dataset", "stderr", "status", "port"]:
        assert getattr(e, attr) is None, attr
    e.reason, e.port = "taken", 5432
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), str(e2), e2.reason, e2.port) == (betterpg.PortError, "boom", "taken", 5432)


def test_builtin_bases():
    assert issubclass(betterpg.InvalidNameError, ValueError)
    assert issubclass(betterpg.NotFoundError, LookupError)
    assert issubclass(betterpg.OperationTimeoutError, TimeoutError)
    assert issubclass(betterpg.LocalIOError, OSError)
    assert not issubclass(betterpg.ServerRuntimeError, RuntimeError)
    for name in ["TimeoutError", "RuntimeError", "IOError"]:
        assert name not in betterpg.__all__, "must not shadow a builtin"


# ---------------------------------------------------------------- provoked


def test_not_found(manager):
    missing = unique("missing")
    for fn in [
        lambda: manager.info(missing),
        lambda: manager.destroy(missing),
        lambda: manager.branch(missing, unique("b")),
        lambda: manager.url(missing),
        lambda: manager.logs(missing),
        lambda: manager.start(missing),
        lambda: manager.stop(missing),
    ]:
        e = expect(betterpg.NotFoundError, fn, match=missing)
        assert isinstance(e, LookupError)


def test_protected(manager):
    name = unique("prot")
    manager.branch(SOURCE, name)
    try:
        manager.protect(name)
        expect(betterpg.ProtectedError, lambda: manager.destroy(name, force=True), match="is protected")
        expect(betterpg.ProtectedError, lambda: manager.reset(name), match=f"unprotect {name}")
        assert manager.info(name).running
    finally:
        manager.unprotect(name)
        manager.destroy(name)


def test_not_found_pool(tmp_path):
    expect(
        betterpg.NotFoundError,
        lambda: betterpg.BranchManager.init(tmp_path / "h", dataset="bpgpy-no-such-pool/x"),
        match="bpgpy-no-such-pool",
    )


def test_already_exists(env, manager):
    expect(betterpg.AlreadyExistsError, lambda: manager.create(SOURCE), match=SOURCE)
    expect(betterpg.AlreadyExistsError, lambda: manager.branch(SOURCE, SOURCE), match=SOURCE)
    with manager.branch(SOURCE, unique("dup")) as b:
        expect(betterpg.AlreadyExistsError, lambda: manager.branch(SOURCE, b.name), match=b.name)
    expect(
        betterpg.AlreadyExistsError,
        lambda: betterpg.BranchManager.init(env.path, dataset=f"{env.pool}/other"),
        match="home",
    )


def test_already_exists_pool(env, tmp_path):
    expect(
        betterpg.AlreadyExistsError,
        lambda: betterpg.BranchManager.init(
            tmp_path / "h", pool_file=TEST_DIR / f"{env.pool}-again.img", size="128M", pool=env.pool
        ),
        match=env.pool,
    )
    assert not (TEST_DIR / f"{env.pool}-again.img").exists()


@pytest.mark.parametrize("bad", ["", "a b", "../x", "-rf", "x/y", "é", "a" * 64])
def test_invalid_name(manager, bad):
    e = expect(betterpg.InvalidNameError, lambda: manager.create(bad), match="ASCII letters")
    assert isinstance(e, ValueError)
    expect(betterpg.InvalidNameError, lambda: manager.branch(SOURCE, bad))
    expect(betterpg.InvalidNameError, lambda: manager.destroy(bad))


def test_has_dependents(manager):
    with manager.branch(SOURCE, unique("dep")) as b:
        expect(betterpg.HasDependentsError, lambda: manager.destroy(SOURCE), match=b.name)
        # Nothing was harmed.
        assert manager.info(SOURCE).status == "running"
        assert rows(b.url, "SELECT 1") == [(1,)]


def test_not_initialized(tmp_path):
    expect(betterpg.NotInitializedError, lambda: betterpg.BranchManager(tmp_path / "nothing"))
    expect(betterpg.NotInitializedError, lambda: betterpg.BranchManager(tmp_path), match=str(tmp_path))


def test_config(tmp_path):
    expect(
        betterpg.ConfigError,
        lambda: betterpg.BranchManager.init(tmp_path / "h", dataset="/bad"),
        match="invalid dataset",
    )
    expect(betterpg.ConfigError, lambda: betterpg.BranchManager.init(tmp_path / "h"), match="pool_file")
    expect(
        betterpg.ConfigError,
        lambda: betterpg.BranchManager.init(
            tmp_path / "h", pool_file=tmp_path / "p.img", size="5Q", pool="bpgpy-cfg"
        ),
        match="size",
    )
    expect(
        betterpg.ConfigError,
        lambda: betterpg.BranchManager.init(
            tmp_path / "h", pool_file="relative.img", size="128M", pool="bpgpy-cfg"
        ),
        match="absolute",
    )


def test_config_quota_and_ports(manager, tmp_path):
    name = unique("q")
    expect(betterpg.ConfigError, lambda: manager.branch(SOURCE, name, quota=1000), match="too small")
    expect(betterpg.ConfigError, lambda: manager.branch(SOURCE, name, quota="lots"), match="size")
    assert name not in [i.name for i in manager.list()]
    pool = f"bpgpy-cfg-{uuid.uuid4().hex[:6]}"
    expect(
        betterpg.ConfigError,
        lambda: betterpg.BranchManager.init(
            tmp_path / "h",
            pool_file=TEST_DIR / f"{pool}.img",
            size="128M",
            pool=pool,
            port_range=(57990, 57900),
        ),
        match="port range",
    )
    # Refused before anything was made.
    assert subprocess.run(["zpool", "list", pool], capture_output=True).returncode != 0
    assert not (TEST_DIR / f"{pool}.img").exists()


def test_zfs(extra_home):
    h = extra_home("zfs")
    # A read-only root dataset: `zfs create` makes the dataset but cannot mount it.
    subprocess.run(["zfs", "set", "readonly=on", h.manager.dataset], check=True)
    try:
        e = expect(betterpg.ZfsError, lambda: h.manager.create("db"), match="zfs create")
        # The fields say what failed, so callers need not read the message.
        assert e.operation.startswith("zfs create"), e.operation
        assert e.dataset == f"{h.manager.dataset}/db", e.dataset
        assert e.stderr and e.stderr in str(e)
        assert e.reason in ("other", "busy", "no_space", "unavailable")
        assert e.sqlstate is None and e.port is None
    finally:
        subprocess.run(["zfs", "set", "readonly=off", h.manager.dataset], check=True)
    assert h.manager.list() == []  # the core rolled back


def test_postgres(extra_home):
    h = extra_home("pg")
    info = h.manager.create("db")
    rows(info.url, "ALTER ROLE postgres PASSWORD 'not-the-one-betterpg-knows'")
    e = expect(
        betterpg.PostgresError, lambda: h.manager.branch("db", "b"), match="password authentication failed"
    )
    assert e.sqlstate == "28P01", e.sqlstate  # invalid_password: decide on this, not the text
    assert e.reason is None and e.dataset is None
    assert [i.name for i in h.manager.list()] == ["db"]


def test_server_runtime(extra_home):
    h = extra_home("rt")
    info = h.manager.create("db")
    h.manager.stop("db")
    conf = mountpoint(info.dataset) / "pgdata" / "postgresql.auto.conf"
    original = conf.read_text()
    conf.write_text(original + "\nbpgpy_not_a_setting = 1\n")
    e = expect(betterpg.ServerRuntimeError, lambda: h.manager.start("db"), match="failed to start")
    assert e.reason == "other" and e.sqlstate is None
    conf.write_text(original)
    assert h.manager.start("db").status == "running"


def test_local_io(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    # The home where the servers' user can reach it (pytest's tmp_path is
    # 0700: init refuses such a home before any I/O).
    e = expect(
        betterpg.LocalIOError,
        lambda: betterpg.BranchManager.init(
            TEST_DIR / "bpgpy-io-home", pool_file=not_a_dir / "pool.img", size="128M", pool="bpgpy-io"
        ),
        match=str(not_a_dir),
    )
    assert isinstance(e, OSError)


def test_port_catalog_and_invalid_state(extra_home):
    h = extra_home("one", ports=(57999, 57999))
    h.manager.create("only")
    e = expect(betterpg.PortError, lambda: h.manager.create("second"), match="no free port")
    assert e.reason == "exhausted" and e.port is None

    catalog = h.path / "catalog.json"
    original = catalog.read_text()
    try:
        # An entry left "creating" by a process that died.
        dead = subprocess.Popen(["true"])
        dead.wait()
        data = json.loads(original)
        data["entries"]["only"]["state"] = "creating"
        data["entries"]["only"]["pid"] = dead.pid
        catalog.write_text(json.dumps(data))
        expect(betterpg.InvalidStateError, lambda: h.manager.start("only"), match="incomplete")

        catalog.write_text("{ this is not json")
        expect(betterpg.CatalogError, lambda: h.manager.list(), match="corrupt")
    finally:
        catalog.write_text(original)
    assert [i.name for i in h.manager.list()] == ["only"]


def test_no_space_for_a_branch_changes_nothing(extra_home):
    h = extra_home("space")
    h.manager.create("src")
    # The documented knob: every branch reserves branch_reserve bytes of the
    # branch space; more than the pool has cannot be given.
    config = h.path / "config.json"
    data = json.loads(config.read_text())
    data["branch_reserve"] = 10 << 30
    config.write_text(json.dumps(data))
    m = betterpg.BranchManager(home=h.path)
    before = [i.name for i in m.list()]
    expect(betterpg.NoSpaceError, lambda: m.branch("src", "b"), match="destroy unused branches")
    assert [i.name for i in m.list()] == before
    usage = m.pool_usage()
    assert usage.branches_limit_bytes is not None and usage.branches_limit_bytes < 10 << 30, usage
    # A headroom outside 0-90 is refused at init, before any pool is made.
    pool_file = h.path / "never.img"
    expect(
        betterpg.ConfigError,
        lambda: betterpg.BranchManager.init(
            h.path / "h2", pool_file=pool_file, size="128M", pool="bpgpy-never", branch_headroom=91
        ),
        match="0 (no limit on branches) to 90",
    )
    assert not pool_file.exists()
    # The keyword arguments reach the home's config (a second home on the same pool).
    h3 = betterpg.BranchManager.init(
        h.path / "h3", dataset=f"{h.pool}/third", branch_headroom=10, branch_reserve="16M"
    )
    cfg = json.loads((h3.home / "config.json").read_text())
    assert (cfg["branch_headroom_percent"], cfg["branch_reserve"]) == (10, 16 << 20), cfg
    assert h3.pool_usage().branches_limit_bytes is not None  # 10%: a limit, unlike 0


def test_docker_limits_reach_the_config(extra_home):
    """Issue 11 item 7: container limits are init options; too small ones are
    refused before anything is made."""
    h = extra_home("dklimits")
    pool_file = h.path / "never.img"
    for kwargs, what in ((dict(docker_memory="1M"), "docker memory limit"), (dict(docker_pids=5), "docker pids limit")):
        expect(
            betterpg.ConfigError,
            lambda: betterpg.BranchManager.init(
                h.path / "h2", pool_file=pool_file, size="128M", pool="bpgpy-never", **kwargs
            ),
            match=what,
        )
        assert not pool_file.exists()
        assert not (h.path / "h2" / "config.json").exists()
    m = betterpg.BranchManager.init(
        h.path / "h3", dataset=f"{h.pool}/dk", docker_memory="512M", docker_pids=200
    )
    cfg = json.loads((m.home / "config.json").read_text())
    assert (cfg["docker_memory"], cfg["docker_pids"]) == (512 << 20, 200), cfg
    m0 = betterpg.BranchManager.init(h.path / "h4", dataset=f"{h.pool}/dk0", docker_memory=0, docker_pids=0)
    cfg = json.loads((m0.home / "config.json").read_text())
    assert (cfg["docker_memory"], cfg["docker_pids"]) == (0, 0), cfg


def test_version_mismatch(manager):
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    assert pg_bins, "no PostgreSQL binaries"
    b = pg_bins[-1]
    other = int(b.parent.name) - 1
    expect(
        betterpg.VersionMismatchError,
        lambda: manager.create(unique("vm"), pg_bin=b, pg_version=other),
        match=f"not {other}",
    )


def test_unsupported(manager):
    name = unique("rt")
    expect(
        betterpg.UnsupportedError,
        lambda: manager.create(name, runtime="bpgpy-no-such-runtime"),
        match="runtime",
    )
    assert name not in [i.name for i in manager.list()]


def test_docker(manager):
    # An image that is not on the engine: refused before anything runs (nothing is pulled).
    name = unique("dk")
    e = expect(
        betterpg.DockerError,
        lambda: manager.create(name, runtime="docker", image="bpgpy-no-such-image:none"),
        match="bpgpy-no-such-image",
    )
    assert e.status == 404, e.status
    assert name not in [i.name for i in manager.list()]


def test_error_messages_are_the_cores(manager):
    with pytest.raises(betterpg.NotFoundError) as ei:
        manager.info("nope-x")
    assert str(ei.value) == 'database or branch "nope-x" not found: `bpg status` lists what exists'


def test_out_of_window(manager):
    db = unique("oow")
    manager.create(db)
    try:
        manager.configure(db, retain_wal="1h")
        manager.stop(db)
        manager.start(db)
        e = expect(
            betterpg.OutOfWindowError,
            lambda: manager.branch(db, db + "-x", at="2000-01-01 00:00:00+00"),
            "restorable window",
        )
        assert isinstance(e, ValueError)
    finally:
        manager.destroy(db, force=True)


def test_mask(manager, tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT 1;\nUPDATE no_such_table SET x = 1;\n")
    name = unique("mask")
    e = expect(
        betterpg.MaskError,
        lambda: manager.branch(SOURCE, name, mask=[str(bad)]),
        "no_such_table",
    )
    assert "bad.sql" in str(e), str(e)
    assert name not in [i.name for i in manager.list()], "a failed masking leaves nothing"


def test_every_provokable_kind_was_provoked():
    """Runs last in this file: every kind is provoked above or listed as unprovokable."""
    all_kinds = {kind for _, kind in bx.ERROR_KINDS}
    assert set(UNPROVOKABLE) <= all_kinds
    missing = all_kinds - PROVOKED - set(UNPROVOKABLE)
    assert not missing, f"never provoked: {sorted(missing)} (run the whole file)"
